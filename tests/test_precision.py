"""Precision choice (fp32 / bf16 / fp16 / int8 / auto) and mixed-precision casting of the PyTorch network.

Quality of reduced precision is measured in ``bench/precision.py`` on a trained network (random weights exaggerate
rounding); here: the choice rules, the errors, which layers stay float32, and that bf16 runs end to end on a real
photo with well-formed results.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastsam import precision as P
from fastsam.engine import FastSAM, load_model
from fastsam.modeling.blocks import ConvBNAct
from fastsam.modeling.fused import (
    ConvSiLU,
    onednn_fusion_available,
    weight_packing_available,
)
from fastsam.precision import PrecisionError, apply_precision, resolve_precision

needs_bf16 = pytest.mark.skipif(not P.cpu_has_native_bf16(), reason="this CPU has no native bfloat16")


@pytest.fixture
def fake_cpu(monkeypatch):
    """Pretend the CPU reports the given flags."""

    def set_flags(*flags: str) -> None:
        monkeypatch.setattr(P, "cpu_flags", lambda: frozenset(flags))

    return set_flags


def test_auto_is_fp16_on_cuda_bf16_on_cpus_with_it_else_fp32(fake_cpu) -> None:
    fake_cpu("avx512f", "amx_bf16", "amx_tile")
    assert resolve_precision("auto", "cpu") == P.CPU_AUTO
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert resolve_precision("auto", "mps") == "fp32"
    fake_cpu("avx2", "fma")
    assert resolve_precision("auto", "cpu") == "fp32"
    fake_cpu("fp", "asimd", "bf16")  # an Arm core with BF16
    assert P.cpu_has_native_bf16()


def test_unsupported_precisions_are_refused_with_a_way_out(fake_cpu) -> None:
    fake_cpu("avx2")
    with pytest.raises(PrecisionError, match="no native bfloat16.*fp32"):
        resolve_precision("bf16", "cpu")
    with pytest.raises(PrecisionError, match="no native float16"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(PrecisionError, match="OpenVINO.*--int8 --data"):
        resolve_precision("int8", "cpu", "torch")
    with pytest.raises(PrecisionError, match="must be one of"):
        resolve_precision("fp8", "cpu")
    assert resolve_precision("fp16", "cuda") == "fp16" and resolve_precision("fp32", "cpu") == "fp32"


def test_engine_refuses_bf16_without_hardware_support(fake_cpu, tiny_weights: Path) -> None:
    fake_cpu("sse4_2")
    with pytest.raises(PrecisionError, match="emulated"):
        FastSAM(tiny_weights, device="cpu", precision="bf16")
    assert FastSAM(tiny_weights, device="cpu").precision == "fp32"  # auto falls back without complaint


def test_mixed_precision_keeps_the_head_outputs_float32(tiny_weights: Path) -> None:
    net = apply_precision(load_model(tiny_weights, "cpu"), "bf16")
    kept = P.float32_module_names(net)
    head = net.head
    assert len(kept) == len(head.cv2) * 3 + 1  # the box/score/coefficient branches' last convolutions + DFL
    assert head.cv2[0][2].weight.dtype == head.cv3[1][2].weight.dtype == head.cv4[2][2].weight.dtype == torch.float32
    assert head.dfl.conv.weight.dtype == torch.float32
    assert net.model[0].conv.weight.dtype == torch.bfloat16 and head.proto.cv3.conv.weight.dtype == torch.bfloat16
    x = torch.rand(1, 3, 128, 96)
    with torch.inference_mode():
        preds, protos = net(x.to(torch.bfloat16))
        ref_preds, _ = load_model(tiny_weights, "cpu")(x)
    assert preds.dtype == torch.float32 and protos.dtype == torch.bfloat16
    assert preds.shape == ref_preds.shape and torch.isfinite(preds).all()
    # anchors are decoded in float32: box centres of a 1-cell-wide grid step are exact multiples of the stride/2
    assert head._anchor_cache is not None and head._anchor_cache[1].dtype == torch.float32


@pytest.mark.skipif(not onednn_fusion_available(), reason="this torch build has no oneDNN fused convolution")
@pytest.mark.parametrize("kernel,stride,groups", [(3, 1, 1), (3, 2, 1), (1, 1, 1), (3, 1, 4)])
def test_fused_conv_silu_computes_silu_of_the_convolution(kernel: int, stride: int, groups: int) -> None:
    """oneDNN's conv + swish post-op against torch's own conv2d then silu (float32: equal to rounding)."""
    torch.manual_seed(kernel + stride + groups)
    conv = torch.nn.Conv2d(16, 24, kernel, stride, kernel // 2, groups=groups, bias=True).eval()
    x = torch.randn(2, 16, 23, 37).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = torch.nn.functional.silu(conv(x))
        got = ConvSiLU(conv)(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not weight_packing_available(), reason="this torch build cannot pack convolution weights")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_packed_weight_gives_the_same_bits_at_any_image_size(dtype: torch.dtype) -> None:
    """The weight reordered once into oneDNN's layout: the same results as the plain weight, for inputs of other
    sizes than the nominal one it was packed for; after a cast of the weight, the plain weight is used again."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(32, 48, 3, 2, 1, bias=True).eval().to(dtype)
    plain, packed = ConvSiLU(conv), ConvSiLU(conv)
    assert packed.pack_weight()
    with torch.inference_mode():
        for hw in ((23, 37), (96, 64), (7, 5)):
            x = torch.randn(1, 32, *hw).to(dtype).contiguous(memory_format=torch.channels_last)
            assert torch.equal(packed(x), plain(x))
        packed.float()
        plain.float()
        x = torch.randn(1, 32, 9, 11).contiguous(memory_format=torch.channels_last)
        assert torch.equal(packed(x), plain(x))


