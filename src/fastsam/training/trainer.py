"""The training loop of ``fastsam train``: one process, or one per GPU/CPU-rank under ``torchrun`` (DDP).

Outputs in ``out/``:

* ``weights/last.safetensors``: EMA weights in our format (loadable by ``fastsam segment --model``), metadata
  ``scale``/``nc``/``reg_max``/``imgsz``/``epoch``/``mask_ap``; ``weights/best.safetensors``: the same for the epoch
  of best validation mask AP (only with validation data).
* ``weights/last_model.safetensors``: the raw (non-EMA) training weights (``--resume`` continues from them).
* ``weights/last_state.pt``: optimizer, AMP scaler, EMA counter, RNG and progress, for exact ``--resume``.
* ``results.csv`` (one row per epoch), ``results.png`` (if matplotlib is importable), ``config.json``.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..build import build_yolov8_seg, infer_architecture
from ..checkpoint import load_safetensors, load_state_dict_from_file, save_safetensors
from ..modeling import YOLOv8Seg
from ..modeling.head import make_anchors
from ..ops.parallel import default_workers
from .augment import Augment
from .data import load_records
from .dataset import SegmentationDataset, collate
from .records import ImageRecord, annotation_rle, read_image, record_annotations
from .loss import SegmentationLoss

LOGGER = logging.getLogger("fastsam.train")
BACKBONE_LAYERS = 10  # model.0 ... model.9 (the SPPF closes the backbone)


@dataclass
class TrainConfig:
    data: str = ""
    format: str = "auto"  # coco, sa1b, yolo, shards (fastsam data convert) or auto (detected)
    val: str | None = None
    val_format: str | None = None
    scale: str = "s"
    reg_max: int = 16
    weights: str | None = None
    imgsz: int = 640
    epochs: int = 100
    batch: int = 8  # per process
    nominal_batch: int = 64
    lr: float | None = None  # default: 0.01 (sgd), 0.002 (adamw)
    lrf: float = 0.01  # final lr = lr * lrf
    schedule: str = "linear"  # or "cosine"
    optimizer: str = "sgd"
    momentum: float = 0.937
    weight_decay: float = 5e-4
    warmup_epochs: float = 3.0
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    workers: int | None = None  # data-loading processes; None: one per core, at most 4
    device: str = "auto"
    out: str = "runs/train"
    resume: str | None = None
    freeze_backbone: bool = False
    seed: int = 0
    deterministic: bool = False
    amp: bool = True
    sync_bn: bool = False
    ema_decay: float = 0.9999
    ema_tau: float = 2000.0
    val_interval: int = 1
    val_conf: float = 0.001
    val_iou: float = 0.7
    val_max_det: int = 100
    max_steps: int | None = None  # stop after this many batches in total (smoke tests)
    stop_after_epochs: int | None = None  # stop (as if interrupted) after this many epochs
    clip_grad: float = 10.0
    augment: dict = field(default_factory=lambda: asdict(Augment()))  # Augment's fields; "mosaic" is its probability
    close_mosaic: int = 10  # no mosaic in the last this many epochs
    box_gain: float = 7.5
    cls_gain: float = 0.5
    dfl_gain: float = 1.5
    progress: bool = True
    plots: bool = True

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# --------------------------------------------------------------------------- distributed


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> DistInfo:
    """Join the process group described by torchrun's environment (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=info.rank, world_size=world)
    return info


def resolve_device(name: str, info_local_rank: int) -> torch.device:
    if name in ("auto", None, ""):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name} asked for, but CUDA is not available here; use --device cpu")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            device = torch.device("cuda", info_local_rank)
        torch.cuda.set_device(device)
    return device


# --------------------------------------------------------------------------- model


class TrainForward(nn.Module):
    """``forward(x)`` -> raw head outputs; the module DDP wraps (so gradients are synchronised)."""

    def __init__(self, net: YOLOv8Seg) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.net.head.forward_raw(self.net.features(x))


@torch.no_grad()
def init_head_biases(net: YOLOv8Seg, imgsz: int = 640) -> None:
    """Published YOLOv8 head bias initialisation: box logits 1.0, class logits ``log(5 / nc / (imgsz / s)^2)``
    (about 5 objects per image a priori)."""
    head = net.head
    for box_branch, cls_branch, stride in zip(head.cv2, head.cv3, head.strides):
        box_branch[-1].bias.fill_(1.0)
        cls_branch[-1].bias.fill_(math.log(5 / head.nc / (imgsz / stride) ** 2))


