"""SAM 2's image API on FastSAM: ``SAM2ImagePredictor`` and ``SAM2AutomaticMaskGenerator``.

Where SAM 2 differs from SAM, so does this module:

* ``set_image`` takes an RGB array or a PIL image (no ``image_format``); ``set_image_batch`` takes a list of arrays
  and ``predict_batch`` one prompt set per image (lists in, lists out);
* ``predict(..., normalize_coords=True)``: with ``normalize_coords=False`` the points and boxes are fractions of
  the image's width and height (SAM 2's meaning), not pixels;
* masks come back as float32 arrays (0/1, or logits with ``return_logits``), low-resolution logits clamped to
  [-32, 32]; several boxes (``(B, 4)``) or point sets (``(B, N, 2)``) give ``(B, C, H, W)``;
* ``mask_threshold`` sets the logit threshold of the returned masks; ``max_hole_area`` / ``max_sprinkle_area``
  fill holes and remove specks up to that area. SAM 2 counts those areas in its 256 x 256 low-resolution frame and
  cleans the low-resolution logits; here the same areas are scaled to original pixels
  (``x (longest side / 256)^2``) and the full-resolution masks are cleaned (:mod:`fastsam.sam.regions`);
* the generator adds ``mask_threshold``; ``min_mask_region_area`` means SAM 2's hole and sprinkle removal;
  ``use_m2m`` and ``multimask_output`` have no FastSAM meaning (warned once).

Models come from :func:`fastsam.sam.build_sam2` / ``from_pretrained`` (FastSAM weights, see :mod:`fastsam.sam.build`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ..engine import FastSAM
from ..ops.sam_records import tighten
from .automatic import FoundMasks, SamAutomaticMaskGenerator
from .build import build_sam2_hf
from .logits import LOW_RES, segment_with_logits
from .model import SamModel, as_rgb_array, as_sam_model
from .options import warn_once
from .predictor import EMBEDDING_MESSAGE, NotApplicableError
from .prompting import PromptedImage
from .regions import clean_window, remove_small_regions

_PREDICTOR_OPTIONS = ("mask_threshold", "max_hole_area", "max_sprinkle_area")


def low_res_area_to_pixels(area: float, image_size: tuple[int, int]) -> float:
    """An area in SAM 2's 256 x 256 low-resolution frame, in pixels of an ``image_size`` image."""
    return float(area) * (max(image_size) / LOW_RES) ** 2