@pytest.mark.skipif(not onednn_fusion_available(), reason="this torch build has no oneDNN fused convolution")
def test_reduced_precision_on_cpu_fuses_every_silu_and_fp32_none(tiny_weights: Path) -> None:
    net = load_model(tiny_weights, "cpu")
    names = set(net.state_dict())
    blocks = sum(isinstance(m, ConvBNAct) for m in net.modules())
    assert P.fuse_conv_silu(apply_precision(net, "bf16")) == blocks > 0
    assert set(net.state_dict()) == names  # the same weights under the same names
    assert not any(isinstance(m, torch.nn.SiLU) for m in net.modules())
    fp32 = FastSAM(tiny_weights, device="cpu", precision="fp32").network
    assert not any(isinstance(m, ConvSiLU) for m in fp32.modules())  # fp32 keeps the reference's arithmetic
    x = torch.rand(1, 3, 128, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        preds, protos = net(x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
        ref_preds, ref_protos = fp32(x)
    # bf16 of a random-weight network moves scores a lot; the prototypes (smooth, bounded) stay close: 3-8 % mean
    # relative error over 20 random inputs (with the SiLU lost, the error was over 1000x the prototypes' size)
    assert preds.shape == ref_preds.shape and torch.isfinite(preds).all()
    assert (protos.float() - ref_protos).abs().mean() < 0.12 * ref_protos.abs().mean()


@needs_bf16
def test_bf16_end_to_end_on_a_real_photo(tiny_weights: Path, photo_path: Path) -> None:
    """bf16 on a real photo: well-formed results (masks inside their boxes' image, scores sorted and above conf)."""
    model = FastSAM(tiny_weights, device="cpu", precision="bf16")
    assert model.precision == "bf16" and model.input_dtype == torch.bfloat16
    [result] = model.predict(photo_path, imgsz=320, conf=0.2)
    h, w = result.image_size
    assert len(result) > 0 and result.masks.shape == (len(result), h, w) and result.masks.dtype == bool
    assert np.all(np.diff(result.scores) <= 0) and result.scores.min() >= 0.2
    assert np.all(result.boxes[:, :2] >= 0) and np.all(result.boxes[:, 2] <= w) and np.all(result.boxes[:, 3] <= h)
    assert result.masks.reshape(len(result), -1).any(1).all()


@needs_bf16
def test_cli_precision_flag(tiny_weights: Path, photo_path: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fastsam.cli.main", "segment", str(photo_path), "--model", str(tiny_weights),
         "--device", "cpu", "--precision", "bf16", "--imgsz", "256", "--format", "json", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / f"{photo_path.stem}.json").is_file()
    bad = subprocess.run(
        [sys.executable, "-m", "fastsam.cli.main", "segment", str(photo_path), "--model", str(tiny_weights),
         "--device", "cpu", "--precision", "int8", "--out", str(tmp_path / "int8")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 1 and "openvino" in bad.stderr.lower() and "Traceback" not in bad.stderr