def build_network(cfg: TrainConfig) -> tuple[YOLOv8Seg, str]:
    """A fresh network, or one initialised from ``cfg.weights`` (any file ``load_state_dict_from_file`` reads).

    Returns the network (float32, train mode) and a description of where the weights came from.
    """
    if not cfg.weights:
        net = build_yolov8_seg(cfg.scale, nc=1, reg_max=cfg.reg_max)
        init_head_biases(net)
        return net, "scratch"
    from ..hub import resolve_weights

    state, _ = load_state_dict_from_file(resolve_weights(cfg.weights))
    scale, nc, reg_max = infer_architecture(state)
    if (scale, reg_max) != (cfg.scale, cfg.reg_max):
        LOGGER.info("weights %s are YOLOv8-seg-%s with reg_max %d: using that architecture", cfg.weights, scale, reg_max)
    cfg.scale, cfg.reg_max = scale, reg_max
    net = build_yolov8_seg(scale, nc=1, reg_max=reg_max)
    init_head_biases(net)
    own = net.state_dict()
    fitting = {k: v.float() for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(fitting))
    if skipped:
        LOGGER.warning("%d tensors of %s do not fit (nc %d -> 1?), left at their initial values: %s", len(skipped), cfg.weights, nc, ", ".join(skipped[:8]))
    net.load_state_dict(fitting, strict=False)
    return net, str(cfg.weights)


def freeze_backbone(net: YOLOv8Seg) -> None:
    for i in range(BACKBONE_LAYERS):
        net.model[i].requires_grad_(False)


def set_train_mode(net: YOLOv8Seg, frozen: bool) -> None:
    net.train()
    if frozen:  # frozen layers keep their BatchNorm statistics
        for i in range(BACKBONE_LAYERS):
            net.model[i].eval()


