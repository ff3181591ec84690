"""Numeric precision of the network: choosing it per device and casting a PyTorch network to it.

Precisions (``precision=`` of :class:`fastsam.FastSAM`, ``--precision`` on the command line):

- ``"fp32"``: float32 everywhere; the reference's masks exactly (the differential tests run this).
- ``"bf16"``: bfloat16 convolutions on CPUs that compute bfloat16 natively (x86 AVX512-BF16 / AMX-BF16,
  Arm BF16), mixed with float32 where measurement showed masks move (:data:`FLOAT32_MODULES`). Never emulated: asked
  for on a CPU without it, :class:`PrecisionError`.
- ``"fp16"``: float16 on CUDA (the whole network, as before), and on CPUs with AVX512-FP16; mixed like bf16 on CPU.
- ``"int8"``: an NNCF-quantised OpenVINO model (``fastsam export --format openvino --int8 --data DIR``); the
  precision lives in the model file, so the PyTorch backend refuses it.
- ``"auto"``: fp16 on CUDA, bf16 on CPUs with native bfloat16, else fp32 (MPS: fp32).

Mixed precision: in bf16/fp16 the whole network is cast except the modules named in :data:`FLOAT32_MODULES`,
which keep float32 weights and take float32 inputs (a forward pre-hook casts them). They are the head's last
convolutions (box distributions, scores, mask coefficients), the DFL integral and the anchor decoding: their
outputs are what NMS and mask assembly read, and bfloat16 (8 significant bits) would round a 300 px box edge
by ~1 px and a score logit of 5 by 0.02. See the README's precision table for the measured agreement.
"""

from __future__ import annotations

import functools
import platform
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import FastSAMError
from .modeling.blocks import ConvBNAct
from .modeling.fused import ConvSiLU, onednn_fusion_available

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Submodules (names relative to :class:`~fastsam.modeling.YOLOv8Seg`, regular expressions) kept in float32 under
#: bf16/fp16 on the CPU: the head's final 1x1 convolutions of the box, score and coefficient branches and the DFL.
FLOAT32_MODULES = (r"model\.22\.cv[234]\.\d+\.2", r"model\.22\.dfl")
#: What ``auto`` means on a CPU with native bfloat16, chosen by the measured mask agreement (README).
CPU_AUTO = "bf16"


class PrecisionError(FastSAMError):
    """A precision is unknown, or cannot run on this device or backend."""


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (``/proc/cpuinfo``); empty where that file does not exist."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip()
        if key in ("flags", "Features"):  # x86, Arm
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX-BF16 on x86, BF16 on Arm).

    On macOS (no ``/proc/cpuinfo``) Apple M2 and later have BF16; they are detected through torch when it
    reports oneDNN/KleidiAI bf16 support, else assumed absent.
    """
    flags = cpu_flags()
    if flags:
        return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(probe()) if probe is not None and platform.system() != "Darwin" else False
    except Exception:  # noqa: BLE001 - an internal probe: absent or failing means "no"
        return False


def cpu_has_native_fp16() -> bool:
    """Whether this CPU computes float16 in hardware (AVX512-FP16 / AMX-FP16 on x86, FP16 arithmetic on Arm)."""
    return bool(cpu_flags() & {"avx512_fp16", "amx_fp16", "asimdhp"})


def resolve_precision(precision: str, device: torch.device | str, backend: str = "torch") -> str:
    """The concrete precision (``fp32``, ``bf16``, ``fp16`` or ``int8``) for ``precision`` on ``device``.

    Raises:
        PrecisionError: an unknown name, or a precision this device/backend cannot run natively.
    """
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    kind = torch.device(device).type if not isinstance(device, str) or device not in ("CPU", "GPU") else device.lower()
    if precision == "auto":
        if kind == "cuda":
            return "fp16"
        if kind == "cpu" and cpu_has_native_bf16():
            return CPU_AUTO
        return "fp32"
    if precision == "int8" and backend == "torch":
        raise PrecisionError(
            "int8 runs on the OpenVINO backend: export a quantised model with "
            "'fastsam export MODEL --format openvino --int8 --data CALIBRATION_IMAGES' and load its folder"
        )
    if kind == "cpu" and precision == "bf16" and not cpu_has_native_bf16():
        raise PrecisionError(
            "bf16 asked for, but this CPU has no native bfloat16 (AVX512-BF16, AMX-BF16 or Arm BF16): it would be "
            "emulated and slower than fp32; use --precision fp32 (or auto)"
        )
    if kind == "cpu" and precision == "fp16" and not cpu_has_native_fp16():
        raise PrecisionError(
            "fp16 asked for, but this CPU has no native float16 (AVX512-FP16): use --precision bf16 on CPUs that "
            "have it, or fp32"
        )
    if kind == "mps" and precision == "bf16":
        raise PrecisionError("bf16 is not supported on MPS here: use --precision fp16 or fp32")
    return precision


def _to_float32(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float32(v) for v in value)
    return value


def _to_float32_inputs(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return _to_float32(args)


def float32_module_names(net: nn.Module, patterns: tuple[str, ...] = FLOAT32_MODULES) -> list[str]:
    """Names of the submodules of ``net`` that match any of ``patterns`` in full."""
    compiled = [re.compile(p) for p in patterns]
    return [name for name, _ in net.named_modules() if name and any(c.fullmatch(name) for c in compiled)]


def apply_precision(net: nn.Module, precision: str, keep_float32: tuple[str, ...] | None = None) -> nn.Module:
    """Cast ``net`` in place to ``precision`` (``fp32``, ``bf16`` or ``fp16``) and return it.

    Args:
        net: a :class:`~fastsam.modeling.YOLOv8Seg` (or any module); its inputs must then be cast to
            :func:`input_dtype` by the caller.
        precision: the concrete precision.
        keep_float32: regular expressions of submodule names kept in float32 (default :data:`FLOAT32_MODULES`;
            ``()`` casts everything, as fp16 on CUDA does).
    """
    if precision == "fp32":
        return net.float()
    if precision not in ("bf16", "fp16"):
        raise PrecisionError(f"a PyTorch network runs in fp32, bf16 or fp16, not {precision!r}")
    net.to(DTYPES[precision])
    for name in float32_module_names(net, FLOAT32_MODULES if keep_float32 is None else keep_float32):
        module = net.get_submodule(name)
        module.float()
        module.register_forward_pre_hook(_to_float32_inputs)
    return net


def fuse_conv_silu(net: nn.Module) -> int:
    """Replace the convolution and SiLU of every BatchNorm-folded :class:`~fastsam.modeling.blocks.ConvBNAct` of a
    CPU network by one oneDNN primitive (:class:`~fastsam.modeling.fused.ConvSiLU`), in place.

    For reduced precision only (the SiLU is applied before rounding, so float32 results would move by an ulp).
    Each fused weight is also packed into oneDNN's layout once (:meth:`~fastsam.modeling.fused.ConvSiLU.pack_weight`)
    rather than at every call.

    Returns:
        The number of blocks fused (0 where this torch build has no oneDNN fusion).
    """
    if not onednn_fusion_available():
        return 0
    count = 0
    for module in net.modules():
        if isinstance(module, ConvBNAct) and module.bn is None and isinstance(module.act, nn.SiLU):
            module.conv, module.act = ConvSiLU(module.conv), nn.Identity()
            module.conv.pack_weight()
            count += 1
    return count
