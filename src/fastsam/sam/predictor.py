"""``SamPredictor`` on FastSAM: set an image once, then prompt it as segment-anything's predictor is prompted.

``set_image`` runs FastSAM's everything mode (the one network run); ``predict`` and ``predict_torch`` select among
those masks (:mod:`fastsam.sam.selection`) and return SAM's outputs with SAM's shapes and dtypes: masks
``(C, H, W)`` bool (float32 logits with ``return_logits``), ``iou_predictions`` ``(C,)`` float32 (FastSAM's score
of each mask), ``low_res_masks`` ``(C, 256, 256)`` float32 logits in SAM's low-resolution frame, ``C`` = 3 with
``multimask_output`` else 1. There is no image embedding: :meth:`SamPredictor.get_image_embedding` says so.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from ..engine import FastSAM
from ..errors import FastSAMError
from .logits import segment_with_logits
from .model import SamModel, as_rgb_array, as_sam_model
from .prompting import PromptedImage
from .transforms import ResizeLongestSide


class NotApplicableError(FastSAMError, NotImplementedError):
    """A segment-anything call that has no counterpart in FastSAM (there is no image embedding)."""


EMBEDDING_MESSAGE = (
    "get_image_embedding is not applicable to FastSAM: it has no image embedding or prompt decoder (its network "
    "segments everything once and prompts select among those masks); use predict()/predict_torch() for masks"
)


class SamPredictor:
    """segment-anything's ``SamPredictor`` API over FastSAM.

    Example (code written for segment-anything, with only the import changed)::

        from fastsam.sam import SamPredictor, sam_model_registry

        sam = sam_model_registry["vit_h"](checkpoint="FastSAM-x.pt").to(device="cuda")
        predictor = SamPredictor(sam)
        predictor.set_image(image)                       # (H, W, 3) uint8 RGB
        masks, scores, logits = predictor.predict(
            point_coords=np.array([[500, 375]]), point_labels=np.array([1]), multimask_output=True
        )                                                # (3, H, W) bool, (3,) float32, (3, 256, 256) float32

    Args:
        sam_model: a model from :data:`fastsam.sam.sam_model_registry`, a :class:`FastSAM`, or FastSAM weights.
    """

    def __init__(self, sam_model: SamModel | FastSAM | str | os.PathLike) -> None:
        self.model = as_sam_model(sam_model)
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        """Forget the image set last."""
        self.is_image_set = False
        self.features = None  # SAM's image embedding; FastSAM has none
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None
        self.session: PromptedImage | None = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Segment ``image`` (``(H, W, 3)`` uint8 in ``image_format``, ``"RGB"`` or ``"BGR"``) for the prompts."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        image = as_rgb_array(image)
        if image_format != self.model.image_format:
            image = np.ascontiguousarray(image[..., ::-1])
        self._set(image)

    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """SAM's lower-level entry: a ``(1, 3, h, w)`` image already resized to a longest side of 1024 (0-255).

        FastSAM segments the original size, so the image is resized back to ``original_image_size`` first.
        """
        if transformed_image.ndim != 4 or transformed_image.shape[:2] != (1, 3):
            raise ValueError(f"set_torch_image takes a (1, 3, H, W) tensor, got shape {tuple(transformed_image.shape)}")
        array = transformed_image[0].permute(1, 2, 0).detach().float().clamp(0, 255).round().byte().cpu().numpy()
        height, width = (int(v) for v in original_image_size[:2])
        if array.shape[:2] != (height, width):
            array = np.asarray(Image.fromarray(array).resize((width, height), Image.BILINEAR))
        self._set(np.ascontiguousarray(array))

    def _set(self, image: np.ndarray) -> None:
        self.reset_image()
        [segmented] = segment_with_logits(self.model.fastsam, [image], **self.model.settings)
        self.session = PromptedImage(segmented)
        self.original_size = (int(image.shape[0]), int(image.shape[1]))
        self.input_size = self.transform.get_preprocess_shape(*self.original_size, self.transform.target_length)
        self.is_image_set = True

    def _require_image(self) -> PromptedImage:
        if not self.is_image_set or self.session is None:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        return self.session

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one prompt, in original-image pixels.

        Args:
            point_coords: ``(N, 2)`` x, y; point_labels: ``(N,)`` 1 foreground, 0 background.
            box: ``(4,)`` or ``(1, 4)`` x1, y1, x2, y2.
            mask_input: ``(1, 256, 256)`` logits from an earlier call (ranks the candidates by overlap).
            multimask_output: three candidates, part to whole; else one.
            return_logits: masks as float32 logits instead of bool.

        Returns:
            ``masks (C, H, W)``, ``iou_predictions (C,)`` float32, ``low_res_masks (C, 256, 256)`` float32 (numpy).
        """
        session = self._require_image()
        masks, scores, low = session.answer(point_coords, point_labels, box, mask_input, multimask_output, return_logits)
        return masks.numpy(), scores.numpy(), low.numpy()

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prompts in SAM's resized input frame (``predictor.transform.apply_coords_torch`` /
        ``apply_boxes_torch`` put them there).

        Args:
            point_coords: ``(B, N, 2)``; point_labels: ``(B, N)``; boxes: ``(B, 4)``; mask_input:
                ``(B, 1, 256, 256)``.

        Returns:
            ``masks (B, C, H, W)``, ``iou_predictions (B, C)``, ``low_res_masks (B, C, 256, 256)`` on
            :attr:`device`.
        """
        session = self._require_image()
        size = self.original_size
        given = [t for t in (point_coords, boxes, mask_input) if t is not None]
        if not given:
            raise ValueError("predict_torch needs point_coords, boxes or mask_input")
        batch = int(given[0].shape[0])
        if any(int(t.shape[0]) != batch for t in given):
            raise ValueError(f"point_coords, boxes and mask_input must share the batch size; got {[tuple(t.shape) for t in given]}")
        if point_coords is not None and point_labels is None:
            raise ValueError("point_labels must be given with point_coords: 1 foreground, 0 background")
        coords = labels = box_arr = None
        if point_coords is not None:
            coords = self.transform.to_original_coords(point_coords.detach().cpu().numpy(), size)
            coords = _clip_rounding(coords, size)
            labels = point_labels.detach().cpu().numpy()
        if boxes is not None:
            box_arr = _clip_rounding(self.transform.to_original_boxes(boxes.detach().cpu().numpy(), size).reshape(-1, 2, 2), size)
            box_arr = box_arr.reshape(-1, 4)
        outputs = []
        for b in range(batch):
            prompt = [None if t is None else t[b] for t in (coords, labels, box_arr, mask_input)]
            outputs.append(session.answer(*prompt, multimask_output, return_logits))
        masks, scores, low = (torch.stack([o[i] for o in outputs]).to(self.device) for i in range(3))
        return masks, scores, low

    def get_image_embedding(self) -> torch.Tensor:
        """Not applicable: FastSAM has no image embedding (raises :class:`NotApplicableError`)."""
        raise NotApplicableError(EMBEDDING_MESSAGE)


def _clip_rounding(coords: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pull coordinates that the frame change pushed past the image edge by float rounding (< 0.01 px) back in."""
    height, width = size
    out = np.array(coords, dtype=np.float64)
    for axis, limit in ((0, width), (1, height)):
        values = out[..., axis]
        near = (values > limit) & (values < limit + 0.01) | (values < 0) & (values > -0.01)
        values[near] = np.clip(values[near], 0, limit)
    return out
