"""COCO-style annotation files (COCO instances, LVIS v1) for evaluation with pycocotools.

LVIS differs from COCO in ways pycocotools trips over; :func:`load_coco` smooths them: annotations get
``iscrowd = 0`` when absent (COCOeval reads it), images without ``file_name`` take the last part of their
``coco_url``, and an ``area`` is computed from the box when missing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pycocotools.coco import COCO


def _quiet_coco(dataset: dict[str, Any]) -> COCO:
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco(path: str | os.PathLike[str]) -> COCO:
    """Load a COCO or LVIS annotation JSON as a ``pycocotools.coco.COCO``.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is not a COCO-style annotation file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        dataset = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(dataset, dict) or "images" not in dataset or "annotations" not in dataset:
        raise ValueError(f"{path}: not a COCO-style annotation file (needs 'images' and 'annotations')")
    dataset.setdefault("categories", [{"id": 1, "name": "object"}])
    for image in dataset["images"]:
        if "file_name" not in image and "coco_url" in image:
            image["file_name"] = str(image["coco_url"]).rsplit("/", 1)[-1]
    for ann in dataset["annotations"]:
        ann.setdefault("iscrowd", 0)
        if "area" not in ann and "bbox" in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
    return _quiet_coco(dataset)


def image_paths(
    coco: COCO, images_dir: str | os.PathLike[str], limit: int | None = None
) -> tuple[dict[int, Path], list[str]]:
    """Paths of the annotated images found in a folder (by ``file_name``, also tried as a bare name).

    Args:
        coco: a loaded ``COCO``.
        images_dir: the image folder.
        limit: keep only the first ``limit`` images found (by image id).

    Returns:
        ``(found, missing)``: image id -> path, and the file names not found.
    """
    folder = Path(images_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    found: dict[int, Path] = {}
    missing: list[str] = []
    for image_id in sorted(coco.imgs):
        name = str(coco.imgs[image_id].get("file_name", ""))
        candidates = [folder / name, folder / Path(name).name] if name else []
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            missing.append(name or str(image_id))
        elif limit is None or len(found) < limit:
            found[image_id] = path
    return found, missing
