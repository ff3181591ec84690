"""One segmented image answering SAM-style prompts: masks, scores and logits in SAM's shapes.

:class:`PromptedImage` is what ``SamPredictor`` and ``SAM2ImagePredictor`` hold after ``set_image``: the
everything-mode masks with their logits (:class:`~fastsam.sam.logits.LogitImage`), a bit-packed index over them
for the prompt queries, and :meth:`PromptedImage.answer`, which turns one prompt (in original-image pixels) into
SAM's three outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..ops.mask_index import MaskIndex
from ..prompts.validation import box_pixels, validate_boxes, validate_points
from .logits import (
    OUTSIDE_LOGIT,
    LogitImage,
    full_logits,
    low_res_logits,
    mask_from_low_res,
)
from .selection import Answer, select_masks


class PromptedImage:
    """Prompts on one image's everything-mode masks (see :mod:`fastsam.sam.selection` for the rules)."""

    def __init__(self, image: LogitImage) -> None:
        self.image = image
        self._index: MaskIndex | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        return self.image.image_size

    @property
    def index(self) -> MaskIndex:
        """The bit-packed index over the masks, built from their windows on the first prompt."""
        if self._index is None:
            held = self.image.windows
            self._index = MaskIndex.from_windows(held.windows, held.bounds, held.image_size)
        return self._index

    def answer(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | torch.Tensor | None = None,
        multimask: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SAM's outputs for one prompt.

        Args:
            points: ``(P, 2)`` x, y in original pixels; labels: ``(P,)`` 1 foreground, 0 background, -1 ignored.
            box: ``(4,)`` x1, y1, x2, y2 in original pixels.
            mask_input: ``(1, 256, 256)`` or ``(256, 256)`` low-resolution logits (see
                :func:`~fastsam.sam.logits.low_res_logits`).

        Returns:
            ``masks (C, H, W)`` bool (float32 logits with ``return_logits``), ``scores (C,)`` float32 and
            ``low_res (C, 256, 256)`` float32, ``C`` = 3 with ``multimask`` else 1.
        """
        answers = self.select(points, labels, box, mask_input, multimask)
        return self.render(answers, return_logits)

    def select(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | torch.Tensor | None = None,
        multimask: bool = True,
    ) -> list[Answer]:
        """Check the prompt and pick the masks that answer it."""
        pixels = label_arr = box_px = prompt_mask = None
        if points is not None:
            if labels is None:
                raise ValueError("point_labels must be given with point_coords: 1 foreground, 0 background")
            coords = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            raw = np.asarray(labels).reshape(-1)
            if raw.shape[0] != coords.shape[0]:
                raise ValueError(f"{coords.shape[0]} point(s) but {raw.shape[0]} label(s): give one label per point")
            used = raw != -1  # SAM's padding points
            pixels, label_arr = validate_points(coords[used], raw[used], self.image_size)
        if box is not None:
            boxes = validate_boxes(np.asarray(box, dtype=np.float64).reshape(-1, 4), self.image_size)
            if boxes.shape[0] != 1:
                raise ValueError(f"one box per prompt, got {boxes.shape[0]}: batch boxes with predict_torch")
            box_px = box_pixels(boxes, self.image_size)[0]
        if mask_input is not None:
            low = torch.as_tensor(np.asarray(mask_input) if not isinstance(mask_input, torch.Tensor) else mask_input)
            if low.shape[-2:] != (256, 256) or low.numel() != 256 * 256:
                raise ValueError(f"mask_input must be (1, 256, 256) low-resolution logits, got shape {tuple(low.shape)}")
            prompt_mask = mask_from_low_res(low.reshape(256, 256).cpu(), self.image_size).numpy()
        return select_masks(self.index, self.image.result.scores, pixels, label_arr, box_px, prompt_mask, multimask)

    def render(self, answers: Sequence[Answer], return_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The masks (or logits), scores and low-resolution logits of ``answers``."""
        height, width = self.image_size
        unique = list(dict.fromkeys(a.members for a in answers))
        made: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        for members in unique:
            if not members:
                fill = OUTSIDE_LOGIT if return_logits else 0
                full = torch.full((height, width), fill, dtype=torch.float32 if return_logits else torch.bool)
                made[members] = full, torch.full((256, 256), OUTSIDE_LOGIT, dtype=torch.float32)
                continue
            ids = np.array(members, dtype=np.int64)
            if return_logits:
                full = full_logits(self.image, ids).amax(0)
            else:
                full = torch.from_numpy(self.index.unpack(ids).any(0))
            made[members] = full, low_res_logits(self.image, ids).amax(0)
        masks = torch.stack([made[a.members][0] for a in answers])
        low = torch.stack([made[a.members][1] for a in answers])
        scores = torch.tensor([a.score for a in answers], dtype=torch.float32)
        return masks, scores, low
