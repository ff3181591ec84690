"""Per-image segmentation results and their exports."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastsam.masks import DeviceMasks, LazyMasks, RunMasks, WindowedMasks
from fastsam.ops.rle import box_xyxy_to_xywh, mask_area, mask_to_polygons, mask_to_rle
from fastsam.visualize import overlay, save_png


@dataclass
class SegmentationResult:
    """Masks found in one image.

    Attributes:
        masks: ``(N, H, W)`` bool, at the original image resolution. Results made by :class:`fastsam.FastSAM`
            hold their masks in a lighter form until ``masks`` is first read (column-major runs on a CPU, the tensor
            itself on a GPU; see :mod:`fastsam.masks`), and :meth:`to_rle`, :meth:`to_sa1b`, :meth:`areas`,
            ``len`` and :meth:`select` work on that form: getting COCO RLE out never lays out the full array.
            A torch tensor given here is kept on its device that way. :meth:`materialize_masks` makes the array now.
        boxes: ``(N, 4)`` float32, xyxy in pixels of the original image.
        scores: ``(N,)`` float32 confidence in [0, 1].
        image_size: ``(H, W)`` of the original image.
        file_name: the image's file name (or "" for in-memory images).
        image: the ``(H, W, 3)`` uint8 RGB image, kept for rendering (optional).
        indices: for prompt results, ``(N,)`` int64 index of each mask among the everything-mode masks
            (-1: no mask matched the prompt, or a merged mask); None for everything mode.
        prompt_ids: for prompt results, ``(N,)`` int64 index of the prompt each mask answers (boxes first,
            then foreground points, then texts, each in the order given); None for everything mode.
    """

    masks: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    image_size: tuple[int, int]
    file_name: str = ""
    image: np.ndarray | None = field(default=None, repr=False)
    indices: np.ndarray | None = None
    prompt_ids: np.ndarray | None = None

    def __len__(self) -> int:
        stored = self._masks
        return int(stored.shape[0]) if stored is not None else len(self.boxes)

    @property
    def masks_materialized(self) -> bool:
        """Whether ``masks`` is already an ``(N, H, W)`` numpy array (rather than windows or a device tensor)."""
        return not isinstance(self._masks, LazyMasks)

    def mask_windows(self) -> WindowedMasks | None:
        """The box windows the masks are held as until first read (see :mod:`fastsam.masks`); None otherwise. Masks
        held as runs give their tight-box windows, each decoded when read."""
        if isinstance(self._masks, RunMasks):
            return self._masks.windowed()
        return self._masks if isinstance(self._masks, WindowedMasks) else None

    def mask_runs(self) -> RunMasks | None:
        """The column-major runs the masks are held as until first read (the CPU path of :class:`fastsam.FastSAM`;
        see :class:`~fastsam.masks.RunMasks`: compact, with point and box queries); None otherwise."""
        return self._masks if isinstance(self._masks, RunMasks) else None

    def materialize_masks(self) -> SegmentationResult:
        """Lay the masks out as the numpy array now (frees device memory a tensor held); returns ``self``."""
        self.masks  # noqa: B018 (the property converts and keeps the array)
        return self

    @classmethod
    def empty(
        cls, image_size: tuple[int, int], file_name: str = "", image: np.ndarray | None = None
    ) -> SegmentationResult:
        """A result with no masks: ``(0, H, W)`` bool masks, ``(0, 4)`` float32 boxes, ``(0,)`` scores.

        Args:
            image_size: ``(H, W)`` of the original image, in pixels.
            file_name: the image's file name.
            image: optional ``(H, W, 3)`` uint8 RGB image, kept for rendering.
        """
        height, width = (int(v) for v in image_size)
        return cls(
            masks=np.zeros((0, height, width), dtype=bool),
            boxes=np.zeros((0, 4), dtype=np.float32),
            scores=np.zeros((0,), dtype=np.float32),
            image_size=(height, width),
            file_name=file_name,
            image=image,
        )

    def select(self, indices: Any) -> SegmentationResult:
        """A new result holding a subset of the masks (with their boxes and scores).

        Args:
            indices: anything numpy can index the first axis with: an int, a sequence or array of
                ints, an ``(N,)`` bool array, or a slice. An int keeps the mask axis (``len == 1``).

        Returns:
            A :class:`SegmentationResult` with the same ``image_size``, ``file_name`` and ``image``
            (the image array is shared, not copied).
        """
        if isinstance(indices, (int, np.integer)):
            indices = [int(indices)]
        elif not isinstance(indices, slice):
            indices = np.asarray(indices)
            if indices.dtype != np.bool_:
                indices = indices.astype(np.intp).reshape(-1)
        return SegmentationResult(
            masks=self.masks[indices] if self.masks_materialized else self._masks.select(indices),
            boxes=self.boxes[indices],
            scores=self.scores[indices],
            image_size=self.image_size,
            file_name=self.file_name,
            image=self.image,
            indices=None if self.indices is None else self.indices[indices],
            prompt_ids=None if self.prompt_ids is None else self.prompt_ids[indices],
        )

    def to_rle(self) -> list[dict[str, Any]]:
        """The masks as compressed COCO RLE dicts ``{"size": [H, W], "counts": str}``, one per mask."""
        if not self.masks_materialized:
            return self._masks.to_rle()
        return mask_to_rle(self.masks)

    def areas(self) -> np.ndarray:
        """``(N,)`` int64 pixel count of each mask."""
        if not self.masks_materialized:
            return self._masks.areas()
        return mask_area(self.masks)

    def to_sa1b(self, image_id: int | None = None) -> dict[str, Any]:
        """The result in the SA-1B annotation schema (JSON-serialisable plain Python types).

        Returns:
            ``{"image": {"image_id"?, "width", "height", "file_name"}, "annotations": [...]}`` where
            ``"image_id"`` is present only when given, and annotation ``i`` (ids ``0..N-1``, in mask
            order) is ``{"id", "segmentation": COCO RLE, "bbox": [x, y, w, h] (float pixels, from
            ``boxes``), "area": int pixel count, "predicted_iou": float score, "point_coords": [],
            "crop_box": [0, 0, W, H]}``.
        """
        height, width = (int(v) for v in self.image_size)
        image_info: dict[str, Any] = {}
        if image_id is not None:
            image_info["image_id"] = int(image_id)
        image_info.update({"width": width, "height": height, "file_name": self.file_name})
        rles = self.to_rle()
        areas = self.areas()
        bboxes = box_xyxy_to_xywh(np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4))
        annotations = [
            {
                "id": i,
                "segmentation": rles[i],
                "bbox": [float(v) for v in bboxes[i]],
                "area": int(areas[i]),
                "predicted_iou": float(self.scores[i]),
                "point_coords": [],
                "crop_box": [0, 0, width, height],
            }
            for i in range(len(self))
        ]
        return {"image": image_info, "annotations": annotations}

    def to_sam_records(
        self, output_mode: str = "binary_mask", stability_scores: np.ndarray | None = None, points_per_side: int = 32
    ) -> list[dict[str, Any]]:
        """The masks as segment-anything's ``SamAutomaticMaskGenerator.generate`` records (see
        :mod:`fastsam.ops.sam_records`): ``segmentation`` (``output_mode``: ``"binary_mask"``, ``"uncompressed_rle"``
        or ``"coco_rle"``), ``area``, ``bbox`` (XYWH, SAM's inclusive last pixel), ``predicted_iou`` (the score),
        ``point_coords`` (the first point of SAM's ``points_per_side`` grid inside the mask), ``stability_score``
        (``stability_scores`` if given, else None: a result keeps no logits; ``fastsam.sam``'s generator computes
        it) and ``crop_box`` (the whole image). Masks held as windows or runs are encoded without laying out the
        ``(N, H, W)`` array.
        """
        from fastsam.ops.rle import tight_windows
        from fastsam.ops.sam_records import sam_records

        held = self.mask_windows()
        if held is None and hasattr(self._masks, "windowed"):  # masks held as runs: their tight windows
            held = self._masks.windowed()
        windows, bounds = (list(held.windows), held.bounds) if held is not None else tight_windows(self.masks)
        return sam_records(windows, bounds, self.image_size, self.scores, output_mode, stability_scores,
                           points_per_side=points_per_side)  # fmt: skip

    def save_json(self, path: str | os.PathLike[str], image_id: int | None = None) -> Path:
        """Write :meth:`to_sa1b` as JSON to ``path`` (parent folders are created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_sa1b(image_id=image_id)), encoding="utf-8")
        return path

    def save_masks(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write each mask as a 0/255 grey (mode ``L``) PNG named by its index.

        Names are zero-padded to 3 digits, or more when ``N > 1000`` (``000.png``, ``001.png``, ...).
        The folder is created if needed.

        Returns:
            The written paths, in mask order.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        digits = max(3, len(str(len(self) - 1)))
        paths: list[Path] = []
        for i, mask in enumerate(self.masks):
            path = directory / f"{i:0{digits}d}.png"
            save_png(np.asarray(mask, dtype=bool), path)
            paths.append(path)
        return paths

    def polygons(self, min_area: float = 0) -> list[list[np.ndarray]]:
        """Boundary polygons of each mask (see :func:`fastsam.ops.rle.mask_to_polygons`).

        Returns:
            One list per mask of ``(K, 2)`` float32 ``(x, y)`` rings in pixel-edge coordinates
            (outer boundaries and holes).
        """
        return [mask_to_polygons(mask, min_area=min_area) for mask in self.masks]

    def to_supervision(self, class_id: Any = None, class_name: str = "object") -> Any:
        """The masks as a ``supervision.Detections``, for supervision's annotators and trackers.

        Needs the optional extra ``supervision`` (``pip install 'fastsam[supervision]'``).

        Args:
            class_id: ``(N,)`` ints, one per mask (default: all 0, the one class-agnostic class).
            class_name: the name stored as ``data["class_name"]`` for every mask (supervision's label annotator
                shows it).

        Returns:
            ``Detections`` with ``xyxy`` ``(N, 4)`` float32 pixels (from ``boxes``), ``mask`` ``(N, H, W)`` bool,
            ``confidence`` ``(N,)`` float32 (``scores``), ``class_id`` ``(N,)`` int64, and ``data`` holding
            ``"class_name"``, plus ``"mask_index"`` / ``"prompt_id"`` for prompt results. Masks that answer no
            prompt (index -1) stay in, all False, so that detection ``i`` is mask ``i``.

        supervision's annotators take numpy images as BGR (OpenCV's order): give them ``Image.fromarray(result.image)``
        or ``result.image[..., ::-1]``.
        """
        try:
            import supervision as sv
        except ImportError:
            raise ImportError(
                "result.to_supervision() needs the supervision package: pip install 'fastsam[supervision]'"
            ) from None
        n = len(self)
        ids = np.zeros(n, dtype=np.int64) if class_id is None else np.asarray(class_id, dtype=np.int64).reshape(-1)
        if ids.shape != (n,):
            raise ValueError(f"class_id must hold one integer per mask ({n}), got shape {ids.shape}")
        data: dict[str, Any] = {"class_name": np.array([class_name] * n, dtype=object)}
        if self.indices is not None:
            data["mask_index"] = np.asarray(self.indices, dtype=np.int64)
        if self.prompt_ids is not None:
            data["prompt_id"] = np.asarray(self.prompt_ids, dtype=np.int64)
        height, width = (int(v) for v in self.image_size)
        masks = self.masks if n else np.zeros((0, height, width), dtype=bool)
        return sv.Detections(
            xyxy=np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4),
            mask=np.asarray(masks, dtype=bool),
            confidence=np.asarray(self.scores, dtype=np.float32).reshape(-1),
            class_id=ids,
            data=data,
        )

    def render(
        self, alpha: float = 0.5, contours: bool = False, random_colors: bool = True, seed: int = 0
    ) -> np.ndarray:
        """The image with the masks drawn over it (see :func:`fastsam.visualize.overlay`).

        Returns:
            ``(H, W, 3)`` uint8 RGB.

        Raises:
            ValueError: the result holds no image (``image is None``).
        """
        if self.image is None:
            raise ValueError(
                "this SegmentationResult has no image to draw on (image is None); "
                "keep the image when predicting or set result.image to the (H, W, 3) uint8 RGB array"
            )
        windows = self.mask_windows()
        masks = windows if windows is not None else self.masks  # windows: no array needed
        return overlay(
            self.image, masks, alpha=alpha, contours=contours, random_colors=random_colors, seed=seed
        )

    def save_overlay(self, path: str | os.PathLike[str], **kwargs: Any) -> Path:
        """Save :meth:`render` (``kwargs`` are passed to it) as a PNG at ``path``; returns the path."""
        path = Path(path)
        save_png(self.render(**kwargs), path)
        return path


def _get_masks(self: SegmentationResult) -> np.ndarray:
    stored = self._masks
    if isinstance(stored, LazyMasks):  # lay the array out on first read, and keep it
        stored = self._masks = stored.numpy()
    return stored


def _set_masks(self: SegmentationResult, value: Any) -> None:
    self._masks = DeviceMasks(value) if isinstance(value, torch.Tensor) else value


# A property installed after the dataclass is built: the generated __init__, repr, eq and replace() go through it.
SegmentationResult.masks = property(_get_masks, _set_masks, doc="``(N, H, W)`` bool masks (see the class docstring)")
