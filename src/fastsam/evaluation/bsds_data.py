"""Reading BSDS500-style data: human boundary ground truth (.mat), images, and edge maps to score.

Accepted layouts of a data folder ``D`` (the first that exists wins):

* ``D/groundTruth/<split>/*.mat`` with images in ``D/images/<split>/`` (the BSDS500 release, ``data/`` level);
* ``D/data/groundTruth/<split>/*.mat`` (the release's top level);
* ``D/groundTruth/*.mat`` with images in ``D/images/`` (a flat folder such as the benchmark's self-test).

Each ``.mat`` holds ``groundTruth``, a 1 x K cell of structs whose ``Boundaries`` is a 0/1 map (one per
annotator).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
EDGE_SUFFIXES = (".png", ".npy", ".bmp", ".tif", ".tiff", ".pgm")


@dataclass
class BSDSItem:
    """One benchmark image.

    Attributes:
        image_id: the file stem shared by the image and its ground truth (e.g. ``"100007"``).
        ground_truth: path of the ``.mat`` file.
        image: path of the image, or None when the folder has no images.
    """

    image_id: str
    ground_truth: Path
    image: Path | None


def _ground_truth_dir(root: Path, split: str) -> tuple[Path, Path]:
    for gt, images in (
        (root / "groundTruth" / split, root / "images" / split),
        (root / "data" / "groundTruth" / split, root / "data" / "images" / split),
        (root / "groundTruth", root / "images"),
    ):
        if gt.is_dir() and any(gt.glob("*.mat")):
            return gt, images
    raise FileNotFoundError(
        f"no BSDS ground truth under {root} (looked for groundTruth/{split}/*.mat, "
        f"data/groundTruth/{split}/*.mat and groundTruth/*.mat)"
    )


def list_bsds(data_dir: str | os.PathLike[str], split: str = "test", limit: int | None = None) -> list[BSDSItem]:
    """The images of a BSDS split, sorted by id.

    Args:
        data_dir: a BSDS500 folder (see the module docstring for the layouts).
        split: ``"test"``, ``"val"`` or ``"train"`` (ignored for a flat folder).
        limit: keep only the first ``limit`` images.

    Raises:
        FileNotFoundError: no ground truth found.
    """
    root = Path(data_dir)
    gt_dir, image_dir = _ground_truth_dir(root, split)
    items = []
    for mat in sorted(gt_dir.glob("*.mat")):
        image = next(
            (image_dir / (mat.stem + s) for s in IMAGE_SUFFIXES if (image_dir / (mat.stem + s)).is_file()), None
        )
        items.append(BSDSItem(mat.stem, mat, image))
    return items[:limit] if limit is not None else items


def load_boundaries(path: str | os.PathLike[str]) -> list[np.ndarray]:
    """The annotators' boundary maps of one image.

    Returns:
        One ``(H, W)`` bool map per annotator.

    Raises:
        ValueError: the file is not a BSDS ground-truth ``.mat``.
    """
    from scipy.io import loadmat

    try:
        cells = loadmat(str(path))["groundTruth"]
    except (KeyError, ValueError, OSError, NotImplementedError) as err:
        raise ValueError(f"{path}: not a BSDS ground-truth file ({err})") from err
    return [np.asarray(cells[0][k]["Boundaries"][0, 0]) != 0 for k in range(cells.shape[1])]


def load_edge_map(path: str | os.PathLike[str]) -> np.ndarray:
    """A soft edge map to score: ``.npy`` floats in [0, 1], or an 8/16-bit grey image (0..max -> 0..1).

    Returns:
        ``(H, W)`` float64 in [0, 1].

    Raises:
        ValueError: the file is not a 2-D map, or a ``.npy`` holds values outside [0, 1].
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        values = np.load(path, allow_pickle=False).astype(np.float64)
        if values.ndim == 3 and values.shape[0] == 1:
            values = values[0]
        if values.size and (np.nanmin(values) < 0 or np.nanmax(values) > 1):
            raise ValueError(f"{path}: values must lie in [0, 1] (got {values.min():g} .. {values.max():g})")
    else:
        from PIL import Image

        with Image.open(path) as img:
            raw = np.asarray(img)
        if raw.ndim == 3:  # an RGB(A) save of a grey map: take the first channel
            raw = raw[..., 0]
        if raw.dtype == np.uint8:
            values = raw / 255.0
        elif raw.dtype in (np.uint16, np.int32) or np.issubdtype(raw.dtype, np.integer):
            values = raw / 65535.0
        elif raw.dtype == np.bool_:
            values = raw.astype(np.float64)
        else:
            values = raw.astype(np.float64)
    if values.ndim != 2:
        raise ValueError(f"{path}: an edge map must be a 2-D array, got shape {values.shape}")
    return np.nan_to_num(values, nan=0.0)


def find_edge_maps(pred_dir: str | os.PathLike[str], image_ids: list[str]) -> dict[str, Path]:
    """The edge map file of each image id in a folder (``<id>.png``, ``<id>.npy``, ...).

    Raises:
        FileNotFoundError: some ids have no edge map (the message lists a few).
    """
    folder = Path(pred_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"prediction folder not found: {folder}")
    found: dict[str, Path] = {}
    missing = []
    for image_id in image_ids:
        path = next((folder / (image_id + s) for s in EDGE_SUFFIXES if (folder / (image_id + s)).is_file()), None)
        if path is None:
            missing.append(image_id)
        else:
            found[image_id] = path
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(image_ids)} images have no edge map in {folder} "
            f"(e.g. {', '.join(missing[:3])}; expected <id>.png or <id>.npy)"
        )
    return found
