"""Building blocks of the YOLOv8 backbone and neck.

Attribute names (``conv``, ``bn``, ``cv1``, ``m`` ...) are those of the official checkpoints, so their
state dicts load without renaming.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

# BatchNorm settings of the published architecture. torch's default eps (1e-5) gives wrong outputs.
BN_EPS = 1e-3
BN_MOMENTUM = 0.03


class ConvBNAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> SiLU, with "same" padding for odd kernels.

    Maps ``(B, c_in, H, W)`` to ``(B, c_out, H / stride, W / stride)``.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is None:  # fused for inference
            return self.act(self.conv(x))
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the BatchNorm into the convolution (inference only; irreversible)."""
        if self.bn is None:
            return
        self.conv = fuse_conv_bn(self.conv, self.bn)
        self.bn = None


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a Conv2d with bias that computes ``bn(conv(x))`` in eval mode (torch's own folding formula)."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    fused.weight = nn.Parameter(weight.detach(), requires_grad=False)
    fused.bias = nn.Parameter(bias.detach(), requires_grad=False)
    return fused


class Bottleneck(nn.Module):
    """Two 3x3 ConvBNAct with an optional residual connection (used when shapes allow)."""

    def __init__(self, c_in: int, c_out: int, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(c_in, c_out, 3)
        self.cv2 = ConvBNAct(c_out, c_out, 3)
        self.add = shortcut and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP block with two halves and ``n`` bottlenecks whose outputs are all concatenated.

    Maps ``(B, c_in, H, W)`` to ``(B, c_out, H, W)``.
    """

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = False) -> None:
        super().__init__()
        self.hidden = c_out // 2
        self.cv1 = ConvBNAct(c_in, 2 * self.hidden, 1)
        self.cv2 = ConvBNAct((2 + n) * self.hidden, c_out, 1)
        self.m = nn.ModuleList(Bottleneck(self.hidden, self.hidden, shortcut) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(x).chunk(2, dim=1))
        for block in self.m:
            parts.append(block(parts[-1]))
        return self.cv2(torch.cat(parts, dim=1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained max-pools whose outputs are concatenated."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 5) -> None:
        super().__init__()
        hidden = c_in // 2
        self.cv1 = ConvBNAct(c_in, hidden, 1)
        self.cv2 = ConvBNAct(hidden * 4, c_out, 1)
        self.m = nn.MaxPool2d(kernel_size=kernel, stride=1, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, dim=1))


class Upsample2x(nn.Module):
    """Nearest-neighbour 2x upsampling (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")


class Concat(nn.Module):
    """Concatenation along channels of the listed inputs (no parameters).

    Kept as a module only so that layer numbering matches the official checkpoints.
    """

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, dim=1)
