"""A scratch workspace shared by the folder and batch benchmarks: copies of the shared photos and the weights."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FASTSAM_SHARED", ROOT.parent / "shared"))


def photo_workspace(images: int, model: str | None) -> tuple[Path, Path, str, list[Path]]:
    """A temporary folder with ``images`` copies of the shared photos (cycled, numbered) under ``<work>/in``.

    Returns:
        ``(work, folder, model_path, photos)``: the workspace, the input folder, ``model`` or random
        FastSAM-s-shaped weights saved in the workspace, and the shared photos used.
    """
    photos = sorted((SHARED / "data" / "images").rglob("*.jpg"))
    if not photos:
        raise SystemExit(f"no photos under {SHARED / 'data' / 'images'} (set FASTSAM_SHARED)")
    work = Path(tempfile.mkdtemp())
    folder = work / "in"
    folder.mkdir()
    for i in range(images):
        shutil.copy(photos[i % len(photos)], folder / f"{i:03d}_{photos[i % len(photos)].name}")
    if model is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from model_factory import save_random_weights

        model = str(save_random_weights(work / "random-s.safetensors", "s", 16, seed=0))
    return work, folder, model, photos
