"""OpenVINO: ``fastsam export --format openvino`` (FP32, INT8 with NNCF), the OpenVINO backend, and its errors.

Tolerance of OpenVINO FP32 vs our PyTorch float32 network (random-weight n network, real photo): boxes,
coefficients and prototypes within 3e-4 of each output's largest magnitude, scores within 1e-4 (float32
summation-order noise, as for ONNX Runtime in test_export.py); through post-processing on the photo: the same
detections, every mask matched at IoU >= 0.98 (measured min 0.987, the rest >= 0.997).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

ov = pytest.importorskip("openvino")
pytest.importorskip("onnx")

from fastsam.backends import BackendError, OpenVINONetwork, detect_backend  # noqa: E402
from fastsam.engine import FastSAM, load_model  # noqa: E402
from fastsam.export import ExportError  # noqa: E402
from fastsam.export.openvino import export_openvino  # noqa: E402
from fastsam.io import load_image  # noqa: E402
from fastsam.precision import PrecisionError, cpu_has_native_bf16  # noqa: E402
from fastsam.transforms import letterbox_geometry, letterbox_image  # noqa: E402

IMGSZ = 320


@pytest.fixture(scope="module")
def net(tiny_weights: Path) -> torch.nn.Module:
    return load_model(tiny_weights, "cpu")


@pytest.fixture(scope="module")
def ir_folder(net, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ov") / "tiny_openvino"
    export_openvino(net, folder, imgsz=IMGSZ)
    return folder


def test_export_writes_an_ir_with_metadata(ir_folder: Path) -> None:
    assert sorted(p.name for p in ir_folder.iterdir()) == ["tiny_openvino.bin", "tiny_openvino.xml"]
    network = OpenVINONetwork(ir_folder, precision="fp32")
    meta = network.metadata
    assert meta["format"] == "fastsam-openvino" and meta["scale"] == "n" and meta["nc"] == 1
    assert meta["reg_max"] == 16 and meta["dynamic"] is True and meta["precision"] == "fp32"
    assert network.fixed_input_hw is None and network.precision == "fp32"
    assert detect_backend(ir_folder) == detect_backend(ir_folder / "tiny_openvino.xml") == "openvino"


def test_fp32_outputs_match_pytorch(net, ir_folder: Path, photo_path: Path) -> None:
    image = load_image(photo_path)
    for size in (IMGSZ, 256):  # dynamic: two input shapes
        x = letterbox_image(image, letterbox_geometry(image.shape[:2], size)).unsqueeze(0)
        with torch.inference_mode():
            rp, rq = net(x)
        p, q = OpenVINONetwork(ir_folder, precision="fp32")(x)
        assert p.shape == rp.shape and q.shape == rq.shape and p.dtype == torch.float32
        for a, b in ((p[:, :4], rp[:, :4]), (p[:, 5:], rp[:, 5:]), (q, rq)):
            assert float((a - b).abs().max()) <= 3e-4 * float(b.abs().max())
        assert float((p[:, 4] - rp[:, 4]).abs().max()) <= 1e-4


def test_fastsam_runs_an_ir_folder_end_to_end(tiny_model, ir_folder: Path, photo_path: Path) -> None:
    [ref] = tiny_model.predict(photo_path, imgsz=IMGSZ)
    model = FastSAM(ir_folder, device="cpu", precision="fp32")
    assert model.backend == "openvino" and model.precision == "fp32"
    [ours] = model.predict(photo_path, imgsz=IMGSZ)
    assert len(ours) == len(ref) > 0
    assert np.allclose(ours.scores, ref.scores, atol=1e-4)
    # every mask has a partner at IoU >= 0.98, and the mean is >= 0.999 (near-equal scores may swap places;
    # random-weight masks have ragged edges, so float32 noise flips more edge pixels than real masks' would)
    best = np.asarray(mask_utils.iou(ours.to_rle(), ref.to_rle(), [0] * len(ref))).max(0)
    assert best.min() >= 0.98 and best.mean() >= 0.999


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bfloat16")
def test_bf16_and_throughput_hint_run(ir_folder: Path, photo_path: Path) -> None:
    model = FastSAM(ir_folder, device="cpu", precision="bf16", performance="throughput")
    assert model.precision == "bf16" and model.network.optimal_requests() >= 1
    [result] = model.predict(photo_path, imgsz=IMGSZ)
    assert result.masks.shape[1:] == result.image_size and np.all(np.diff(result.scores) <= 0)


def test_async_start_wait_gives_the_same_outputs(ir_folder: Path) -> None:
    network = OpenVINONetwork(ir_folder, precision="fp32")
    x = torch.rand(2, 3, 128, 192)
    waits = [network.start(x[i : i + 1]) for i in range(2)]
    for i, wait in enumerate(waits):
        p, q = wait()
        rp, rq = network(x[i : i + 1])
        assert torch.equal(p, rp) and torch.equal(q, rq)


def test_int8_export_quantises_and_runs(net, tmp_path: Path, shared_dir: Path, photo_path: Path) -> None:
    calibration = shared_dir / "data" / "coco128-seg" / "images"
    folder = tmp_path / "int8"
    xml = export_openvino(net, folder, imgsz=256, int8=True, data=calibration, calibration_size=4)
    model = FastSAM(folder, device="cpu", precision="int8")
    assert model.precision == "int8" and model.network.metadata["calibration_images"] == 4
    graph = ov.Core().read_model(str(xml))
    assert any(op.get_type_name() == "FakeQuantize" for op in graph.get_ops())  # INT8 layers exist
    [result] = model.predict(photo_path, imgsz=256)
    assert result.masks.shape[1:] == result.image_size
    float_ir = export_openvino(net, tmp_path / "float", imgsz=256)
    with pytest.raises(PrecisionError, match="quantised model"):  # a float IR asked for int8
        OpenVINONetwork(float_ir, precision="int8")


def test_bad_ir_folders_give_one_clear_error(ir_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="holds no OpenVINO model"):
        OpenVINONetwork(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "m.xml").write_bytes((ir_folder / "tiny_openvino.xml").read_bytes())
    with pytest.raises(BackendError, match=r"m\.bin is missing"):
        OpenVINONetwork(broken)
    # an IR that is not fastsam's (any other network converted by OpenVINO)
    other = ov.convert_model(torch.nn.Conv2d(3, 4, 3), example_input=torch.rand(1, 3, 8, 8))
    ov.save_model(other, str(tmp_path / "other" / "other.xml"))
    with pytest.raises(BackendError, match="not a FastSAM one"):
        FastSAM(tmp_path / "other", device="cpu")
    (broken / "m.bin").write_bytes(b"\0" * 10)
    with pytest.raises(BackendError, match="cannot"):
        OpenVINONetwork(broken)


def test_export_errors(net, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="calibration images"):
        export_openvino(net, tmp_path / "a", int8=True)
    with pytest.raises(ExportError, match="not found"):
        export_openvino(net, tmp_path / "a", int8=True, data=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no images"):
        export_openvino(net, tmp_path / "a", int8=True, data=tmp_path / "empty")


def test_cli_export_then_segment(tiny_weights: Path, photo_path: Path, tmp_path: Path) -> None:
    run = [sys.executable, "-m", "fastsam.cli.main"]
    folder = tmp_path / "m_openvino"
    done = subprocess.run(run + ["export", str(tiny_weights), "--format", "openvino", "--imgsz", "256",
                                 "--out", str(folder)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "OpenVINO IR" in done.stdout and (folder / "m_openvino.xml").is_file()
    done = subprocess.run(run + ["segment", str(photo_path), "--model", str(folder), "--imgsz", "256",
                                 "--precision", "fp32", "--format", "json", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / f"{photo_path.stem}.json").is_file()
    bad = subprocess.run(run + ["export", str(tiny_weights), "--format", "onnx", "--int8"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip  # a usage error: exit 2
    assert bad.returncode == 2 and "openvino" in bad.stderr and "Traceback" not in bad.stderr