class SAM2ImagePredictor:
    """SAM 2's ``SAM2ImagePredictor`` API over FastSAM (differences from SAM's: see the module docstring).

    Args:
        sam_model: from :func:`fastsam.sam.build_sam2`, ``sam_model_registry``, a :class:`FastSAM` or weights.
        mask_threshold: logit threshold of the returned masks.
        max_hole_area, max_sprinkle_area: SAM 2's hole filling and speck removal (low-resolution areas).
    """

    def __init__(
        self,
        sam_model: SamModel | FastSAM | str | os.PathLike,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
        **kwargs: Any,
    ) -> None:
        for name in kwargs:
            warn_once(f"SAM2ImagePredictor({name})", f"SAM2ImagePredictor({name}=...) has no FastSAM meaning: ignored")
        self.model = as_sam_model(sam_model)
        self.mask_threshold = float(mask_threshold)
        self.max_hole_area = float(max_hole_area)
        self.max_sprinkle_area = float(max_sprinkle_area)
        self.reset_predictor()

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs: Any) -> SAM2ImagePredictor:
        """``facebook/sam2-hiera-*`` ids map to FastSAM weights (see :func:`fastsam.sam.build_sam2_hf`)."""
        options = {k: kwargs.pop(k) for k in _PREDICTOR_OPTIONS if k in kwargs}
        return cls(build_sam2_hf(model_id, **kwargs), **options)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_predictor(self) -> None:
        self._is_image_set = False
        self._is_batch = False
        self._features = None
        self._orig_hw: list[tuple[int, int]] | None = None
        self._sessions: list[PromptedImage] = []

    def set_image(self, image: np.ndarray | Any) -> None:
        """Segment one RGB image (``(H, W, 3)`` uint8 array or PIL image)."""
        self._set([as_rgb_array(image)], batch=False)

    def set_image_batch(self, image_list: list[np.ndarray]) -> None:
        """Segment several RGB images (one network batch per input shape) for :meth:`predict_batch`."""
        if not isinstance(image_list, list):
            raise TypeError(f"set_image_batch takes a list of (H, W, 3) uint8 arrays, got {type(image_list).__name__}")
        self._set([as_rgb_array(image) for image in image_list], batch=True)

    def _set(self, images: list[np.ndarray], batch: bool) -> None:
        self.reset_predictor()
        segmented = segment_with_logits(self.model.fastsam, images, **self.model.settings)
        self._sessions = [PromptedImage(s) for s in segmented]
        self._orig_hw = [s.image_size for s in segmented]
        self._is_image_set, self._is_batch = True, batch

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for the prompts on the image set last (the last image after :meth:`set_image_batch`).

        Returns:
            ``masks (C, H, W)`` float32, ``ious (C,)`` float32, ``low_res_masks (C, 256, 256)`` float32; with ``B``
            boxes or point sets, ``(B, C, H, W)``, ``(B, C)``, ``(B, C, 256, 256)``.
        """
        if not self._is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        return self._predict(-1, point_coords, point_labels, box, mask_input, multimask_output, return_logits,
                             normalize_coords)  # fmt: skip

    def predict_batch(
        self,
        point_coords_batch: list[np.ndarray] | None = None,
        point_labels_batch: list[np.ndarray] | None = None,
        box_batch: list[np.ndarray] | None = None,
        mask_input_batch: list[np.ndarray] | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """:meth:`predict` for each image of :meth:`set_image_batch`, prompt lists indexed by image."""
        if not self._is_batch:
            raise RuntimeError("predict_batch needs images set with .set_image_batch(...)")
        outputs = [
            self._predict(i, *(None if b is None else b[i] for b in (point_coords_batch, point_labels_batch, box_batch,
                                                                    mask_input_batch)),
                          multimask_output, return_logits, normalize_coords)
            for i in range(len(self._sessions))
        ]  # fmt: skip
        return [o[0] for o in outputs], [o[1] for o in outputs], [o[2] for o in outputs]

    def _predict(self, image: int, points, labels, box, mask_input, multimask: bool, return_logits: bool,
                 normalize: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        session = self._sessions[image]
        height, width = session.image_size
        scale = np.array([width, height], dtype=np.float64)
        if points is not None:
            points = np.asarray(points, dtype=np.float64)
            points = points * scale if not normalize else points
            points = points[None] if points.ndim == 2 else points
            labels = np.asarray(labels).reshape(points.shape[0], -1) if labels is not None else None
        if box is not None:
            box = np.asarray(box, dtype=np.float64).reshape(-1, 4)
            box = box * np.tile(scale, 2) if not normalize else box
        if mask_input is not None:
            mask_input = np.asarray(mask_input, dtype=np.float32)
            mask_input = mask_input.reshape(-1, *mask_input.shape[-2:])
        sizes = {a.shape[0] for a in (points, box, mask_input) if a is not None and a.shape[0] > 1}
        if len(sizes) > 1:
            raise ValueError(f"points, boxes and mask inputs give different numbers of prompts: {sorted(sizes)}")
        batch = max(sizes, default=1)
        outputs = []
        for b in range(batch):
            prompt = [None if arr is None else arr[b if arr.shape[0] > 1 else 0] for arr in (points, labels, box, mask_input)]
            answers = session.select(*prompt, multimask)
            logits_wanted = return_logits or self.mask_threshold != 0.0
            masks, scores, low = session.render(answers, return_logits=logits_wanted)
            if logits_wanted and not return_logits:
                masks = masks > self.mask_threshold
            masks = self._clean(masks, session.image_size, return_logits)
            outputs.append((masks.float(), scores, low.clamp(-32.0, 32.0)))
        masks, scores, low = (torch.stack([o[i] for o in outputs]) for i in range(3))
        if batch == 1:
            masks, scores, low = masks[0], scores[0], low[0]
        return masks.numpy(), scores.numpy(), low.numpy()

    def _clean(self, masks: torch.Tensor, size: tuple[int, int], logits: bool) -> torch.Tensor:
        """SAM 2's hole filling and speck removal, at full resolution (see the module docstring)."""
        if self.max_hole_area <= 0 and self.max_sprinkle_area <= 0:
            return masks
        holes = low_res_area_to_pixels(self.max_hole_area, size)
        specks = low_res_area_to_pixels(self.max_sprinkle_area, size)
        out = masks.clone()
        for k in range(out.shape[0]):
            binary = (out[k] > self.mask_threshold).numpy() if logits else out[k].numpy()
            cleaned = binary
            if holes > 0:
                cleaned, _ = remove_small_regions(cleaned, holes + 1, "holes")
            if specks > 0:
                cleaned, _ = remove_small_regions(cleaned, specks + 1, "islands", keep_largest=False)
            if logits:  # as SAM 2: filled pixels just above the threshold, removed ones just below
                grown, shrunk = torch.from_numpy(cleaned & ~binary), torch.from_numpy(binary & ~cleaned)
                out[k][grown] = self.mask_threshold + 0.1
                out[k][shrunk] = self.mask_threshold - 0.1
            else:
                out[k] = torch.from_numpy(cleaned)
        return out

    def get_image_embedding(self) -> torch.Tensor:
        """Not applicable: FastSAM has no image embedding (raises :class:`NotApplicableError`)."""
        raise NotApplicableError(EMBEDDING_MESSAGE)


