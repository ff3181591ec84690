"""The YOLOv8-seg network that FastSAM uses: backbone, PAN neck and segmentation head."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import C2f, SPPF, Concat, ConvBNAct, Upsample2x
from .head import SegmentHead


class YOLOv8Seg(nn.Module):
    """YOLOv8 instance-segmentation network.

    The layers live in ``self.model`` (an ``nn.ModuleList``) so that state-dict keys are exactly those of the
    official checkpoints (``model.0.conv.weight`` ... ``model.22.proto.cv3.bn.weight``).

    Args:
        channels: widths of the five stages ``(P1, P2, P3, P4, P5)``.
        depths: bottleneck counts of the short and the long C2f blocks ``(n_short, n_long)``.
        nc: number of classes (1 for FastSAM).
        reg_max: DFL bins per box side (16 for FastSAM-s, 26 for FastSAM-x).
        proto_channels: width of the prototype branch.
        num_masks: number of prototypes / mask coefficients.

    ``forward`` takes ``(B, 3, H, W)`` float RGB in [0, 1] with H, W multiples of 32 and returns
    ``(preds (B, 4 + nc + num_masks, A), protos (B, num_masks, H / 4, W / 4))``; see :class:`SegmentHead`.
    """

    def __init__(
        self,
        channels: tuple[int, int, int, int, int],
        depths: tuple[int, int],
        nc: int = 1,
        reg_max: int = 16,
        proto_channels: int = 256,
        num_masks: int = 32,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = channels
        short, long = depths
        self.channels = channels
        self.depths = depths
        self.model = nn.ModuleList(
            [
                # backbone
                ConvBNAct(3, c1, 3, 2),  # stride 2
                ConvBNAct(c1, c2, 3, 2),  # stride 4
                C2f(c2, c2, short, shortcut=True),
                ConvBNAct(c2, c3, 3, 2),  # stride 8
                C2f(c3, c3, long, shortcut=True),
                ConvBNAct(c3, c4, 3, 2),  # stride 16
                C2f(c4, c4, long, shortcut=True),
                ConvBNAct(c4, c5, 3, 2),  # stride 32
                C2f(c5, c5, short, shortcut=True),
                SPPF(c5, c5, 5),
                # neck, top-down
                Upsample2x(),
                Concat(),
                C2f(c5 + c4, c4, short),
                Upsample2x(),
                Concat(),
                C2f(c4 + c3, c3, short),  # P3 output
                # neck, bottom-up
                ConvBNAct(c3, c3, 3, 2),
                Concat(),
                C2f(c3 + c4, c4, short),  # P4 output
                ConvBNAct(c4, c4, 3, 2),
                Concat(),
                C2f(c4 + c5, c5, short),  # P5 output
                SegmentHead(nc, (c3, c4, c5), reg_max, num_masks, proto_channels),
            ]
        )

    @property
    def head(self) -> SegmentHead:
        return self.model[-1]

    @property
    def nc(self) -> int:
        return self.head.nc

    @property
    def reg_max(self) -> int:
        return self.head.reg_max

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The neck's outputs ``[P3, P4, P5]`` at strides 8, 16, 32."""
        (
            stem1, stem2, stage2, down3, stage3, down4, stage4, down5, stage5, sppf,
            up_a, cat_a, td4, up_b, cat_b, out3, down_n3, cat_c, out4, down_n4, cat_d, out5, _head,
        ) = self.model  # fmt: skip
        s3 = stage3(down3(stage2(stem2(stem1(x)))))
        s4 = stage4(down4(s3))
        s5 = sppf(stage5(down5(s4)))
        t4 = td4(cat_a([up_a(s5), s4]))
        p3 = out3(cat_b([up_b(t4), s3]))
        p4 = out4(cat_c([down_n3(p3), t4]))
        p5 = out5(cat_d([down_n4(p4), s5]))
        return [p3, p4, p5]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.features(x))

    def fuse(self) -> "YOLOv8Seg":
        """Fold every BatchNorm into its convolution for inference. Returns self."""
        for module in self.modules():
            if isinstance(module, ConvBNAct):
                module.fuse()
        return self
