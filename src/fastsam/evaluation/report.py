"""Writing evaluation results: JSON, a markdown report, and (edges) a precision-recall plot."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PAPER_EDGES = {"ODS": 0.750, "OIS": 0.790, "AP": 0.793, "R50": 0.903}
"""FastSAM paper, BSDS500 zero-shot edge detection."""
PAPER_PROPOSALS_COCO = {"AR@10": 0.157, "AR@100": 0.473, "AR@1000": 0.637}
"""FastSAM paper, COCO class-agnostic box proposals."""
PAPER_PROPOSALS_LVIS = {"AR@1000": 0.571, "AR_small@1000": 0.443, "AR_medium@1000": 0.771, "AR_large@1000": 0.853}
"""FastSAM paper, LVIS v1 box proposals."""
PAPER_INSTANCES = {"AP": 0.379}
"""FastSAM paper, COCO mask AP with ViTDet-H boxes."""


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(data: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``data`` (numpy values converted) as indented JSON; parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(data), indent=1) + "\n", encoding="utf-8")
    return path


def metrics_table(values: Mapping[str, float], reference: Mapping[str, float] | None = None, scale: float = 1.0) -> str:
    """A markdown table ``metric | value [| paper]`` (values times ``scale``, 3 decimals)."""
    ref = reference or {}
    head = "| metric | value |" + (" paper |" if ref else "")
    rule = "|---|---|" + ("---|" if ref else "")
    lines = [head, rule]
    for key, value in values.items():
        digits = 1 if scale >= 100 else 3
        cell = "n/a" if value is None or value < 0 else f"{value * scale:.{digits}f}"
        line = f"| {key} | {cell} |"
        if ref:
            line += f" {ref[key] * scale:.{digits}f} |" if key in ref else " |"
        lines.append(line)
    return "\n".join(lines)


def write_markdown(title: str, sections: Sequence[tuple[str, str]], path: str | os.PathLike[str]) -> Path:
    """Write a markdown report: ``# title`` then ``## heading`` + body for each section."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", ""]
    for heading, body in sections:
        parts += [f"## {heading}", "", body.rstrip(), ""]
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def plot_pr_curve(
    recall: np.ndarray,
    precision: np.ndarray,
    path: str | os.PathLike[str],
    label: str = "",
    ods: tuple[float, float] | None = None,
) -> Path | None:
    """Save a precision-recall plot with iso-F contours (PNG). Returns None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5))
    grid = np.linspace(0.01, 1, 200)
    r, p = np.meshgrid(grid, grid)
    f = 2 * p * r / (p + r)
    ax.contour(r, p, f, levels=np.arange(0.1, 1.0, 0.1), colors="0.85", linewidths=0.6)
    ax.plot(recall, precision, "-", lw=2, label=label or None)
    if ods is not None:
        ax.plot([ods[0]], [ods[1]], "o", color="C3", label="ODS")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Recall", ylabel="Precision", title="BSDS boundary benchmark")
    ax.grid(alpha=0.3)
    if label or ods is not None:
        ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