class ModelEMA:
    """Exponential moving average of all weights and buffers; decay ramps up as ``d (1 - exp(-updates / tau))``."""

    def __init__(self, net: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0) -> None:
        self.module = copy.deepcopy(net).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        own = self.module.state_dict()
        for k, v in net.state_dict().items():
            if v.dtype.is_floating_point:
                own[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                own[k].copy_(v)


def build_optimizer(net: nn.Module, cfg: TrainConfig, weight_decay: float) -> torch.optim.Optimizer:
    """Three groups: conv/linear weights (decayed), BatchNorm weights and biases (not decayed)."""
    decay, no_decay, biases = [], [], []
    for module in net.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if name == "bias":
                biases.append(p)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                no_decay.append(p)
            else:
                decay.append(p)
    lr = cfg.lr if cfg.lr is not None else (0.01 if cfg.optimizer == "sgd" else 0.002)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(no_decay, lr=lr, momentum=cfg.momentum, nesterov=True)
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(no_decay, lr=lr, betas=(cfg.momentum, 0.999), weight_decay=0.0)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose sgd or adamw")
    opt.add_param_group({"params": decay, "weight_decay": weight_decay})
    opt.add_param_group({"params": biases, "weight_decay": 0.0})
    for g in opt.param_groups:
        g["initial_lr"] = lr
    return opt


def lr_factor(cfg: TrainConfig, progress: float) -> float:
    """Decay after warm-up: ``progress`` in [0, 1] of the whole run -> factor from 1 to ``lrf``."""
    progress = min(max(progress, 0.0), 1.0)
    if cfg.schedule == "cosine":
        return ((1 - math.cos(progress * math.pi)) / 2) * (cfg.lrf - 1) + 1
    return (1 - progress) * (1.0 - cfg.lrf) + cfg.lrf


def set_lr(opt: torch.optim.Optimizer, cfg: TrainConfig, it: int, total_its: int, warmup_its: int) -> None:
    """Per-batch learning rate and momentum: linear warm-up (biases from ``warmup_bias_lr`` down, with SGD), then
    linear or cosine decay."""
    factor = lr_factor(cfg, it / max(total_its, 1))
    for k, g in enumerate(opt.param_groups):
        target = g["initial_lr"] * factor
        if it < warmup_its:
            x = it / warmup_its
            start = cfg.warmup_bias_lr if (k == 2 and cfg.optimizer == "sgd") else 0.0
            g["lr"] = start + (target - start) * x
            if cfg.optimizer == "sgd":
                g["momentum"] = cfg.warmup_momentum + (cfg.momentum - cfg.warmup_momentum) * x
        else:
            g["lr"] = target
            if cfg.optimizer == "sgd":
                g["momentum"] = cfg.momentum


# --------------------------------------------------------------------------- evaluation


def coco_ground_truth(records: list[ImageRecord]):
    """A class-agnostic in-memory COCO of ``records`` (crowd annotations kept as ``iscrowd``)."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    images, anns = [], []
    for i, rec in enumerate(records):
        images.append({"id": i, "height": rec.height, "width": rec.width, "file_name": str(rec.path)})
        for kind, data, crowd in record_annotations(rec):
            try:
                rle = annotation_rle(kind, data, rec.height, rec.width)
            except Exception:  # noqa: BLE001
                continue
            anns.append({
                "id": len(anns) + 1, "image_id": i, "category_id": 1, "segmentation": rle,
                "area": float(mask_utils.area(rle)), "bbox": mask_utils.toBbox(rle).tolist(), "iscrowd": int(crowd),
            })
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


@torch.no_grad()
def evaluate(
    net: YOLOv8Seg,
    records: list[ImageRecord],
    imgsz: int,
    device: torch.device | str = "cpu",
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 100,
    gt=None,
) -> dict[str, float]:
    """Class-agnostic mask AP of ``net`` on ``records`` with :class:`fastsam.engine.FastSAM` inference and
    pycocotools' COCOeval. Returns ``{"mask_ap": AP@[.5:.95], "mask_ap50": AP@.5}`` (0 without detections)."""
    from pycocotools import mask as mask_utils
    from pycocotools.cocoeval import COCOeval

    from ..engine import FastSAM

    model = FastSAM(copy.deepcopy(net).float().eval(), device=device, half=False)
    gt = gt or coco_ground_truth(records)
    dets = []
    for i, rec in enumerate(records):
        [res] = model.predict(read_image(rec), imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, retina=True)
        if len(res.scores) == 0:
            continue
        rles = mask_utils.encode(np.asfortranarray(res.masks.transpose(1, 2, 0).astype(np.uint8)))
        for rle, score in zip(rles, res.scores.tolist()):
            dets.append({"image_id": i, "category_id": 1, "segmentation": rle, "score": float(score)})
    if not dets or not gt.dataset["annotations"]:
        return {"mask_ap": 0.0, "mask_ap50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "segm")
        ev.params.useCats = 0
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"mask_ap": float(max(ev.stats[0], 0.0)), "mask_ap50": float(max(ev.stats[1], 0.0))}


# --------------------------------------------------------------------------- checkpoints


def _metadata(cfg: TrainConfig, epoch: int, kind: str, extra: dict | None = None) -> dict:
    meta = {
        "format": "fastsam", "format_version": "1", "scale": cfg.scale, "nc": 1, "reg_max": cfg.reg_max,
        "imgsz": cfg.imgsz, "epoch": epoch, "weights": kind, "source": "fastsam train",
    }
    meta.update(extra or {})
    return meta


def _float_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def plot_results(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("box", "cls", "dfl", "mask", "loss"):
        axes[0].plot(epochs, [r[key] for r in rows], label=key)
    axes[0].set_xlabel("epoch"), axes[0].set_title("training loss"), axes[0].legend()
    val = [(r["epoch"], r["mask_ap"], r["mask_ap50"]) for r in rows if r.get("mask_ap") not in ("", None)]
    if val:
        axes[1].plot([v[0] for v in val], [v[1] for v in val], "o-", label="mask AP")
        axes[1].plot([v[0] for v in val], [v[2] for v in val], "o-", label="mask AP50")
        axes[1].legend()
    axes[1].set_xlabel("epoch"), axes[1].set_title("validation (EMA)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class _Sampler(torch.utils.data.Sampler):
    """Shuffled indices from ``(seed, epoch)`` (single process)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


# --------------------------------------------------------------------------- training


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train (or resume, or fine-tune) as ``cfg`` says. Returns a summary: per-batch loss history, per-epoch rows,
    best AP, output folder. Every process of a DDP run calls this; rank 0 writes the outputs."""
    if cfg.resume:
        resume_dir = Path(cfg.resume)
        saved = json.loads((resume_dir / "config.json").read_text())
        saved.get("augment", {}).setdefault("mosaic", 0.0)  # runs from before mosaic existed had none
        keep = {"device": cfg.device, "progress": cfg.progress, "stop_after_epochs": cfg.stop_after_epochs, "max_steps": cfg.max_steps}
        if cfg.workers is not None:  # chosen again for this run; else the run's own
            keep["workers"] = cfg.workers
        cfg = TrainConfig.from_dict({**saved, **keep, "resume": str(resume_dir), "out": str(resume_dir)})
    if not cfg.data:
        raise ValueError("no training data given (--data)")
    if cfg.imgsz % 32:
        raise ValueError(f"imgsz must be a multiple of 32, got {cfg.imgsz}")

    world_env = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    info = setup_distributed(device) if world_env > 1 else DistInfo()
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    out = Path(cfg.out)
    weights_dir = out / "weights"
    if info.main:
        weights_dir.mkdir(parents=True, exist_ok=True)

    # data
    records, report = load_records(cfg.data, cfg.format)
    if info.main:
        LOGGER.info("training data: %s", report.summary())
    dataset = SegmentationDataset(records, cfg.imgsz, Augment(**cfg.augment), seed=cfg.seed, report=report)
    if info.enabled:
        sampler = torch.utils.data.distributed.DistributedSampler(dataset, info.world, info.rank, shuffle=True, seed=cfg.seed)
    else:
        sampler = _Sampler(len(dataset), cfg.seed)
    loader_kwargs = dict(batch_size=cfg.batch, sampler=sampler, num_workers=default_workers() if cfg.workers is None else cfg.workers, collate_fn=collate, pin_memory=device.type == "cuda")
    val_records = None
    if cfg.val and info.main:
        val_records, val_report = load_records(cfg.val, cfg.val_format or cfg.format)
        LOGGER.info("validation data: %s", val_report.summary())
    val_gt = coco_ground_truth(val_records) if val_records else None

    # model
    net, origin = build_network(cfg)
    if cfg.freeze_backbone:
        freeze_backbone(net)
    net = net.to(device)
    forward = TrainForward(net)
    if info.enabled and cfg.sync_bn:
        forward = nn.SyncBatchNorm.convert_sync_batchnorm(forward)
        net = forward.net
    ema = ModelEMA(net, cfg.ema_decay, cfg.ema_tau)
    accumulate = max(round(cfg.nominal_batch / (cfg.batch * info.world)), 1)
    weight_decay = cfg.weight_decay * cfg.batch * info.world * accumulate / cfg.nominal_batch
    optimizer = build_optimizer(net, cfg, weight_decay)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    criterion = SegmentationLoss(1, cfg.reg_max, cfg.box_gain, cfg.cls_gain, cfg.dfl_gain)

    start_epoch, best_ap, rows = 0, -1.0, []
    if cfg.resume:
        model_sd, _ = load_safetensors(weights_dir / "last_model.safetensors")
        ema_sd, _ = load_safetensors(weights_dir / "last.safetensors")
        net.load_state_dict(model_sd)
        ema.module.load_state_dict(ema_sd)
        state = torch.load(weights_dir / "last_state.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        ema.updates = int(state["ema_updates"])
        start_epoch, best_ap = int(state["epoch"]), float(state["best_ap"])
        torch.set_rng_state(state["torch_rng"])
        rows = json.loads(state["rows"])
        if info.main:
            LOGGER.info("resuming from %s after epoch %d", weights_dir, start_epoch)
    elif info.main:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    model = forward
    if info.enabled:
        model = nn.parallel.DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)

    loader = torch.utils.data.DataLoader(dataset, **loader_kwargs)
    nb = len(loader)
    total_its = nb * cfg.epochs
    warmup_its = int(round(cfg.warmup_epochs * nb))
    strides = net.head.strides
    history: list[float] = []
    steps_done = start_epoch * nb
    t_start = time.time()
    if info.main:
        LOGGER.info(
            "training YOLOv8-seg-%s (%s) on %s: %d images, imgsz %d, batch %d x %d process(es), accumulate %d, %d epochs",
            cfg.scale, origin, device, len(dataset), cfg.imgsz, cfg.batch, info.world, accumulate, cfg.epochs,
        )
    last_epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.stop_after_epochs is not None and epoch >= cfg.stop_after_epochs:
            break
        if cfg.max_steps is not None and steps_done >= cfg.max_steps:
            break
        set_train_mode(net, cfg.freeze_backbone)
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        mosaic = epoch < cfg.epochs - cfg.close_mosaic
        if dataset.mosaic and not mosaic and dataset.augment.mosaic > 0 and info.main:
            LOGGER.info("epoch %d: mosaic off for the last %d epochs", epoch + 1, cfg.epochs - epoch)
        dataset.mosaic = mosaic
        sums = np.zeros(4)
        count = 0
        bar = enumerate(loader)
        if info.main and cfg.progress:
            from tqdm import tqdm

            bar = tqdm(bar, total=nb, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", dynamic_ncols=True)
        optimizer.zero_grad(set_to_none=True)
        for i, batch in bar:
            it = epoch * nb + i
            set_lr(optimizer, cfg, it, total_its, warmup_its)
            images = batch["image"].to(device, non_blocking=True).float().div_(255)
            step_now = (i + 1) % accumulate == 0 or i == nb - 1
            sync = contextlib.nullcontext() if (step_now or not info.enabled) else model.no_sync()
            with sync:
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                    outputs = model(images)
                h, w = images.shape[2:]
                points, stride_t = make_anchors([(h // s, w // s) for s in strides], strides, device, torch.float32)
                loss, items = criterion(outputs, points, stride_t, batch["boxes"], batch["masks"], (h, w))
                if info.enabled:
                    loss = loss * info.world  # DDP averages gradients; keep the sum over all images
                scaler.scale(loss).backward()
            if step_now:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_([p for p in net.parameters() if p.requires_grad], cfg.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                ema.update(net)
            values = np.array([items.box, items.cls, items.dfl, items.mask])
            sums += values
            count += 1
            history.append(float(values.sum()))
            steps_done += 1
            if info.main and cfg.progress and hasattr(bar, "set_postfix"):
                mean = sums / count
                bar.set_postfix(box=f"{mean[0]:.3f}", cls=f"{mean[1]:.3f}", dfl=f"{mean[2]:.3f}", mask=f"{mean[3]:.3f}", lr=f"{optimizer.param_groups[1]['lr']:.2e}")
            if cfg.max_steps is not None and steps_done >= cfg.max_steps:
                break
        if hasattr(bar, "close"):
            bar.close()
        last_epoch = epoch + 1
        if info.enabled:  # BatchNorm statistics differ per rank without SyncBN: take rank 0's, as DDP does
            with torch.no_grad():
                for module in (net, ema.module):
                    for buf in module.buffers():
                        dist.broadcast(buf, 0)
        mean = sums / max(count, 1)
        row = {"epoch": epoch + 1, "box": mean[0], "cls": mean[1], "dfl": mean[2], "mask": mean[3], "loss": mean.sum(),
               "lr": optimizer.param_groups[1]["lr"], "mask_ap": "", "mask_ap50": "", "time_s": round(time.time() - t_start, 1)}
        final = epoch + 1 == cfg.epochs
        if info.main and val_records and ((epoch + 1) % cfg.val_interval == 0 or final):
            metrics = evaluate(ema.module, val_records, cfg.imgsz, device, cfg.val_conf, cfg.val_iou, cfg.val_max_det, gt=val_gt)
            row.update(metrics)
        rows.append(row)
        if info.main:
            ap = row["mask_ap"]
            is_best = ap != "" and ap > best_ap
            if is_best:
                best_ap = ap
            _save(cfg, net, ema, optimizer, scaler, epoch + 1, best_ap, rows, weights_dir, is_best, ap)
            _write_logs(rows, out, cfg.plots)
            elapsed = time.time() - t_start
            done = epoch + 1 - start_epoch
            eta = elapsed / done * (cfg.epochs - epoch - 1)
            LOGGER.info(
                "epoch %d/%d: loss %.4f (box %.4f cls %.4f dfl %.4f mask %.4f)%s, ETA %.0f s",
                epoch + 1, cfg.epochs, row["loss"], *mean, "" if ap == "" else f", mask AP {ap:.4f} AP50 {row['mask_ap50']:.4f}", eta,
            )
        if info.enabled:
            dist.barrier()
    summary = {"history": history, "rows": rows, "best_ap": best_ap, "out": str(out), "epochs_done": last_epoch,
               "report": report, "net": net, "ema": ema.module, "config": cfg}
    if info.enabled and dist.is_initialized():
        dist.barrier()
    return summary


def _save(cfg, net, ema, optimizer, scaler, epoch, best_ap, rows, weights_dir: Path, is_best: bool, ap) -> None:
    extra = {"mask_ap": ap}
    save_safetensors(_float_state(ema.module), weights_dir / "last.safetensors", _metadata(cfg, epoch, "ema", extra))
    save_safetensors(_float_state(net), weights_dir / "last_model.safetensors", _metadata(cfg, epoch, "model", extra))
    state = {
        "epoch": epoch, "best_ap": best_ap, "ema_updates": ema.updates, "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(), "torch_rng": torch.get_rng_state(), "rows": json.dumps(rows, default=float),
    }
    tmp = weights_dir / "last_state.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, weights_dir / "last_state.pt")
    if is_best:
        save_safetensors(_float_state(ema.module), weights_dir / "best.safetensors", _metadata(cfg, epoch, "ema", extra))


def _write_logs(rows: list[dict], out: Path, plots: bool) -> None:
    keys = ["epoch", "loss", "box", "cls", "dfl", "mask", "lr", "mask_ap", "mask_ap50", "time_s"]
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{r[k]:.6g}" if isinstance(r.get(k), float) else r.get(k, "")) for k in keys})
    if plots:
        plot_results(rows, out / "results.png")
