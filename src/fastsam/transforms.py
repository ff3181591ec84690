"""Letterbox pre-processing: resize keeping the aspect ratio, pad to a multiple of the stride."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .jit import Kernel

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


_COEF_BITS = 11  # fixed-point precision of the interpolation weights
_COEF_SCALE = 1 << _COEF_BITS


def _linear_weights(n_out: int, n_in: int, clamp_weights: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Taps and 11-bit weights of an 8-bit bilinear resize along one axis (pixel-centre alignment).

    Along x the weights of taps outside the image are folded onto the edge pixel; along y the edge row is
    repeated with the weights kept, which rounds slightly differently: both as the reference's resize does.
    """
    pos = ((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5).astype(np.float32)
    first = np.floor(pos).astype(np.int64)
    frac = pos - first
    if clamp_weights:
        low, high = first < 0, first >= n_in - 1
        frac[low | high] = 0.0
        first[low] = 0
        first[high] = n_in - 1
    w0 = np.rint((np.float32(1.0) - frac) * _COEF_SCALE).astype(np.int32)
    w1 = np.rint(frac * _COEF_SCALE).astype(np.int32)
    i0, i1 = np.clip(first, 0, n_in - 1), np.clip(first + 1, 0, n_in - 1)
    return (torch.from_numpy(i0), torch.from_numpy(i1), torch.from_numpy(w0), torch.from_numpy(w1))


def _resize_u8(
    image: np.ndarray,
    x0: np.ndarray,
    x1: np.ndarray,
    a0: np.ndarray,
    a1: np.ndarray,
    y0: np.ndarray,
    y1: np.ndarray,
    b0: np.ndarray,
    b1: np.ndarray,
) -> np.ndarray:
    """:func:`resize_bilinear_u8`'s arithmetic in one pass (compiled by Numba): each source row the output reads is
    interpolated across once (kept while consecutive output rows read it), then each output row is blended from
    its two. ``image`` ``(H, W, C)`` uint8; taps and weights as :func:`_linear_weights` gives them (int64 taps,
    int32 weights); returns ``(len(y0), len(x0), C)`` uint8."""
    h, w, c = y0.shape[0], x0.shape[0], image.shape[2]
    out = np.empty((h, w, c), dtype=np.uint8)
    upper = np.empty((w, c), dtype=np.int64)  # source row y0[i] across, then source row y1[i] across
    lower = np.empty((w, c), dtype=np.int64)
    upper_row, lower_row = -1, -1
    for i in range(h):
        if y0[i] != upper_row:
            if y0[i] == lower_row:
                upper, lower = lower, upper
                upper_row, lower_row = lower_row, upper_row
            else:
                src = image[y0[i]]
                for j in range(w):
                    for k in range(c):
                        upper[j, k] = np.int64(src[x0[j], k]) * a0[j] + np.int64(src[x1[j], k]) * a1[j]
                upper_row = y0[i]
        if y1[i] != lower_row:
            src = image[y1[i]]
            for j in range(w):
                for k in range(c):
                    lower[j, k] = np.int64(src[x0[j], k]) * a0[j] + np.int64(src[x1[j], k]) * a1[j]
            lower_row = y1[i]
        for j in range(w):
            for k in range(c):
                value = ((((upper[j, k] >> 4) * b0[i]) >> 16) + (((lower[j, k] >> 4) * b1[i]) >> 16) + 2) >> 2
                out[i, j, k] = min(max(value, 0), 255)
    return out


#: :func:`_resize_u8` compiled (None without a usable Numba: the torch form runs, with the same bits)
RESIZE_KERNEL = Kernel(_resize_u8, "images are resized by the slower torch form")


def resize_bilinear_u8(
    image: np.ndarray, size_hw: tuple[int, int], device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Bilinear resize of an 8-bit image with fixed-point arithmetic, as the reference implementation's image
    library (OpenCV ``INTER_LINEAR`` on 8-bit images) computes it, bit for bit.

    Horizontal pass with 11-bit weights into integers, then vertical pass in 16-bit fixed point with the
    reference's rounding steps. On the CPU one compiled pass (:func:`_resize_u8`, Numba) where Numba is usable, else
    torch ops; the same bits.

    Args:
        image: ``(H, W, C)`` uint8.
        size_hw: ``(h, w)`` output size.
        device: where to compute (integer arithmetic: the same bits on every device); only the source rows the
            resize reads are copied there, as uint8.

    Returns:
        ``(h, w, C)`` uint8 tensor on ``device``.
    """
    h, w = size_hw
    kernel = RESIZE_KERNEL() if torch.device(device).type == "cpu" else None
    if kernel is not None:  # one compiled pass, no int32 copies of the source rows
        taps = [t.numpy() for t in (*_linear_weights(w, image.shape[1], True), *_linear_weights(h, image.shape[0], False))]
        return torch.from_numpy(kernel(np.ascontiguousarray(image, dtype=np.uint8).reshape(*image.shape[:2], -1), *taps))
    x0, x1, a0, a1 = (t.to(device) for t in _linear_weights(w, image.shape[1], clamp_weights=True))
    y0, y1, b0, b1 = _linear_weights(h, image.shape[0], clamp_weights=False)
    rows = torch.unique(torch.cat((y0, y1)))  # only the source rows that are used
    lookup = torch.zeros(image.shape[0], dtype=torch.int64)
    lookup[rows] = torch.arange(len(rows))
    y0, y1, b0, b1, lookup = (t.to(device) for t in (y0, y1, b0, b1, lookup))
    used = torch.from_numpy(image[rows.numpy()]).to(device).to(torch.int32)
    across = used.index_select(1, x0) * a0[None, :, None] + used.index_select(1, x1) * a1[None, :, None]
    top = ((across.index_select(0, lookup[y0]) >> 4) * b0[:, None, None]) >> 16
    bottom = ((across.index_select(0, lookup[y1]) >> 4) * b1[:, None, None]) >> 16
    return ((top + bottom + 2) >> 2).clamp_(0, 255).to(torch.uint8)


def letterbox_image(image: np.ndarray, geometry: Letterbox, device: str | torch.device = "cpu") -> torch.Tensor:
    """Resize and pad an RGB uint8 ``(H, W, 3)`` image as ``geometry`` says.

    The resize is :func:`resize_bilinear_u8`, so the network input equals the reference implementation's bit for
    bit on every device; the padding is grey 114.

    Returns:
        ``(3, H_in, W_in)`` float32 in [0, 1], on ``device``.
    """
    h, w = geometry.resized_hw
    if (h, w) != tuple(image.shape[:2]):
        x = resize_bilinear_u8(image, (h, w), device).permute(2, 0, 1)
    else:
        x = torch.from_numpy(np.array(image)).to(device).permute(2, 0, 1)
    out = torch.full((3, *geometry.input_hw), float(PAD_VALUE), dtype=torch.float32, device=device)
    out[:, geometry.top : geometry.top + h, geometry.left : geometry.left + w] = x
    return out.div_(255.0)
