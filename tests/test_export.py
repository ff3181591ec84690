"""ONNX export, the ONNX Runtime backend, the TensorRT error path and ``fastsam export``.

Tolerances (ONNX Runtime CPU vs our PyTorch CPU network, float32, random-weight n network):
    boxes, mask coefficients, prototypes: max |difference| <= 3e-4 x max |PyTorch value| of that output
        (measured <= 6e-5 relative: about 0.05 px on boxes of up to ~1000 px; PyTorch itself differs by up to
        9e-5 between its contiguous and channels-last layouts, i.e. this is float32 summation-order noise);
    scores (after sigmoid): max |difference| <= 1e-4 (measured <= 3e-5).
Through post-processing on a real photo: same number of detections and every mask IoU >= 0.99.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from fastsam.backends import BackendError, OnnxRuntimeNetwork  # noqa: E402
from fastsam.engine import load_model  # noqa: E402
from fastsam.export import ExportError, TensorRTUnavailableError, build_engine, export_onnx, read_metadata  # noqa: E402
from fastsam.io import load_image  # noqa: E402
from fastsam.postprocess import postprocess  # noqa: E402
from fastsam.transforms import letterbox_geometry, letterbox_image  # noqa: E402

IMGSZ = 320
REL_TOL = 3e-4
SCORE_TOL = 1e-4


@pytest.fixture(scope="module")
def net(tiny_weights: Path) -> torch.nn.Module:
    """The fused random-weight n network (float32, contiguous, CPU)."""
    return load_model(tiny_weights, "cpu")


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def static_onnx(net, onnx_dir: Path) -> Path:
    return export_onnx(net, onnx_dir / "static.onnx", imgsz=IMGSZ)


@pytest.fixture(scope="module")
def dynamic_onnx(net, onnx_dir: Path) -> Path:
    return export_onnx(net, onnx_dir / "dynamic.onnx", imgsz=IMGSZ, dynamic=True)


def assert_outputs_close(ours: tuple[torch.Tensor, torch.Tensor], ref: tuple[torch.Tensor, torch.Tensor]) -> None:
    """ONNX Runtime ``(preds, protos)`` vs PyTorch, with the tolerances of the module docstring."""
    (p, q), (rp, rq) = ours, ref
    assert p.shape == rp.shape and q.shape == rq.shape
    assert p.dtype == torch.float32 and q.dtype == torch.float32
    for name, a, b in (("boxes", p[:, :4], rp[:, :4]), ("coefficients", p[:, 5:], rp[:, 5:]), ("protos", q, rq)):
        err, scale = float((a - b).abs().max()), float(b.abs().max())
        assert err <= REL_TOL * scale, f"{name}: max error {err:.3g} > {REL_TOL} x {scale:.3g}"
    assert float((p[:, 4] - rp[:, 4]).abs().max()) <= SCORE_TOL


def torch_forward(net, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        return net(x)


def test_static_export_is_valid_with_metadata(static_onnx: Path) -> None:
    onnx.checker.check_model(str(static_onnx))
    model = onnx.load(str(static_onnx))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert model.graph.input[0].name == "images" and dims == [1, 3, IMGSZ, IMGSZ]
    assert [o.name for o in model.graph.output] == ["preds", "protos"]
    meta = read_metadata(static_onnx)
    assert meta["scale"] == "n" and meta["nc"] == 1 and meta["reg_max"] == 16 and meta["stride"] == 32
    assert meta["imgsz"] == IMGSZ and meta["dynamic"] is False and meta["half"] is False


def test_static_matches_pytorch(net, static_onnx: Path) -> None:
    runner = OnnxRuntimeNetwork(static_onnx, threads=2)
    assert runner.fixed_input_hw == (IMGSZ, IMGSZ) and runner.fixed_batch == 1
    assert runner.nc == 1 and runner.reg_max == 16 and runner.device.type == "cpu"
    x = torch.rand(1, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(1))
    assert_outputs_close(runner(x), torch_forward(net, x))


def test_static_model_runs_other_batch_sizes(net, static_onnx: Path, onnx_dir: Path) -> None:
    x = torch.rand(3, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(2))
    ref = torch_forward(net, x)
    assert_outputs_close(OnnxRuntimeNetwork(static_onnx)(x), ref)  # batch-1 model: image by image
    batch2 = OnnxRuntimeNetwork(export_onnx(net, onnx_dir / "batch2.onnx", imgsz=IMGSZ, batch=2))
    assert batch2.fixed_batch == 2
    assert_outputs_close(batch2(x), ref)  # chunks of 2, the last padded


def test_static_model_rejects_other_sizes(static_onnx: Path) -> None:
    runner = OnnxRuntimeNetwork(static_onnx)
    with pytest.raises(BackendError, match=f"{IMGSZ}x{IMGSZ}.*--dynamic"):
        runner(torch.rand(1, 3, IMGSZ, IMGSZ - 32))
    with pytest.raises(BackendError, match=r"\(B, 3, H, W\)"):
        runner(torch.rand(1, 1, IMGSZ, IMGSZ))


def test_dynamic_model_at_two_sizes(net, dynamic_onnx: Path) -> None:
    runner = OnnxRuntimeNetwork(dynamic_onnx)
    assert runner.fixed_input_hw is None and runner.fixed_batch is None
    assert read_metadata(dynamic_onnx)["dynamic"] is True
    gen = torch.Generator().manual_seed(3)
    for shape in ((1, 3, IMGSZ, IMGSZ), (2, 3, 224, 416)):  # the traced size, then another batch and H, W
        x = torch.rand(*shape, generator=gen)
        out = runner(x)
        assert out[0].shape[2] == sum((shape[2] // s) * (shape[3] // s) for s in (8, 16, 32))
        assert_outputs_close(out, torch_forward(net, x))
    with pytest.raises(BackendError, match="multiples of 32"):
        runner(torch.rand(1, 3, 100, 128))


def test_dynamo_exporter_dynamic(net, onnx_dir: Path) -> None:
    """The torch.export-based exporter (the only one left once torch drops TorchScript export)."""
    if "dynamo" not in __import__("inspect").signature(torch.onnx.export).parameters:
        pytest.skip("this torch has no dynamo ONNX exporter")
    pytest.importorskip("onnxscript")
    path = export_onnx(net, onnx_dir / "dynamo.onnx", imgsz=128, dynamic=True, exporter="dynamo")
    assert read_metadata(path)["exporter"] == "dynamo" and read_metadata(path)["opset"] >= 18
    runner = OnnxRuntimeNetwork(path)
    gen = torch.Generator().manual_seed(4)
    for shape in ((1, 3, 128, 128), (1, 3, 160, 352)):
        x = torch.rand(*shape, generator=gen)
        assert_outputs_close(runner(x), torch_forward(net, x))


def test_half_export_on_cpu(net, onnx_dir: Path) -> None:
    path = export_onnx(net, onnx_dir / "half.onnx", imgsz=128, half=True)
    runner = OnnxRuntimeNetwork(path)
    assert runner.input_dtype == np.float16 and read_metadata(path)["half"] is True
    assert runner.session.get_outputs()[0].type == "tensor(float16)"
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(5))
    preds, protos = runner(x)
    ref, _ = torch_forward(net, x)
    assert preds.dtype == torch.float32 and torch.isfinite(preds).all() and torch.isfinite(protos).all()
    # float16 through a random-weight network is coarse; scores still agree to a few hundredths.
    assert float((preds[:, 4] - ref[:, 4]).abs().max()) < 0.1


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_postprocess_on_photo_matches_pytorch(kind, net, static_onnx, dynamic_onnx, photo_path: Path) -> None:
    image = load_image(photo_path)
    geometry = letterbox_geometry(image.shape[:2], IMGSZ, rect=kind == "dynamic")
    assert (kind == "static") == (geometry.input_hw == (IMGSZ, IMGSZ))
    batch = letterbox_image(image, geometry)[None]
    runner = OnnxRuntimeNetwork(static_onnx if kind == "static" else dynamic_onnx)
    results = []
    for preds, protos in (runner(batch), torch_forward(net, batch)):
        [det] = postprocess(preds, protos, geometry.input_hw, [geometry.orig_hw], 0.4, 0.9, 300, True, 1, [geometry])
        results.append(det)
    ours, ref = results
    assert len(ref) > 0 and len(ours) == len(ref)
    # Near-equal scores may come out in another order, and snapped boxes may coincide: each reference detection
    # must have a partner of the same score (within the tolerance) and box whose mask has IoU >= 0.99 with its own.
    same_box = box_iou(ref.boxes, ours.boxes) >= 0.98
    same_score = (ref.scores[:, None] - ours.scores[None, :]).abs() <= 2 * SCORE_TOL
    for i, candidates in enumerate(same_box & same_score):
        others = ours.masks[candidates.nonzero().squeeze(1)]
        assert len(others) > 0, f"detection {i} (score {float(ref.scores[i]):.4f}) has no ONNX Runtime partner"
        inter = (others & ref.masks[i]).flatten(1).sum(1)
        union = (others | ref.masks[i]).flatten(1).sum(1).clamp_min(1)
        assert float((inter / union).max()) >= 0.99


def test_fastsam_onnxruntime_backend(tiny_model, static_onnx: Path, dynamic_onnx: Path, photo_path: Path) -> None:
    """``FastSAM(..., backend="onnxruntime")`` (once engine.py has it): a dynamic model gives the torch backend's
    results; a static one letterboxes to its fixed square (post-processing vs torch on that input: see above)."""
    import inspect

    from fastsam.engine import FastSAM

    if "backend" not in inspect.signature(FastSAM).parameters:
        pytest.skip("fastsam.engine.FastSAM has no backend= option yet")
    [ref] = tiny_model.predict(photo_path, imgsz=IMGSZ)
    [ours] = FastSAM(str(dynamic_onnx), device="cpu", backend="onnxruntime").predict(photo_path, imgsz=IMGSZ)
    assert len(ours.masks) == len(ref.masks) > 0
    assert np.allclose(np.sort(ours.scores), np.sort(ref.scores), atol=SCORE_TOL)
    static = FastSAM(str(static_onnx), device="cpu", backend="onnxruntime")
    [result] = static.predict(photo_path, imgsz=IMGSZ)
    assert result.masks.shape[1:] == ref.masks.shape[1:] and len(result.masks) > 0


def test_static_model_ignored_imgsz_is_one_note(static_onnx: Path, photo_path: Path, tmp_path: Path) -> None:
    """A static model given another imgsz says so once, as one plain line (no UserWarning with source lines),
    however many images and code paths (predict, the segment pipeline) use it."""
    import subprocess
    import sys

    images = sorted(photo_path.parent.glob("*.jpg"))[:3]
    paths = [str(p) for p in images]
    code = (
        "import sys; from fastsam.engine import FastSAM; from fastsam.cli.main import main; "
        f"model = FastSAM({str(static_onnx)!r}, device='cpu'); model.predict({paths!r}, imgsz=1024); "
        "model.predict(sys.argv[1], imgsz=1024); sys.argv = sys.argv[:1]; "
        f"sys.exit(main(['segment', *{paths!r}, '--model', {str(static_onnx)!r}, '--device', 'cpu', "
        f"'--quiet', '--out', {str(tmp_path / 'out')!r}]))"
    )
    done = subprocess.run([sys.executable, "-W", "default", "-c", code, str(photo_path)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    note = (f"note: the ONNX model has a fixed {IMGSZ}x{IMGSZ} input, so imgsz 1024 is ignored (export with "
            "--dynamic to choose the size at run time)")  # fmt: skip
    # once for the Python model, once for the CLI's own model
    assert [line for line in lines if "imgsz" in line] == [note, note], lines
    assert "Warning" not in done.stderr and not any(line.startswith(" ") for line in lines), lines  # no source lines


def test_static_model_notes_each_ignored_size_once(static_onnx: Path, photo_path: Path, caplog) -> None:
    from fastsam.engine import FastSAM

    model = FastSAM(str(static_onnx), device="cpu")
    with caplog.at_level("WARNING", logger="fastsam"):
        for imgsz in (1024, 1024, 640, IMGSZ, 640):
            model.predict(photo_path, imgsz=imgsz)
    notes = [r.getMessage() for r in caplog.records if r.name == "fastsam"]
    assert len(notes) == 2 and "imgsz 1024 is ignored" in notes[0] and "imgsz 640 is ignored" in notes[1]


def test_export_rejects_bad_settings(net, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="multiple of 32"):
        export_onnx(net, tmp_path / "x.onnx", imgsz=100)
    with pytest.raises(ExportError, match="batch"):
        export_onnx(net, tmp_path / "x.onnx", imgsz=64, batch=0)


def test_backend_errors(tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackendError, match="not found"):
        OnnxRuntimeNetwork(tmp_path / "missing.onnx")
    with pytest.raises(BackendError, match="cannot load"):
        OnnxRuntimeNetwork(tiny_weights)  # a .safetensors file, not ONNX
    with pytest.raises(BackendError, match="providers not available"):
        OnnxRuntimeNetwork(tiny_weights, providers=["NoSuchExecutionProvider"])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BackendError, match=r"pip install 'fastsam\[export\]'"):
        OnnxRuntimeNetwork(tiny_weights)


def test_choose_providers() -> None:
    from fastsam.backends import choose_providers

    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("cpu", everything) == ["CPUExecutionProvider"]
    assert choose_providers("cuda", everything) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("tensorrt", everything) == everything
    assert choose_providers("cuda:0", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]  # falls back


def test_tensorrt_unavailable(static_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ExportError, match="not found"):
        build_engine(tmp_path / "missing.onnx")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails as if not installed
    with pytest.raises(TensorRTUnavailableError, match="pip install tensorrt"):
        build_engine(static_onnx, tmp_path / "x.engine")
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # installed, but no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TensorRTUnavailableError, match="CUDA GPU"):
        build_engine(static_onnx, tmp_path / "x.engine")
    assert not (tmp_path / "x.engine").exists()


def test_build_engine_flow_with_fake_tensorrt(dynamic_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    """The builder calls, profile and outputs of :func:`build_engine`, against a stand-in ``tensorrt`` module
    (a real build needs an NVIDIA GPU)."""
    import json
    from unittest import mock

    trt = mock.MagicMock(__version__="10.3.0")
    builder = trt.Builder.return_value
    network = builder.create_network.return_value
    network.num_inputs = 1
    network.get_input.return_value = types.SimpleNamespace(name="images", shape=(-1, 3, -1, -1))
    trt.OnnxParser.return_value.parse_from_file.return_value = True
    builder.build_serialized_network.return_value = b"serialized engine"
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    engine = build_engine(dynamic_onnx, tmp_path / "m.engine", half=True, workspace_gb=2)
    assert engine.read_bytes() == b"serialized engine"
    builder.create_network.assert_called_once_with(0)  # TensorRT 10: explicit batch needs no flag
    config = builder.create_builder_config.return_value
    config.set_memory_pool_limit.assert_called_once_with(trt.MemoryPoolType.WORKSPACE, 2 << 30)
    config.set_flag.assert_called_once_with(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile.return_value
    profile.set_shape.assert_called_once_with("images", (1, 3, 32, 32), (1, 3, IMGSZ, IMGSZ), (1, 3, IMGSZ, IMGSZ))
    sidecar = json.loads(engine.with_suffix(".json").read_text())
    assert sidecar["imgsz"] == IMGSZ and sidecar["scale"] == "n" and sidecar["engine_fp16"] is True

    trt.OnnxParser.return_value.parse_from_file.return_value = False
    trt.OnnxParser.return_value.num_errors = 1
    trt.OnnxParser.return_value.get_error.return_value = "unsupported node"
    with pytest.raises(ExportError, match="unsupported node"):
        build_engine(dynamic_onnx, tmp_path / "bad.engine")


def _cli_args(argv: list[str]) -> argparse.Namespace:
    from fastsam.cli import export as export_cli

    parser = argparse.ArgumentParser()
    export_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["export", *argv])


def test_cli_export_onnx(tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli" / "model.onnx"
    args = _cli_args([str(tiny_weights), "--imgsz", "128", "--dynamic", "--out", str(out)])
    assert args.run(args) == 0
    assert "wrote" in capsys.readouterr().out
    meta = read_metadata(out)
    assert meta["dynamic"] is True and meta["imgsz"] == 128 and meta["scale"] == "n"
    assert OnnxRuntimeNetwork(out)(torch.rand(1, 3, 64, 96))[1].shape == (1, 32, 16, 24)


def test_cli_export_engine_without_tensorrt(
    tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    args = _cli_args([str(tiny_weights), "--format", "engine", "--imgsz", "64", "--out", str(tmp_path / "m.engine")])
    with pytest.raises(TensorRTUnavailableError, match="pip install tensorrt"):
        args.run(args)
    assert not (tmp_path / "m.onnx").exists()  # checked before exporting anything


def test_cli_default_output() -> None:
    from fastsam.cli.export import default_output

    assert default_output("weights/FastSAM-s.safetensors", ".onnx") == Path("weights/FastSAM-s.onnx")
    assert default_output("FastSAM-x", ".engine") == Path("FastSAM-x.engine")
