"""Interactive prompts from Label Studio: the regions an annotator just drew, as pixel points and boxes.

Label Studio sends them as ``params.context.result``: regions with ``type`` (``keypointlabels``,
``rectanglelabels``, ...), ``from_name``, ``original_width`` / ``original_height`` and a ``value`` in percent of the
image: a keypoint ``{x, y, keypointlabels}``, a rectangle ``{x, y, width, height, rotation, rectanglelabels}``.
A click made with the tool's negative modifier has ``is_positive: false``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import LabelConfig
from .errors import LabelStudioError

__all__ = ["InteractivePrompt", "prompt_from_context"]

_POINT_KINDS = ("keypointlabels", "keypoint")
_BOX_KINDS = ("rectanglelabels", "rectangle")


@dataclass
class InteractivePrompt:
    """Points ``(P, 2)`` x, y and boxes ``(B, 4)`` x1, y1, x2, y2 in pixels of the original image; ``labels``
    ``(P,)`` 1 positive, 0 negative; ``label`` the BrushLabels label the answer takes."""

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    label: str = ""


def _number(value: dict, key: str, where: str) -> float:
    try:
        number = float(value[key])
    except (KeyError, TypeError, ValueError):
        raise LabelStudioError(f"{where} has no numeric value.{key}") from None
    if not math.isfinite(number):
        raise LabelStudioError(f"{where} has a value.{key} that is not a finite number")
    return number


def _region_label(region: dict, value: dict) -> str | None:
    for key in ("keypointlabels", "rectanglelabels", "labels"):
        names = value.get(key)
        if isinstance(names, list) and names:
            return str(names[0])
    return None


def prompt_from_context(context: Any, config: LabelConfig, height: int, width: int) -> InteractivePrompt | None:
    """The prompt in an interactive request's context, or None when there is no context (pre-annotation).

    Args:
        context: ``params.context`` of a ``/predict`` request.
        config: the project's labelling config (which tags hold prompts, which label the answer takes).
        height, width: the image's size in pixels.

    Raises:
        LabelStudioError: a context without keypoints or rectangles, a region outside the image, or a region's
            label that the BrushLabels tag does not have.
    """
    if not context:
        return None
    regions = context.get("result") if isinstance(context, dict) else None
    if not isinstance(regions, list) or not regions:
        return None
    points, labels, boxes, names = [], [], [], []
    tags = {t.name: t for t in config.prompts}
    for region in regions:
        if not isinstance(region, dict):
            continue
        kind = str(region.get("type", "")).lower()
        if kind not in _POINT_KINDS + _BOX_KINDS:
            continue
        tag = tags.get(region.get("from_name", ""))
        where = f"{'KeyPointLabels' if kind in _POINT_KINDS else 'RectangleLabels'} region '{region.get('from_name', '')}'"
        value = region.get("value")
        if not isinstance(value, dict):
            raise LabelStudioError(f"{where} has no value")
        x, y = _number(value, "x", where), _number(value, "y", where)
        if kind in _POINT_KINDS:
            if not (0.0 <= x <= 100.0 and 0.0 <= y <= 100.0):
                raise LabelStudioError(f"the click of {where} at ({x:.4g}%, {y:.4g}%) is outside the image "
                                       f"({width}x{height} px)")  # fmt: skip
            points.append((x * width / 100.0, y * height / 100.0))
            labels.append(0 if region.get("is_positive") is False else 1)
        else:
            w, h = _number(value, "width", where), _number(value, "height", where)
            angle = math.radians(float(value.get("rotation") or 0.0))
            # Label Studio rotates a rectangle about its top-left corner: take the rotated corners' bounds.
            corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
            rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
            xy = corners @ rot.T + [x, y]
            x1, y1 = xy.min(axis=0)
            x2, y2 = xy.max(axis=0)
            if x2 <= 0 or y2 <= 0 or x1 >= 100 or y1 >= 100 or w <= 0 or h <= 0:
                raise LabelStudioError(f"the box of {where} at ({x:.4g}%, {y:.4g}%, {w:.4g}% x {h:.4g}%) does not "
                                       f"overlap the image ({width}x{height} px)")  # fmt: skip
            boxes.append((x1 * width / 100.0, y1 * height / 100.0, x2 * width / 100.0, y2 * height / 100.0))
        resolved = config.output_label(_region_label(region, value), f"{tag.kind if tag else kind} '{region.get('from_name', '')}'")
        if kind in _BOX_KINDS or labels[-1] == 1:  # a negative click does not choose the answer's label
            names.append(resolved)
    if not points and not boxes:
        raise LabelStudioError(
            "the interactive request holds no KeyPointLabels or RectangleLabels region: click or draw a box with a "
            "keypoint or rectangle tool (smart mode) on the image"
        )
    if points and not boxes and not any(labels):
        raise LabelStudioError("the interactive request holds only negative clicks: add a positive click on the object")
    return InteractivePrompt(
        points=np.asarray(points, dtype=np.float64).reshape(-1, 2),
        labels=np.asarray(labels, dtype=np.int64),
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        label=names[-1] if names else config.output_label(None, "the prompt"),
    )
