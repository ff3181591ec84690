"""SAM's input frame: the image resized so that its longest side is 1024 (``ResizeLongestSide``).

``SamPredictor.predict_torch`` and ``Sam.forward`` take prompts in that frame (``predictor.transform.apply_coords``
and ``apply_boxes`` put them there); :class:`ResizeLongestSide` does the same arithmetic as segment-anything's
class of that name (new side ``int(side * 1024 / longest + 0.5)``, coordinates scaled per axis) and also maps
prompts back to original pixels, which is where FastSAM answers them.
"""

from __future__ import annotations

from copy import deepcopy

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


class ResizeLongestSide:
    """Resize images to a longest side of ``target_length``, and map coordinates and boxes with them.

    Coordinates are ``(..., 2)`` x, y; boxes ``(..., 4)`` x1, y1, x2, y2; ``original_size`` is ``(H, W)``.
    """

    def __init__(self, target_length: int = 1024) -> None:
        self.target_length = int(target_length)

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
        """``(new_h, new_w)`` of an ``oldh x oldw`` image resized to a longest side of ``long_side_length``."""
        scale = long_side_length * 1.0 / max(oldh, oldw)
        return int(oldh * scale + 0.5), int(oldw * scale + 0.5)

    def _scales(self, original_size: tuple[int, int]) -> tuple[float, float]:
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(old_h, old_w, self.target_length)
        return new_w / old_w, new_h / old_h

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 -> the resized ``(h, w, 3)`` uint8 (bilinear)."""
        new_h, new_w = self.get_preprocess_shape(image.shape[0], image.shape[1], self.target_length)
        return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        sx, sy = self._scales(original_size)
        coords = deepcopy(coords).astype(float)
        coords[..., 0] = coords[..., 0] * sx
        coords[..., 1] = coords[..., 1] * sy
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` float -> resized (bilinear, antialiased)."""
        new_h, new_w = self.get_preprocess_shape(image.shape[2], image.shape[3], self.target_length)
        return F.interpolate(image, (new_h, new_w), mode="bilinear", align_corners=False, antialias=True)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        sx, sy = self._scales(original_size)
        coords = deepcopy(coords).to(torch.float)
        coords[..., 0] = coords[..., 0] * sx
        coords[..., 1] = coords[..., 1] * sy
        return coords

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def to_original_coords(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """The inverse of :meth:`apply_coords`: ``(..., 2)`` coordinates in the resized frame -> original pixels."""
        sx, sy = self._scales(original_size)
        coords = np.array(coords, dtype=np.float64)
        coords[..., 0] /= sx
        coords[..., 1] /= sy
        return coords

    def to_original_boxes(self, boxes: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """The inverse of :meth:`apply_boxes`."""
        return self.to_original_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)
