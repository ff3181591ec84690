"""From raw network outputs to detections at the original image resolution.

Steps (per image): confidence filter, NMS (torchvision), mask assembly from prototypes, boxes mapped back
to the original image, then FastSAM's box step: edges within 20 px of the border snap to it and boxes that
cover more than 90% IoU of the image become the whole-image box (masks are not changed by that step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms, box_iou, nms

from .masks import RunMasks, WindowedMasks
from .ops import column_runs
from .ops.column_runs import column_toggles
from .ops.parallel import map_slices
from .ops.boxes import box_xywh_to_xyxy, crop_masks_to_boxes, scale_boxes_to_original
from .ops.rle import canonical_toggles, toggle_dtype
from .ops.sign_resize import Taps, linear_taps, positive_transitions, upsample_positive
from .transforms import Letterbox, letterbox_geometry

MAX_NMS_CANDIDATES = 30000  # candidates kept (highest scores) before NMS
BORDER_SNAP_PX = 20  # FastSAM: box edges this close to the image border snap to it
WHOLE_IMAGE_IOU = 0.9  # FastSAM: boxes with IoU above this against the image become the whole image
_MASK_CHUNK_PIXELS = 16_000_000  # float pixels per chunk when upsampling masks
_RUN_STRIP_CELLS = 1 << 16  # source rows x output columns per strip when finding a mask's runs


@dataclass
class Detections:
    """Detections of one image (torch tensors, on the device they were computed on).

    Attributes:
        boxes: ``(N, 4)`` float32 xyxy in pixels of the original image.
        scores: ``(N,)`` float32 in [0, 1].
        masks: ``(N, H, W)`` bool at the original resolution, or the same masks as
            :class:`~fastsam.masks.RunMasks` when :func:`postprocess` was asked for the lazy CPU form.
        classes: ``(N,)`` int64 class index (always 0 for FastSAM).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    masks: torch.Tensor | RunMasks | WindowedMasks
    classes: torch.Tensor

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def select_detections(
    preds: torch.Tensor, nc: int, conf: float, iou: float, max_det: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Confidence filter and NMS for one image.

    Args:
        preds: ``(4 + nc + M, A)`` one image's head output (xywh boxes in input pixels, scores, coefficients).

    Returns:
        ``boxes (K, 4)`` xyxy input pixels, ``scores (K,)``, ``classes (K,)``, ``coefficients (K, M)``, sorted by
        decreasing score, ``K <= max_det``.
    """
    scores_all = preds[4 : 4 + nc]
    best, cls = scores_all.max(0)
    keep = (best > conf).nonzero().squeeze(1)
    if keep.numel() > MAX_NMS_CANDIDATES:
        order = best[keep].sort(descending=True, stable=True).indices[:MAX_NMS_CANDIDATES]
        keep = keep[order]
    boxes = box_xywh_to_xyxy(preds[:4, keep].T)
    scores, cls = best[keep], cls[keep]
    coefficients = preds[4 + nc :, keep].T
    if nc == 1:
        picked = nms_first(boxes, scores, iou, max_det)
    else:
        picked = batched_nms(boxes, scores, cls, iou)[:max_det]
    return boxes[picked], scores[picked], cls[picked], coefficients[picked]


def nms_first(boxes: torch.Tensor, scores: torch.Tensor, iou: float, max_det: int) -> torch.Tensor:
    """``torchvision.ops.nms(boxes, scores, iou)[:max_det]``, without suppressing past the ``max_det``-th kept box.

    Greedy NMS decides on each box from the boxes kept before it in score order only, so NMS over the
    ``M`` highest-scoring boxes keeps exactly the full run's kept boxes of rank below ``M``. The first
    ``4 * max_det`` boxes are tried, then 4x more until ``max_det`` are kept or all boxes are in; this bounds the
    cost by the boxes that can matter instead of every candidate (tens of thousands from a weak network).
    Score ties keep index order, as torchvision's stable sort does.

    Args:
        boxes: ``(N, 4)`` xyxy. scores: ``(N,)``.

    Returns:
        ``(K,)`` int64 indices into ``boxes``, by decreasing score, ``K <= max_det``.
    """
    n = int(boxes.shape[0])
    order = scores.argsort(descending=True, stable=True)
    size = min(n, 4 * max_det)
    while True:
        head = order[:size]
        kept = head[nms(boxes[head], scores[head], iou)]
        if len(kept) >= max_det or size == n:
            return kept[:max_det]
        size = min(n, 4 * size)


def _interp(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def masks_full_resolution(
    protos: torch.Tensor,
    coefficients: torch.Tensor,
    boxes: torch.Tensor,
    geometry: Letterbox,
    dense: bool | None = None,
) -> torch.Tensor:
    """Masks at the original resolution ("retina" masks).

    The mask logits (at prototype resolution, 1/4 of the input) are cropped to the letterboxed image area,
    bilinearly resized to the original size, thresholded at 0 and zeroed outside their boxes. When the
    padding does not fall on a prototype pixel edge, the logits are first upsampled by the smallest factor
    (2 or 4) that makes the crop exact. This is the reference implementation's computation, bit for bit,
    except where the reference misplaces the image (see :func:`reference_placement`).

    Args:
        protos: ``(M, h, w)`` prototypes of one image.
        coefficients: ``(K, M)``.
        boxes: ``(K, 4)`` xyxy in original pixels.
        dense: resample every pixel of every mask with ``F.interpolate`` (default on GPUs), rather than only the
            pixels inside each box whose threshold is in doubt (default on CPU, several times faster; the same
            masks up to float rounding of logits within an ulp of 0).

    Returns:
        ``(K, H, W)`` bool.
    """
    if dense is None:
        dense = protos.device.type != "cpu"
    if not dense:
        return torch.from_numpy(masks_in_windows(protos, coefficients, boxes, geometry).numpy())
    m, mh, mw = protos.shape
    h, w = geometry.orig_hw
    out = torch.zeros((coefficients.shape[0], h, w), dtype=torch.bool, device=protos.device)
    if coefficients.shape[0] == 0:
        return out
    logits = (coefficients @ protos.float().view(m, -1)).view(-1, mh, mw)
    factor, (fh, fw), (top, left, crop_h, crop_w) = _logit_crop(geometry, mh, mw)
    chunk = max(1, _MASK_CHUNK_PIXELS // (h * w + fh * fw))
    for start in range(0, logits.shape[0], chunk):
        part = logits[None, start : start + chunk]
        if factor > 1:
            part = F.interpolate(part, scale_factor=factor, mode="bilinear")
        part = part[0, :, top : top + crop_h, left : left + crop_w]
        torch.gt(_interp(part[None], (h, w))[0], 0, out=out[start : start + chunk])
    return crop_masks_to_boxes(out, boxes)


def _logit_crop(geometry: Letterbox, mh: int, mw: int) -> tuple[int, tuple[int, int], tuple[int, int, int, int]]:
    """How the reference turns ``(mh, mw)`` prototype logits into the image area: the upsampling factor, the
    upsampled size and the crop ``(top, left, crop_h, crop_w)`` taken from it."""
    h, w = geometry.orig_hw
    if reference_placement(geometry.orig_hw, geometry.input_hw) == geometry:
        # The reference's crop: the smallest upsampling factor (1, 2 or 4) that puts the padding edges on
        # whole pixels, the crop size rounded at that resolution.
        gain = min(4 * mh / h, 4 * mw / w)
        pad = (4 * mh - max(round(h * gain), 1)) | (4 * mw - max(round(w * gain), 1))
        factor = 4 // math.gcd(4, pad | pad // 2)
        fh, fw = factor * mh, factor * mw
        gain = min(fh / h, fw / w)
        crop_h, crop_w = max(round(h * gain), 1), max(round(w * gain), 1)
        top, left = round((fh - crop_h) / 2 - 0.1), round((fw - crop_w) / 2 - 0.1)
        return factor, (fh, fw), (top, left, crop_h, crop_w)
    # The reference would misplace this image (its short side rounded onto a multiple of 32): crop the true
    # image area at input resolution instead.
    (crop_h, crop_w), top, left = geometry.resized_hw, geometry.top, geometry.left
    return 4, geometry.input_hw, (top, left, crop_h, crop_w)


def masks_in_windows(
    protos: torch.Tensor, coefficients: torch.Tensor, boxes: torch.Tensor, geometry: Letterbox
) -> WindowedMasks:
    """The masks of :func:`masks_full_resolution`, computed and kept only inside each box (the CPU path).

    The reference upsamples the ``(K, h, w)`` prototype-resolution logits, crops the image area, resizes the crop
    to the original size (bilinear) and thresholds at 0, then zeroes everything outside the boxes. Here the first
    upsampling runs only on the window of logits that box ``k`` reaches, with one source pixel of margin so that
    no window edge clamps a tap the full image would not (same values, bit for bit), and the second resize is a
    sign lookup (:func:`~fastsam.ops.sign_resize.upsample_positive`) over the box's pixels only.

    Returns:
        :class:`~fastsam.masks.WindowedMasks` with one window per box: its pixels ``ceil(x1) .. ceil(x2) - 1``
        by ``ceil(y1) .. ceil(y2) - 1`` clipped to the image.
    """
    plan = _WindowPlan(protos, coefficients, boxes, geometry)

    def window_masks(part: slice) -> list[np.ndarray]:
        out = []
        for k in range(part.start, part.stop):
            xa, ya, xb, yb = plan.bounds[k]
            if xb <= xa or yb <= ya:
                out.append(np.zeros((max(0, yb - ya), max(0, xb - xa)), dtype=bool))
                continue
            out.append(upsample_positive(*plan.source(k)))
        return out

    windows = map_slices(len(plan.bounds), window_masks, name="fastsam-masks")  # numpy/torch release the GIL
    return WindowedMasks(windows, plan.bounds_array, geometry.orig_hw)


def masks_as_runs(
    protos: torch.Tensor, coefficients: torch.Tensor, boxes: torch.Tensor, geometry: Letterbox
) -> RunMasks:
    """The masks of :func:`masks_in_windows`, bit for bit, straight as column-major runs (the CPU path).

    No mask is laid out, not even its window: the run boundaries come from the sign grid of each box's logits
    window plus the pixels of its mixed cells (:func:`~fastsam.ops.sign_resize.positive_transitions`), so time
    and memory follow the masks' boundaries rather than their areas (300 masks of a 36 MP photo: tens of MB).

    Returns:
        :class:`~fastsam.masks.RunMasks`, one mask per box.
    """
    plan = _WindowPlan(protos, coefficients, boxes, geometry)
    height = geometry.orig_hw[0]
    dtype = toggle_dtype(geometry.orig_hw)
    fast = column_runs.KERNEL() is not None

    def mask_runs(part: slice) -> list[np.ndarray]:
        out = []
        for k in range(part.start, part.stop):
            xa, ya, xb, yb = plan.bounds[k]
            if xb <= xa or yb <= ya:
                out.append(np.zeros(0, dtype=dtype))
                continue
            src, rows, cols = plan.source(k)
            if fast:  # compiled: one pass, no temporaries
                out.append(column_toggles(src, rows, cols, (xa, ya), height).astype(dtype))
                continue
            # numpy: a strip of output columns at a time, the temporaries follow the strip, not the window
            span = int(rows[0][-1]) - int(rows[0][0]) + 1  # source rows the window's pixels start from
            step = max(1, _RUN_STRIP_CELLS // span)
            found = []
            for a in range(0, xb - xa, step):
                x, y = positive_transitions(src, rows, (cols[0][a : a + step], cols[1][a : a + step], cols[2][a : a + step]))
                found.append((x + (xa + a)) * height + (y + ya))
            out.append(canonical_toggles(np.concatenate(found)).astype(dtype))
        return out

    return RunMasks(map_slices(len(plan.bounds), mask_runs, name="fastsam-masks"), geometry.orig_hw)


class _WindowPlan:
    """Where each box's mask comes from: its pixel window and the logits window (with margin) that produces it.

    Attributes:
        bounds: ``K`` lists ``[x1, y1, x2, y2]``: the pixels ``ceil(x1) .. ceil(x2) - 1`` by ``ceil(y1) ..
            ceil(y2) - 1`` of each box, clipped to the image (an empty box gets an empty window).
    """

    def __init__(self, protos: torch.Tensor, coefficients: torch.Tensor, boxes: torch.Tensor, geometry: Letterbox) -> None:
        m, mh, mw = protos.shape
        h, w = geometry.orig_hw
        # pixel i is inside a box if x1 <= i < x2, i.e. columns ceil(x1) .. ceil(x2) - 1
        bounds = boxes.float().ceil().to(torch.int64).cpu().reshape(-1, 4)
        bounds[:, 0::2] = bounds[:, 0::2].clamp(0, w)
        bounds[:, 1::2] = bounds[:, 1::2].clamp(0, h)
        bounds = torch.maximum(bounds, bounds[:, [0, 1, 0, 1]])  # an empty box: an empty window, not a negative one
        self.bounds_array = bounds.numpy()
        self.bounds: list[list[int]] = bounds.tolist()
        self.size = (h, w)
        self.mh, self.mw = mh, mw
        self.factor, _, (self.top, self.left, self.crop_h, self.crop_w) = _logit_crop(geometry, mh, mw)
        if coefficients.shape[0]:
            self.logits = (coefficients @ protos.float().view(m, -1)).view(-1, mh, mw).float().cpu()

    def source(self, k: int) -> tuple[np.ndarray, Taps, Taps]:
        """Box ``k``'s upsampled logits window (float32) and the row and column taps of its pixels into it."""
        (h, w), factor = self.size, self.factor
        xa, ya, xb, yb = self.bounds[k]
        rows = linear_taps(ya, yb, self.crop_h / h, self.crop_h)
        cols = linear_taps(xa, xb, self.crop_w / w, self.crop_w)
        # the taps' span in the upsampled logits, and the logits window (with margin) that produces it
        ua, ub = self.top + int(rows[0][0]), self.top + int(rows[1][-1])
        va, vb = self.left + int(cols[0][0]), self.left + int(cols[1][-1])
        pa, pb = max(0, ua // factor - 1), min(self.mh, ub // factor + 2)
        qa, qb = max(0, va // factor - 1), min(self.mw, vb // factor + 2)
        window = self.logits[k : k + 1, pa:pb, qa:qb]
        if factor > 1:
            window = F.interpolate(window[None], scale_factor=factor, mode="bilinear")[0]
        dy, dx = self.top - pa * factor, self.left - qa * factor
        rows = (rows[0] + dy, rows[1] + dy, rows[2])
        cols = (cols[0] + dx, cols[1] + dx, cols[2])
        return window[0].numpy(), rows, cols


def masks_input_resolution(
    protos: torch.Tensor, coefficients: torch.Tensor, boxes_input: torch.Tensor, input_hw: tuple[int, int]
) -> torch.Tensor:
    """Masks at the network input resolution (prototype logits upsampled, thresholded, cropped to boxes).

    Args:
        boxes_input: ``(K, 4)`` xyxy in input pixels.

    Returns:
        ``(K, H_in, W_in)`` bool.
    """
    m, mh, mw = protos.shape
    if coefficients.shape[0] == 0:
        return torch.zeros((0, *input_hw), dtype=torch.bool, device=protos.device)
    logits = (coefficients @ protos.float().view(m, -1)).view(-1, mh, mw)
    masks = _interp(logits[None], input_hw)[0] > 0
    return crop_masks_to_boxes(masks, boxes_input)


def input_masks_to_original(masks: torch.Tensor, geometry: Letterbox) -> torch.Tensor:
    """``(K, H_in, W_in)`` bool masks on the letterboxed input -> ``(K, H, W)`` bool on the original image."""
    h, w = geometry.resized_hw
    crop = masks[:, geometry.top : geometry.top + h, geometry.left : geometry.left + w]
    if masks.shape[0] == 0:
        return torch.zeros((0, *geometry.orig_hw), dtype=torch.bool, device=masks.device)
    out = torch.empty((masks.shape[0], *geometry.orig_hw), dtype=torch.bool, device=masks.device)
    chunk = max(1, _MASK_CHUNK_PIXELS // (geometry.orig_hw[0] * geometry.orig_hw[1] + h * w))
    for start in range(0, masks.shape[0], chunk):
        part = _interp(crop[None, start : start + chunk].float(), geometry.orig_hw)[0]
        torch.gt(part, 0.5, out=out[start : start + chunk])
    return out


def fastsam_box_step(boxes: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
    """FastSAM's box adjustment: snap edges near the border, widen near-whole-image boxes to the image.

    Args:
        boxes: ``(N, 4)`` xyxy in original pixels.

    Returns:
        A new ``(N, 4)`` tensor.
    """
    h, w = orig_hw
    boxes = boxes.clone()
    boxes[:, 0] = torch.where(boxes[:, 0] < BORDER_SNAP_PX, 0.0, boxes[:, 0])
    boxes[:, 1] = torch.where(boxes[:, 1] < BORDER_SNAP_PX, 0.0, boxes[:, 1])
    boxes[:, 2] = torch.where(boxes[:, 2] > w - BORDER_SNAP_PX, float(w), boxes[:, 2])
    boxes[:, 3] = torch.where(boxes[:, 3] > h - BORDER_SNAP_PX, float(h), boxes[:, 3])
    if boxes.shape[0]:
        whole = torch.tensor([[0.0, 0.0, float(w), float(h)]], dtype=boxes.dtype, device=boxes.device)
        near_whole = box_iou(whole, boxes)[0] > WHOLE_IMAGE_IOU
        boxes[near_whole] = whole
    return boxes


def postprocess(
    preds: torch.Tensor,
    protos: torch.Tensor,
    input_hw: tuple[int, int],
    orig_hws: list[tuple[int, int]],
    conf: float = 0.4,
    iou: float = 0.9,
    max_det: int = 300,
    retina: bool = True,
    nc: int = 1,
    geometries: list[Letterbox] | None = None,
    windows: bool = False,
) -> list[Detections]:
    """Turn a batch of raw outputs into per-image detections at original resolution.

    Args:
        preds: ``(B, 4 + nc + M, A)`` head output.
        protos: ``(B, M, H_in / 4, W_in / 4)``.
        input_hw: ``(H_in, W_in)`` of the network input (every image of the batch).
        orig_hws: ``(H, W)`` of each original image (letterboxed into ``input_hw`` with the minimal padding).
        retina: full-resolution masks from the prototypes (True) or masks made at the input resolution and
            then resized to the original (False; faster, coarser).
        geometries: the letterbox placement of each image (default: rebuilt from the shapes, which is exact
            for inputs made by :func:`fastsam.transforms.letterbox_geometry`).
        windows: on a CPU with ``retina``, return the masks as :class:`~fastsam.masks.RunMasks` (column-major
            runs, made without laying out any mask: the same masks in memory that follows their boundaries).
    """
    results = []
    for i, orig_hw in enumerate(orig_hws):
        geometry = geometries[i] if geometries is not None else placement_from_shapes(orig_hw, input_hw)
        boxes_in, scores, classes, coefficients = select_detections(preds[i].float(), nc, conf, iou, max_det)
        boxes = scale_boxes_to_original(boxes_in, geometry)
        if retina and windows and protos.device.type == "cpu":
            masks = masks_as_runs(protos[i], coefficients, boxes, geometry)
            nonempty = torch.from_numpy(masks.any())
        elif retina:
            masks = masks_full_resolution(protos[i], coefficients, boxes, geometry)
            nonempty = masks.flatten(1).any(1)
        else:
            masks_in = masks_input_resolution(protos[i], coefficients, boxes_in, input_hw)
            nonempty = masks_in.flatten(1).any(1)
            masks = input_masks_to_original(masks_in[nonempty], geometry)
        if not bool(nonempty.all()):
            boxes, scores, classes = boxes[nonempty], scores[nonempty], classes[nonempty]
            if isinstance(masks, RunMasks):
                masks = masks.select(nonempty.numpy())
            elif retina:
                masks = masks[nonempty]
        boxes = fastsam_box_step(boxes, orig_hw)
        results.append(Detections(boxes, scores, masks, classes))
    return results


def placement_from_shapes(orig_hw: tuple[int, int], input_hw: tuple[int, int]) -> Letterbox:
    """The letterbox placement that produced an ``input_hw`` network input from an ``orig_hw`` image."""
    imgsz = max(input_hw)
    for rect in (True, False):
        geometry = letterbox_geometry(tuple(orig_hw), imgsz, rect=rect)
        if geometry.input_hw == tuple(input_hw):
            return geometry
    raise ValueError(f"an input of {input_hw} is not a letterbox of a {tuple(orig_hw)} image")


def reference_placement(orig_hw: tuple[int, int], input_hw: tuple[int, int]) -> Letterbox:
    """The placement as the reference implementation recomputes it from the two shapes alone.

    It takes the scale as ``min(H_in / H, W_in / W)``, which is smaller than the letterbox's when the short
    side rounded down onto a multiple of 32 (for example 72x1418 at 640: 630 instead of 640 columns). Where
    this differs from the true placement, fastsam uses the true one.
    """
    h, w = orig_hw
    gain = min(input_hw[0] / h, input_hw[1] / w)
    new_h, new_w = max(round(h * gain), 1), max(round(w * gain), 1)
    top = round((input_hw[0] - new_h) / 2 - 0.1)
    left = round((input_hw[1] - new_w) / 2 - 0.1)
    return Letterbox(tuple(orig_hw), (new_h, new_w), tuple(input_hw), top, left)
