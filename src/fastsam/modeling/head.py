"""The YOLOv8 segmentation head: box distributions, class scores, mask coefficients and prototypes."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvBNAct


class DFL(nn.Module):
    """Distribution focal loss integral: expected value of a softmax over ``reg_max`` bins.

    Maps ``(B, 4 * reg_max, A)`` logits to ``(B, 4, A)`` distances in units of the level's stride.
    The 1x1 convolution holds the fixed weights ``0, 1, ..., reg_max - 1`` (stored in checkpoints).
    """

    def __init__(self, reg_max: int = 16) -> None:
        super().__init__()
        self.reg_max = reg_max
        self.conv = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(reg_max, dtype=torch.float32).view(1, reg_max, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape
        probs = x.view(b, 4, self.reg_max, a).transpose(2, 1).softmax(1)
        return self.conv(probs).view(b, 4, a)


class Proto(nn.Module):
    """Mask prototype branch: ``(B, c_in, H, W)`` -> ``(B, num_masks, 2H, 2W)``."""

    def __init__(self, c_in: int, hidden: int = 256, num_masks: int = 32) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(c_in, hidden, 3)
        self.upsample = nn.ConvTranspose2d(hidden, hidden, 2, 2, 0, bias=True)
        self.cv2 = ConvBNAct(hidden, hidden, 3)
        self.cv3 = ConvBNAct(hidden, num_masks, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


def _branch(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    """Two 3x3 ConvBNAct and a 1x1 output convolution (with bias)."""
    return nn.Sequential(ConvBNAct(c_in, hidden, 3), ConvBNAct(hidden, hidden, 3), nn.Conv2d(hidden, c_out, 1))


def make_anchors(
    feature_sizes: list[tuple[int, int]], strides: tuple[int, ...], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor points at cell centres, finest level first.

    Returns:
        points: ``(2, A)`` x, y in units of each level's stride (cell index + 0.5).
        stride_per_anchor: ``(1, A)`` the stride of each anchor's level, in input pixels.
    """
    points, stride_list = [], []
    for (h, w), stride in zip(feature_sizes, strides):
        sx = torch.arange(w, device=device, dtype=dtype) + 0.5
        sy = torch.arange(h, device=device, dtype=dtype) + 0.5
        gy, gx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((gx, gy), 0).view(2, -1))
        stride_list.append(torch.full((1, h * w), float(stride), device=device, dtype=dtype))
    return torch.cat(points, 1), torch.cat(stride_list, 1)


class SegmentHead(nn.Module):
    """Anchor-free detection head with mask coefficients and prototypes (YOLOv8-seg).

    Input: feature maps ``[P3, P4, P5]`` at strides 8, 16, 32.
    Output of :meth:`forward` (inference):
        preds: ``(B, 4 + nc + num_masks, A)``: box centre x, y, width, height in input pixels, class scores
            after sigmoid, mask coefficients. ``A`` = number of anchors over all levels (P3 first).
        protos: ``(B, num_masks, H_in / 4, W_in / 4)`` mask prototypes.
    """

    strides: tuple[int, ...] = (8, 16, 32)

    def __init__(
        self,
        nc: int,
        in_channels: tuple[int, int, int],
        reg_max: int = 16,
        num_masks: int = 32,
        proto_channels: int = 256,
    ) -> None:
        super().__init__()
        self.nc = nc
        self.reg_max = reg_max
        self.num_masks = num_masks
        c_box = max(16, in_channels[0] // 4, reg_max * 4)
        c_cls = max(in_channels[0], min(nc, 100))
        c_mask = max(in_channels[0] // 4, num_masks)
        # Attribute names follow the official checkpoints: cv2 boxes, cv3 classes, cv4 mask coefficients.
        self.cv2 = nn.ModuleList(_branch(c, c_box, 4 * reg_max) for c in in_channels)
        self.cv3 = nn.ModuleList(_branch(c, c_cls, nc) for c in in_channels)
        self.dfl = DFL(reg_max)
        self.proto = Proto(in_channels[0], proto_channels, num_masks)
        self.cv4 = nn.ModuleList(_branch(c, c_mask, num_masks) for c in in_channels)
        self._anchor_cache: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    def forward_raw(
        self, feats: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Undecoded outputs, for training and export.

        Returns:
            box_logits ``(B, 4 * reg_max, A)``, class_logits ``(B, nc, A)``, mask_coefficients ``(B, num_masks, A)``,
            protos ``(B, num_masks, H_in / 4, W_in / 4)``.
        """
        b = feats[0].shape[0]
        box = torch.cat([m(f).view(b, 4 * self.reg_max, -1) for m, f in zip(self.cv2, feats)], 2)
        cls = torch.cat([m(f).view(b, self.nc, -1) for m, f in zip(self.cv3, feats)], 2)
        coef = torch.cat([m(f).view(b, self.num_masks, -1) for m, f in zip(self.cv4, feats)], 2)
        return box, cls, coef, self.proto(feats[0])

    def anchors(
        self, feats: list[torch.Tensor], dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchor points ``(2, A)`` (stride units) and strides ``(1, A)`` for these feature maps (cached), in
        ``dtype`` (default: the features')."""
        dtype = feats[0].dtype if dtype is None else dtype
        key = (tuple(tuple(f.shape[2:]) for f in feats), feats[0].device, dtype)
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or self._anchor_cache is None or self._anchor_cache[0] != key:
            points, strides = make_anchors([tuple(f.shape[2:]) for f in feats], self.strides, feats[0].device, dtype)
            if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
                return points, strides
            self._anchor_cache = (key, points, strides)
        return self._anchor_cache[1], self._anchor_cache[2]

    def decode_boxes(self, box_logits: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        """``(B, 4 * reg_max, A)`` logits -> ``(B, 4, A)`` boxes as centre x, y, width, height in input pixels.

        Computed in the dtype of the DFL's output (float32 when the DFL is kept in float32 under mixed precision:
        bfloat16 anchors would round a 1024 px grid to 4 px steps)."""
        dist = self.dfl(box_logits)
        points, strides = self.anchors(feats, dist.dtype)
        left_top, right_bottom = dist.chunk(2, 1)
        x1y1 = points - left_top
        x2y2 = points + right_bottom
        return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * strides

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        box, cls, coef, protos = self.forward_raw(feats)
        preds = torch.cat((self.decode_boxes(box, feats), cls.sigmoid(), coef), 1)
        return preds, protos
