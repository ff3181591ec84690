"""Letterbox pre-processing: resize keeping the aspect ratio, pad to a multiple of the stride."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

PAD_VALUE = 114  # grey used for the letterbox padding
STRIDE = 32  # the network's largest stride: input sides must be multiples of it


@dataclass(frozen=True)
class Letterbox:
    """How one image was placed in the network input.

    Attributes:
        orig_hw: ``(H, W)`` of the original image.
        resized_hw: ``(h, w)`` of the image after resizing, before padding.
        input_hw: ``(H_in, W_in)`` of the padded network input.
        top, left: padding above and left of the image, in input pixels.
    """

    orig_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    input_hw: tuple[int, int]
    top: int
    left: int


def letterbox_geometry(orig_hw: tuple[int, int], imgsz: int, stride: int = STRIDE, rect: bool = True) -> Letterbox:
    """Where an ``orig_hw`` image goes in a letterboxed network input of longest side ``imgsz``.

    With ``rect`` the input is padded only up to a multiple of ``stride`` (the minimum), else to
    ``imgsz x imgsz``. The padding is split evenly, the odd pixel going below/right.
    """
    if imgsz % stride:
        raise ValueError(f"imgsz must be a multiple of {stride}, got {imgsz}")
    h, w = orig_hw
    if h < 1 or w < 1:
        raise ValueError(f"image has no pixels: {h}x{w}")
    r = min(imgsz / h, imgsz / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = imgsz - new_w, imgsz - new_h
    if rect:
        dw, dh = dw % stride, dh % stride
    top, bottom = round(dh / 2 - 0.1), round(dh / 2 + 0.1)
    left, right = round(dw / 2 - 0.1), round(dw / 2 + 0.1)
    return Letterbox(orig_hw, (new_h, new_w), (new_h + top + bottom, new_w + left + right), top, left)


def letterbox_image(image: np.ndarray, geometry: Letterbox) -> torch.Tensor:
    """Resize and pad an RGB uint8 ``(H, W, 3)`` image as ``geometry`` says.

    Bilinear resize with pixel-centre alignment and no antialiasing, rounded to 8 bits (as an 8-bit image
    library would store it), padded with grey 114.

    Returns:
        ``(3, H_in, W_in)`` float32 in [0, 1].
    """
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    h, w = geometry.resized_hw
    if (h, w) != tuple(image.shape[:2]):
        x = F.interpolate(x[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0]
        x = x.round_().clamp_(0, 255)
    out = torch.full((3, *geometry.input_hw), float(PAD_VALUE), dtype=torch.float32)
    out[:, geometry.top : geometry.top + h, geometry.left : geometry.left + w] = x
    return out.div_(255.0)
