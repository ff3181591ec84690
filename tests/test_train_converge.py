"""`fastsam train` learns: a few hundred steps of FastSAM-n on synthetic shapes lower the loss and raise the
class-agnostic mask AP on held-out synthetic images well above an untrained network's (slow: minutes on CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fastsam.build import build_yolov8_seg
from fastsam.training.data import load_records
from fastsam.training.trainer import TrainConfig, evaluate, init_head_biases, train
from train_synth import write_synthetic_coco


@pytest.mark.slow
@pytest.mark.long
def test_synthetic_training_lowers_loss_and_raises_mask_ap(tmp_path: Path):
    train_json = write_synthetic_coco(tmp_path / "train", 32, 96, seed=1)
    val_json = write_synthetic_coco(tmp_path / "val", 12, 96, seed=2)
    epochs = 50  # 4 batches an epoch: 200 optimizer steps
    cfg = TrainConfig(data=str(train_json), format="coco", val=str(val_json), scale="n", imgsz=96, epochs=epochs, batch=8,
                      nominal_batch=8, workers=0, device="cpu", out=str(tmp_path / "run"), progress=False, plots=True,
                      optimizer="adamw", lr=0.002, warmup_epochs=2, ema_tau=50, val_interval=epochs, seed=0)
    summary = train(cfg)
    history = summary["history"]
    start, end = sum(history[:8]) / 8, sum(history[-8:]) / 8

    val_records, _ = load_records(val_json, "coco")
    torch.manual_seed(0)
    untrained = build_yolov8_seg("n")
    init_head_biases(untrained)
    before = evaluate(untrained, val_records, 96)
    after = summary["rows"][-1]
    numbers = {"steps": len(history), "loss_start": start, "loss_end": end, "untrained": before,
               "trained_ema": {"mask_ap": after["mask_ap"], "mask_ap50": after["mask_ap50"]}}
    print(json.dumps(numbers))
    (tmp_path / "run" / "converge.json").write_text(json.dumps(numbers, indent=2))
    assert end < 0.6 * start
    assert after["mask_ap50"] > before["mask_ap50"] + 0.1
    assert after["mask_ap"] > before["mask_ap"] + 0.03
