"""The `fastsam train` loop: resume, DDP on CPU, real data formats, fine-tuning, the command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastsam.checkpoint import load_safetensors
from fastsam.training.trainer import TrainConfig, train
from train_synth import write_synthetic_coco


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return write_synthetic_coco(tmp_path_factory.mktemp("synth_loop"), 8, 64, seed=11)


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), format="coco", scale="n", imgsz=64, epochs=2, batch=4, nominal_batch=8, workers=0,
                device="cpu", out=str(out), progress=False, plots=False, warmup_epochs=0.5, deterministic=True, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_gives_the_same_weights(synth: Path, tmp_path: Path):
    full = train(_cfg(synth, tmp_path / "full"))
    cut = train(_cfg(synth, tmp_path / "cut", stop_after_epochs=1))
    assert cut["epochs_done"] == 1
    resumed = train(TrainConfig(resume=str(tmp_path / "cut"), progress=False, workers=0, device="cpu"))
    assert resumed["epochs_done"] == 2
    for name in ("last_model.safetensors", "last.safetensors"):
        a, meta = load_safetensors(tmp_path / "full" / "weights" / name)
        b, _ = load_safetensors(tmp_path / "cut" / "weights" / name)
        assert meta["scale"] == "n" and meta["nc"] == "1" and meta["reg_max"] == "16"
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    assert (tmp_path / "cut" / "results.csv").read_text().count("\n") == 3  # header + 2 epochs
    assert full["history"][-1] == pytest.approx(resumed["history"][-1])


def _ddp_worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    summary = train(_cfg(Path(data), Path(out), epochs=1, max_steps=2, batch=2, nominal_batch=4, deterministic=False))
    torch.save({k: v.detach().cpu() for k, v in summary["net"].state_dict().items()}, Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_ranks_hold_identical_weights(synth: Path, tmp_path: Path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(synth), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "weights" / "last.safetensors").is_file()


@pytest.mark.slow
def test_torchrun_cli(synth: Path, tmp_path: Path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "fastsam.cli.train", "--data", str(synth), "--format", "coco", "--scale", "n", "--imgsz", "64",
           "--epochs", "1", "--batch", "2", "--workers", "0", "--device", "cpu", "--out", str(tmp_path), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "weights" / "last.safetensors").is_file()


def test_real_formats_train_a_few_steps(shared_dir: Path, tmp_path: Path):
    from fastsam.engine import FastSAM

    tiny = shared_dir / "data" / "tiny-coco" / "small_coco" / "instances_train2017_small.json"
    coco128 = shared_dir / "data" / "coco128-seg"
    if not tiny.is_file() or not coco128.is_dir():
        pytest.skip("tiny-coco / coco128-seg not in the shared folder")
    for data, fmt in ((tiny, "coco"), (coco128, "yolo")):
        out = tmp_path / fmt
        s = train(_cfg(data, out, format=fmt, imgsz=128, epochs=1, max_steps=2, batch=2, deterministic=False))
        assert len(s["history"]) == 2 and all(torch.isfinite(torch.tensor(s["history"])))
        [res] = FastSAM(out / "weights" / "last.safetensors", device="cpu").predict(next((shared_dir / "data").rglob("*.jpg")), imgsz=128, conf=0.0)
        assert res.masks.ndim == 3


def test_finetune_frozen_backbone_and_cli(synth: Path, tmp_path: Path, tiny_weights: Path):
    import argparse

    from fastsam.cli import train as train_cli
    from fastsam.engine import load_model

    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--data", str(synth), "--format", "coco", "--weights", str(tiny_weights), "--freeze-backbone",
                              "--imgsz", "64", "--epochs", "1", "--batch", "4", "--nominal-batch", "4", "--workers", "0",
                              "--device", "cpu", "--out", str(tmp_path), "--no-progress", "--optimizer", "adamw", "--val", str(synth)])
    assert args.run(args) == 0
    before, _ = load_safetensors(tiny_weights)
    after, meta = load_safetensors(tmp_path / "weights" / "last_model.safetensors")
    assert meta["scale"] == "n" and meta["mask_ap"] != ""
    assert all(torch.equal(before[k].float(), after[k]) for k in before if k.startswith("model.1.") and "conv.weight" in k)
    assert not torch.equal(before["model.22.cv3.0.2.weight"].float(), after["model.22.cv3.0.2.weight"])
    net = load_model(tmp_path / "weights" / "best.safetensors")  # loads like any checkpoint
    assert net.nc == 1
    assert "mask_ap" in (tmp_path / "results.csv").read_text()
