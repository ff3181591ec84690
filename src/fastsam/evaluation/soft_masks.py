"""Everything-mode mask probability maps (sigmoid of the mask logits) at the original image resolution.

The detections are those of :meth:`fastsam.engine.FastSAM.predict` (same confidence filter, NMS and
``max_det``); the mask logits are upsampled bilinearly to the network input, cropped to the letterboxed
image, resized to the original size, passed through a sigmoid and zeroed outside the detection's box.
Masks that are empty at 0.5 are dropped, as everything mode drops them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..engine import FastSAM
from ..io import load_image
from ..ops.boxes import scale_boxes_to_original
from ..postprocess import fastsam_box_step, select_detections

_CHUNK_PIXELS = 16_000_000


@torch.inference_mode()
def mask_probabilities(
    model: FastSAM,
    image: object,
    imgsz: int = 1024,
    conf: float = 0.4,
    iou: float = 0.9,
    max_det: int = 300,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probability maps of the everything-mode masks of one image.

    Args:
        model: a loaded :class:`~fastsam.engine.FastSAM`.
        image: a path, PIL image or RGB uint8 ``(H, W, 3)`` array.
        imgsz, conf, iou, max_det: as :meth:`~fastsam.engine.FastSAM.predict`.

    Returns:
        ``(probs, scores, boxes)``: ``(N, H, W)`` float32 in [0, 1], ``(N,)`` float32 confidences and
        ``(N, 4)`` float32 xyxy boxes in original pixels, by decreasing score.

    Raises:
        ImageLoadError: the image cannot be read.
    """
    array = load_image(image)
    h, w = array.shape[:2]
    batch, [geometry] = model.preprocess([array], imgsz)
    preds, protos = model.infer(batch)
    boxes_in, scores, _, coefficients = select_detections(preds[0].float(), model.network.nc, conf, iou, max_det)
    boxes = scale_boxes_to_original(boxes_in, geometry)
    m, mh, mw = protos.shape[1:]
    probs = np.zeros((coefficients.shape[0], h, w), np.float32)
    if coefficients.shape[0]:
        logits = (coefficients @ protos[0].float().reshape(m, -1)).reshape(-1, mh, mw)
        rh, rw = geometry.resized_hw
        cols = torch.arange(w, device=logits.device, dtype=torch.float32)
        rows = torch.arange(h, device=logits.device, dtype=torch.float32)
        chunk = max(1, _CHUNK_PIXELS // (geometry.input_hw[0] * geometry.input_hw[1] + h * w))
        for start in range(0, logits.shape[0], chunk):
            part = F.interpolate(logits[None, start : start + chunk], size=geometry.input_hw, mode="bilinear")
            part = part[..., geometry.top : geometry.top + rh, geometry.left : geometry.left + rw]
            part = F.interpolate(part, size=(h, w), mode="bilinear")[0].sigmoid()
            b = boxes[start : start + chunk].float()
            inside = ((cols >= b[:, 0, None]) & (cols < b[:, 2, None]))[:, None, :] & (
                (rows >= b[:, 1, None]) & (rows < b[:, 3, None])
            )[:, :, None]
            probs[start : start + part.shape[0]] = (part * inside).cpu().numpy()
    keep = (probs > 0.5).reshape(len(probs), -1).any(1) if len(probs) else np.zeros(0, bool)
    boxes = fastsam_box_step(boxes, (h, w)).float().cpu().numpy()
    return probs[keep], scores.float().cpu().numpy()[keep], boxes[keep]
