"""Safe checkpoint loading, the safetensors format and conversion."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from fastsam.build import build_model_from_state_dict, build_yolov8_seg, infer_architecture
from fastsam.checkpoint import (
    convert_checkpoint,
    load_safetensors,
    load_state_dict_from_file,
    sha256_of,
)
from fastsam.errors import CheckpointError
from model_factory import random_network


class _RunsCommand:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _WritesFile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _torch_zip_with_pickle(path: Path, payload: bytes) -> Path:
    """A torch.save-style zip archive whose data.pkl is ``payload``."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
    return path


@pytest.mark.parametrize("make", [_RunsCommand, _WritesFile])
def test_malicious_checkpoint_is_refused_without_side_effect(tmp_path: Path, make) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": make(marker), "ema": None}, evil)
    with pytest.raises(CheckpointError, match=r"refusing to load .*(system|open)"):
        load_state_dict_from_file(evil)
    assert not marker.exists()


def test_getattr_escape_is_refused(tmp_path: Path) -> None:
    # getattr(set, "__subclasses__") is the first step of the classic sandbox escape.
    payload = b"\x80\x02cbuiltins\ngetattr\ncbuiltins\nset\nX\x0e\x00\x00\x00__subclasses__\x86R."
    path = _torch_zip_with_pickle(tmp_path / "escape.pt", payload)
    with pytest.raises(CheckpointError, match="getattr"):
        load_state_dict_from_file(path)


def test_garbage_and_missing_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict_from_file(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError):
        load_state_dict_from_file(junk)
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="bare pickle"):
        load_state_dict_from_file(legacy)
    truncated = tmp_path / "truncated.pt"
    buffer = io.BytesIO()
    torch.save(random_network("n").state_dict(), buffer)
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(CheckpointError):
        load_state_dict_from_file(truncated)


def test_plain_state_dict_zip_loads_bit_identically(tmp_path: Path) -> None:
    net = random_network("n", seed=3)
    path = tmp_path / "sd.pt"
    torch.save(net.state_dict(), path)
    state, meta = load_state_dict_from_file(path)
    assert meta["format"] == "state_dict"
    assert state.keys() == net.state_dict().keys()
    for key, value in net.state_dict().items():
        assert torch.equal(state[key], value), key


def test_convert_round_trip_and_metadata(tmp_path: Path) -> None:
    net = random_network("s", reg_max=16, seed=1)
    src = tmp_path / "FastSAM-s.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}, src)
    dst = convert_checkpoint(src, tmp_path / "out" / "s.safetensors")
    state, meta = load_safetensors(dst)
    assert meta["scale"] == "s" and meta["nc"] == "1" and meta["reg_max"] == "16"
    assert meta["source_sha256"] == sha256_of(src) and meta["source"] == "FastSAM-s.pt"
    original, _ = load_state_dict_from_file(src)
    for key, value in original.items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
    loaded = build_model_from_state_dict(state)
    assert next(loaded.parameters()).dtype == torch.float32


@pytest.mark.parametrize("scale,reg_max", [("n", 16), ("s", 16), ("m", 16), ("l", 16), ("x", 26)])
def test_infer_architecture(scale: str, reg_max: int) -> None:
    state = build_yolov8_seg(scale, nc=1, reg_max=reg_max).state_dict()
    assert infer_architecture(state) == (scale, 1, reg_max)


def test_wrong_state_dict_is_a_checkpoint_error() -> None:
    state = build_yolov8_seg("n").state_dict()
    state.pop("model.0.conv.weight")
    with pytest.raises(CheckpointError, match="missing model.0.conv.weight"):
        infer_architecture(state)
    state = build_yolov8_seg("n").state_dict()
    state["model.3.conv.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="do not fit"):
        build_model_from_state_dict(state)


def test_fusion_preserves_outputs() -> None:
    net = random_network("n", seed=5)
    x = torch.rand(1, 3, 128, 96)
    with torch.no_grad():
        before = net(x)
        net.fuse()
        after = net(x)
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-2)  # float32 rounding; boxes are in pixels
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_converted_file_has_the_usual_permissions(tmp_path: Path, umask: int, capsys: pytest.CaptureFixture) -> None:
    """``fastsam convert`` writes 0o666 less the umask (rw-r--r-- usually), like every other output, not 0o600."""
    from fastsam.cli.main import main

    src = tmp_path / "n.pt"
    torch.save(random_network("n").state_dict(), src)
    old = os.umask(umask)
    try:
        assert main(["convert", str(src), str(tmp_path / "out" / "n.safetensors")]) == 0
        api = convert_checkpoint(src, tmp_path / "api.safetensors")
    finally:
        os.umask(old)
    assert "wrote" in capsys.readouterr().out
    for path in (tmp_path / "out" / "n.safetensors", api):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, oct(path.stat().st_mode)
        load_safetensors(path)  # still a valid file
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["n.safetensors"]  # no temporary file left
