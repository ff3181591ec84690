"""A convolution and its SiLU as one oneDNN primitive: CPU inference in reduced precision.

In eager PyTorch each :class:`~fastsam.modeling.blocks.ConvBNAct` writes its convolution's output to memory and
reads it back for the SiLU: on FastSAM-x at 1024 px in bfloat16 the SiLUs alone took ~20 % of the network's time
on a 2-core Sapphire Rapids. oneDNN applies the SiLU inside the convolution (a "swish" post-op, computed on the
float32 accumulator before the result is rounded to bfloat16), which is what ``torch.compile`` does on a CPU too,
without its compile time. Used only for reduced precision on the CPU: in float32 it would change the reference's
masks by rounding, and fp32 must give them exactly.

oneDNN's AMX/AVX-512 kernels read weights in a blocked layout of their own; given plain weights, every call reorders
them first (on FastSAM-x at 1024 px in bfloat16, 117 reorders and ~35 ms a forward pass).
:meth:`ConvSiLU.pack_weight` makes that copy once, as ``torch.compile``'s weight freezing does.
"""

from __future__ import annotations

import torch
from torch import nn


def weight_packing_available() -> bool:
    """Whether this torch build can reorder a convolution weight into oneDNN's layout ahead of time."""
    try:
        _ = torch.ops.mkldnn._reorder_convolution_weight  # a private operator, as _convolution_pointwise
    except (AttributeError, RuntimeError):
        return False
    return True


def onednn_fusion_available() -> bool:
    """Whether this torch build has oneDNN's fused convolution operator (x86 and Arm CPU builds do)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        _ = torch.ops.mkldnn._convolution_pointwise  # a private operator: probe that it exists
    except (AttributeError, RuntimeError):
        return False
    return True


class ConvSiLU(nn.Module):
    """``silu(conv(x))`` for a biased :class:`torch.nn.Conv2d` (a BatchNorm already folded in), in one oneDNN call.

    Maps ``(B, c_in, H, W)`` to ``(B, c_out, H / stride, W / stride)`` on the CPU, any float dtype the weights have.
    Keeps the convolution's ``weight`` and ``bias`` under the same names, so state dicts are unchanged; a packed copy
    of the weight (:meth:`pack_weight`) is not part of them.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.bias is None or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("ConvSiLU takes a biased Conv2d with numeric zero padding (a fused ConvBNAct's)")
        self.weight = conv.weight
        self.bias = conv.bias
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self._packed: tuple[torch.Tensor, torch.dtype] | None = None

    @torch.no_grad()
    def pack_weight(self) -> bool:
        """Keep a copy of ``weight`` in oneDNN's blocked layout, used by every later call while ``weight`` keeps its
        dtype; a snapshot for inference: weights changed afterwards are not seen (call it again). The same results
        to the bit; costs a second copy of the weight in memory.

        Returns:
            Whether it was packed (False where this torch build cannot).
        """
        if not weight_packing_available():
            return False
        w = self.weight.detach()
        # a nominal size picks the layout (it follows the channels and kernel); where oneDNN prefers another at the
        # real size, it reorders at the call as without packing (FastSAM-x at 1024x704: 11 of 106 weights, ~1 ms)
        nominal = [1, w.shape[1] * self.groups, 64, 64]
        packed = torch.ops.mkldnn._reorder_convolution_weight(w, self.padding, self.stride, self.dilation, self.groups,
                                                              nominal)  # fmt: skip
        self._packed = (packed, w.dtype)
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if self._packed is not None and self._packed[1] == weight.dtype:
            weight = self._packed[0]
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, self.bias, self.padding, self.stride, self.dilation, self.groups, "swish", [], ""
        )