class SAM2AutomaticMaskGenerator(SamAutomaticMaskGenerator):
    """SAM 2's ``SAM2AutomaticMaskGenerator`` over FastSAM: SAM's generator (see :mod:`fastsam.sam.automatic`)
    with SAM 2's signature. ``min_mask_region_area`` is SAM 2's hole and speck removal (areas in its low-resolution
    frame, see the module docstring), applied to the final masks with no NMS after it."""

    def __init__(
        self,
        model: SamModel | FastSAM | str | os.PathLike,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.4,
        stability_score_thresh: float = 0.0,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.9,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        use_m2m: bool = False,
        multimask_output: bool = True,
        **kwargs: Any,
    ) -> None:
        if use_m2m:
            warn_once("use_m2m", "use_m2m has no FastSAM meaning (there is no mask-to-mask refinement): ignored")
        if not multimask_output:
            warn_once("multimask_output", "multimask_output has no FastSAM meaning for the generator "
                      "(everything mode gives one mask per object): ignored")  # fmt: skip
        settings = {k: kwargs.pop(k) for k in ("imgsz", "max_det") if k in kwargs}
        for name in kwargs:
            warn_once(f"SAM2AutomaticMaskGenerator({name})", f"SAM2AutomaticMaskGenerator({name}=...) has no FastSAM "
                      "meaning: ignored")  # fmt: skip
        super().__init__(
            model, points_per_side, points_per_batch, pred_iou_thresh, stability_score_thresh, stability_score_offset,
            box_nms_thresh, crop_n_layers, crop_nms_thresh, crop_overlap_ratio, crop_n_points_downscale_factor,
            point_grids, min_mask_region_area, output_mode, **settings,
        )  # fmt: skip
        self.mask_threshold = float(mask_threshold)
        self.use_m2m = use_m2m
        self.multimask_output = multimask_output

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs: Any) -> SAM2AutomaticMaskGenerator:
        """``facebook/sam2-hiera-*`` ids map to FastSAM weights (see :func:`fastsam.sam.build_sam2_hf`)."""
        model_keys = ("device", "conf", "iou", "precision")
        return cls(build_sam2_hf(model_id, **{k: kwargs.pop(k) for k in model_keys if k in kwargs}), **kwargs)

    def postprocess_small_regions(self, found: FoundMasks, size: tuple[int, int]) -> FoundMasks:
        area = low_res_area_to_pixels(self.min_mask_region_area, size) + 1  # SAM 2 removes areas <= the limit
        windows, bounds = [], []
        for window, box in zip(found.windows, found.bounds):
            new_window, new_bounds, _ = clean_window(window, box, size, area, keep_largest=False)
            windows.append(new_window)
            bounds.append(new_bounds)
        windows, bounds = tighten(windows, np.asarray(bounds, dtype=np.int64).reshape(-1, 4))
        cleaned = FoundMasks(windows, bounds, found.scores, found.stability, found.points, found.crop_boxes)
        return cleaned.select(np.array([w.any() for w in cleaned.windows], dtype=bool))
