"""FastSAM's everything-mode masks together with the logits they are thresholded from.

A FastSAM mask is ``logits > 0`` with ``logits = coefficients @ prototypes`` (``(M,)`` coefficients per detection,
``(M, h, w)`` prototypes per image at 1/4 of the network input), resized to the original image and zeroed outside
the detection's box. :func:`segment_with_logits` runs :meth:`fastsam.FastSAM.predict`'s steps and keeps the
prototypes and coefficients, so that SAM's API can answer what only logits give: ``return_logits``, the
``(C, 256, 256)`` low-resolution logits, and the stability score.

Outside its box a FastSAM mask is False whatever the prototypes say; its logits there are clamped to at most
:data:`OUTSIDE_LOGIT`, which is also the value of the low-resolution frame's padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import check_thresholds
from ..engine import FastSAM, to_result
from ..masks import WindowedMasks
from ..ops.boxes import scale_boxes_to_original
from ..ops.parallel import map_slices
from ..ops.sign_resize import Taps, linear_taps
from ..postprocess import Detections, _logit_crop, fastsam_box_step, select_detections
from ..results import SegmentationResult
from ..transforms import Letterbox
from .transforms import ResizeLongestSide

OUTSIDE_LOGIT = -32.0  # logit outside a mask's box (SAM 2 clamps its low-resolution logits to [-32, 32])
LOW_RES = 256  # SAM's low-resolution mask side: 1/4 of its 1024 input


@dataclass
class LogitImage:
    """One image's everything-mode masks and what their logits are made from.

    Attributes:
        result: the masks as :meth:`FastSAM.predict` returns them (held as box windows), boxes after FastSAM's
            box step, scores.
        protos: ``(M, h, w)`` float32 prototypes (CPU).
        coefficients: ``(N, M)`` float32, one row per mask of ``result``.
        boxes: ``(N, 4)`` float32 xyxy original pixels before the box step: each mask's window is made from it.
        geometry: where the image sits in the network input.
        threshold: the logit above which a pixel is in a mask (0 for FastSAM).
        stability: ``(N,)`` float32 SAM's stability score of each mask, when asked for.
        windows: the masks, each in the window of its tight box (default: the result's own windows).
    """

    result: SegmentationResult
    protos: torch.Tensor
    coefficients: torch.Tensor
    boxes: torch.Tensor
    geometry: Letterbox
    threshold: float = 0.0
    stability: np.ndarray | None = None
    windows: WindowedMasks | None = None

    def __post_init__(self) -> None:
        if self.windows is None:
            held = self.result.mask_windows()
            if held is None:
                raise ValueError("LogitImage needs the masks as box windows (WindowedMasks)")
            self.windows = held

    def __len__(self) -> int:
        return len(self.result)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.result.image_size


def window_pass(
    protos: torch.Tensor,
    coefficients: torch.Tensor,
    boxes: torch.Tensor,
    geometry: Letterbox,
    threshold: float = 0.0,
    count_thresholds: Sequence[float] = (),
) -> tuple[WindowedMasks, np.ndarray]:
    """The masks of :func:`fastsam.postprocess.masks_in_windows` (``logits > threshold``), and how many pixels of
    each window's logits exceed each of ``count_thresholds``, from one resampling of each window.

    The windows, the window of prototype logits behind each and its taps are ``masks_in_windows``' own; the window's
    logits are resampled densely (``F.interpolate``'s arithmetic: width first, then height, float32) rather than by
    sign lookup, so that the same values also give the counts (SAM's stability score needs two). The masks equal
    ``masks_in_windows``' up to float rounding of logits within an ulp of the threshold.

    Returns:
        The masks, each held in its tight box's window (the part of the box window that holds it), and
        ``(N, len(count_thresholds))`` int64 counts over the box windows.
    """
    m, mh, mw = protos.shape
    h, w = geometry.orig_hw
    bounds = box_windows(boxes, (h, w))
    counts_shape = (coefficients.shape[0], len(count_thresholds))
    if not coefficients.shape[0]:
        return WindowedMasks([], bounds, (h, w)), np.zeros(counts_shape, dtype=np.int64)
    logits = (coefficients @ protos.float().view(m, -1)).view(-1, mh, mw).float().cpu()
    factor, _, (top, left, crop_h, crop_w) = _logit_crop(geometry, mh, mw)
    boxes_list = bounds.tolist()
    nothing = (np.zeros((0, 0), dtype=bool), [0, 0, 0, 0], (0,) * len(count_thresholds))

    def work(part: slice) -> list[tuple[np.ndarray, list[int], tuple[int, ...]]]:
        out = []
        for k in range(part.start, part.stop):
            xa, ya, xb, yb = boxes_list[k]
            if xb <= xa or yb <= ya:
                out.append(nothing)
                continue
            rows = linear_taps(ya, yb, crop_h / h, crop_h)
            cols = linear_taps(xa, xb, crop_w / w, crop_w)
            # the taps' span in the upsampled logits, and the logits window (with margin) that produces it
            ua, ub = top + int(rows[0][0]), top + int(rows[1][-1])
            va, vb = left + int(cols[0][0]), left + int(cols[1][-1])
            pa, pb = max(0, ua // factor - 1), min(mh, ub // factor + 2)
            qa, qb = max(0, va // factor - 1), min(mw, vb // factor + 2)
            window = logits[k : k + 1, pa:pb, qa:qb]
            if factor > 1:
                window = F.interpolate(window[None], scale_factor=factor, mode="bilinear")[0]
            dy, dx = top - pa * factor, left - qa * factor
            values = _resample(window[0], rows, cols, dy, dx)
            counts = tuple(int(torch.count_nonzero(values > t)) for t in count_thresholds)
            mask = values > threshold
            inside_rows, inside_cols = torch.nonzero(mask.any(1)), torch.nonzero(mask.any(0))
            if inside_rows.numel() == 0:
                out.append((nothing[0], nothing[1], counts))
                continue
            r1, r2, c1, c2 = int(inside_rows[0]), int(inside_rows[-1]) + 1, int(inside_cols[0]), int(inside_cols[-1]) + 1
            out.append((mask[r1:r2, c1:c2].numpy(), [xa + c1, ya + r1, xa + c2, ya + r2], counts))
        return out

    done = map_slices(len(boxes_list), work, name="fastsam-sam-masks")  # torch releases the GIL
    counts = np.array([c for _, _, c in done], dtype=np.int64).reshape(counts_shape)
    tight = np.array([b for _, b, _ in done], dtype=np.int64).reshape(-1, 4)
    return WindowedMasks([mask for mask, _, _ in done], tight, (h, w)), counts


def box_windows(boxes: torch.Tensor, image_size: tuple[int, int]) -> np.ndarray:
    """``(N, 4)`` int64 pixel windows of boxes, as :func:`fastsam.postprocess.masks_in_windows` makes them: pixels
    ``ceil(x1) .. ceil(x2) - 1`` by ``ceil(y1) .. ceil(y2) - 1``, clipped to the image (an empty box: empty)."""
    h, w = image_size
    bounds = torch.as_tensor(boxes).float().ceil().to(torch.int64).cpu().reshape(-1, 4)
    bounds[:, 0::2] = bounds[:, 0::2].clamp(0, w)
    bounds[:, 1::2] = bounds[:, 1::2].clamp(0, h)
    return torch.maximum(bounds, bounds[:, [0, 1, 0, 1]]).numpy()


def _resample(src: torch.Tensor, rows: Taps, cols: Taps, dy: int, dx: int) -> torch.Tensor:
    """Bilinear samples of ``src`` at the taps (shifted by ``dy``, ``dx`` into ``src``): ``(len(rows), len(cols))``."""
    c0, c1 = torch.from_numpy(cols[0] + dx), torch.from_numpy(cols[1] + dx)
    r0, r1 = torch.from_numpy(rows[0] + dy), torch.from_numpy(rows[1] + dy)
    lx, ly = torch.from_numpy(cols[2]), torch.from_numpy(rows[2])[:, None]
    across = src.index_select(1, c0) * (1 - lx) + src.index_select(1, c1) * lx
    return across.index_select(0, r0) * (1 - ly) + across.index_select(0, r1) * ly


@torch.inference_mode()
def segment_with_logits(
    model: FastSAM,
    images: Sequence[np.ndarray],
    names: Sequence[str] | None = None,
    imgsz: int = 1024,
    conf: float = 0.4,
    iou: float = 0.9,
    max_det: int = 300,
    threshold: float = 0.0,
    stability_offset: float | None = None,
) -> list[LogitImage]:
    """:meth:`FastSAM.predict` on decoded RGB uint8 images (one network pass per input shape), keeping the logits.

    With ``threshold == 0`` the masks, boxes and scores are :meth:`FastSAM.predict`'s (masks equal up to float
    rounding of logits within an ulp of 0, see :func:`window_pass`; made on the CPU). With ``stability_offset``
    each image also gets SAM's stability score of every mask, from the same pass.
    """
    check_thresholds(conf, iou, max_det)
    names = list(names) if names is not None else [""] * len(images)
    out: list[LogitImage | None] = [None] * len(images)
    for stage in model.forward_arrays(images, imgsz):
        for j, i in enumerate(stage.indices):
            geometry = stage.geometries[j]
            boxes_in, scores, classes, coefficients = select_detections(
                stage.preds[j].float(), model.network.nc, conf, iou, max_det
            )
            boxes = scale_boxes_to_original(boxes_in, geometry).float().cpu()
            protos, coefficients = stage.protos[j].float().cpu(), coefficients.float().cpu()
            offsets = () if stability_offset is None else (threshold + stability_offset, threshold - stability_offset)
            masks, counts = window_pass(protos, coefficients, boxes, geometry, threshold, offsets)
            keep = masks.any()
            if not keep.all():
                masks, kept = masks.select(keep), torch.from_numpy(keep)
                boxes, scores, classes, coefficients = boxes[kept], scores.cpu()[kept], classes.cpu()[kept], coefficients[kept]
                counts = counts[keep]
            detections = Detections(fastsam_box_step(boxes, geometry.orig_hw), scores.cpu(), masks, classes.cpu())
            result = to_result(detections, images[i], names[i])
            stability = None if stability_offset is None else stability_from_counts(counts[:, 0], counts[:, 1])
            out[i] = LogitImage(result, protos, coefficients, boxes, geometry, float(threshold), stability, masks)
    return out  # type: ignore[return-value]


def stability_from_counts(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """SAM's stability score from the pixel counts above ``t + offset`` and ``t - offset``: float32, NaN for 0 / 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.asarray(high, dtype=np.float32) / np.asarray(low, dtype=np.float32)).astype(np.float32)


def _cropped_logits(image: LogitImage, indices: np.ndarray) -> torch.Tensor:
    """``(K, crop_h, crop_w)`` logits of masks ``indices`` over the image area of the (upsampled) prototypes,
    as the reference crops them before resizing to the original size."""
    m, mh, mw = image.protos.shape
    coefficients = image.coefficients[torch.as_tensor(np.asarray(indices, dtype=np.int64))]
    logits = (coefficients @ image.protos.view(m, -1)).view(-1, mh, mw)
    factor, _, (top, left, crop_h, crop_w) = _logit_crop(image.geometry, mh, mw)
    if factor > 1 and logits.shape[0]:
        logits = F.interpolate(logits[None], scale_factor=factor, mode="bilinear")[0]
    return logits[:, top : top + crop_h, left : left + crop_w]


def _outside(bounds: np.ndarray, size: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """``(K, h, w)`` bool: the pixels of a ``size`` frame over the image whose centres fall outside each window."""
    (h, w), (height, width) = size, image_size
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) * (height / h)
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) * (width / w)
    b = torch.as_tensor(np.asarray(bounds, dtype=np.float64)).reshape(-1, 4)
    rows = (ys[None] >= b[:, 1:2]) & (ys[None] < b[:, 3:4])
    cols = (xs[None] >= b[:, 0:1]) & (xs[None] < b[:, 2:3])
    return ~(rows[:, :, None] & cols[:, None, :])


def full_logits(image: LogitImage, indices: np.ndarray) -> torch.Tensor:
    """``(K, H, W)`` float32 logits of masks ``indices`` at the original resolution.

    ``logits > threshold`` is the mask (up to float rounding within an ulp of the threshold); outside a mask's
    window the logits are at most :data:`OUTSIDE_LOGIT`.
    """
    height, width = image.image_size
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size == 0:
        return torch.zeros((0, height, width), dtype=torch.float32)
    crop = _cropped_logits(image, indices)
    logits = F.interpolate(crop[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    bounds = box_windows(image.boxes, image.image_size)[indices]
    for k, (x1, y1, x2, y2) in enumerate(bounds.tolist()):
        plane = logits[k]
        plane[:y1].clamp_(max=OUTSIDE_LOGIT)
        plane[y2:].clamp_(max=OUTSIDE_LOGIT)
        plane[y1:y2, :x1].clamp_(max=OUTSIDE_LOGIT)
        plane[y1:y2, x2:].clamp_(max=OUTSIDE_LOGIT)
    return logits


def low_res_logits(image: LogitImage, indices: np.ndarray) -> torch.Tensor:
    """``(K, 256, 256)`` float32 logits in SAM's low-resolution frame.

    SAM's frame is its 1024 x 1024 input (the image resized so that its longest side is 1024, at the top left,
    padded below and to the right) at 1/4 resolution. The logits are resized onto the image's part of that input,
    clamped to :data:`OUTSIDE_LOGIT` outside each mask's window, padded with :data:`OUTSIDE_LOGIT` and averaged over
    4 x 4 blocks; :func:`mask_from_low_res` turns them back into a mask.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    side = 4 * LOW_RES
    if indices.size == 0:
        return torch.zeros((0, LOW_RES, LOW_RES), dtype=torch.float32)
    new_h, new_w = ResizeLongestSide.get_preprocess_shape(*image.image_size, side)
    crop = _cropped_logits(image, indices)
    resized = F.interpolate(crop[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
    outside = _outside(box_windows(image.boxes, image.image_size)[indices], (new_h, new_w), image.image_size)
    resized = torch.where(outside, resized.clamp(max=OUTSIDE_LOGIT), resized)
    frame = torch.full((indices.size, side, side), OUTSIDE_LOGIT, dtype=torch.float32)
    frame[:, :new_h, :new_w] = resized
    return F.avg_pool2d(frame[:, None], 4)[:, 0]


def mask_from_low_res(mask_input: torch.Tensor, image_size: tuple[int, int], threshold: float = 0.0) -> torch.Tensor:
    """SAM's reading of ``(..., 256, 256)`` low-resolution logits: upsampled to its 1024 input, cropped to the
    image's part, resized to ``image_size`` and thresholded. Returns ``(..., H, W)`` bool."""
    lead = mask_input.shape[:-2]
    x = mask_input.reshape(-1, 1, *mask_input.shape[-2:]).float()
    side = 4 * LOW_RES
    new_h, new_w = ResizeLongestSide.get_preprocess_shape(*image_size, side)
    x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)[..., :new_h, :new_w]
    x = F.interpolate(x, size=tuple(image_size), mode="bilinear", align_corners=False)
    return (x > threshold).reshape(*lead, *image_size)
