"""``fastsam train``: train or fine-tune a FastSAM (one-class YOLOv8-seg) network.

Single process: ``fastsam train --data ...``; several GPUs or nodes: the same command under ``torchrun``.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from ..training.records import DATA_FORMATS
from .common import UsageError, add_batch_size_option, add_debug_option, add_out_option, add_quiet_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train or fine-tune a FastSAM network (COCO, SA-1B or YOLO-seg data)",
        description="Train a one-class YOLOv8-seg (FastSAM) network from scratch or fine-tune official weights. "
        "Launch under torchrun for multi-GPU / multi-node DistributedDataParallel training. Writes EMA weights in "
        "the .safetensors format that 'fastsam segment --model' loads, logs and a resumable state.",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data", help="training data: COCO instances JSON, SA-1B folder, YOLO-seg folder or a folder written by 'fastsam data convert'")
    data.add_argument("--format", choices=DATA_FORMATS, default="auto", help="format of --data and --val; shards: 'fastsam data convert' output; auto: detected (default: %(default)s)")
    data.add_argument("--val", help="validation data for the class-agnostic mask AP")
    data.add_argument("--val-format", choices=DATA_FORMATS, help="format of --val if it differs")
    data.add_argument("--imgsz", type=int, default=640, help="square training input size, multiple of 32 (default: %(default)s)")
    data.add_argument("--workers", type=int, default=None, help="parallel input workers: data-loading processes per "
                      "training process (default: one per core, at most 4; --resume: the run's own)")  # fmt: skip
    data.add_argument("--no-augment", action="store_true", help="no mosaic/scale/translate/flip/HSV augmentation")
    data.add_argument("--mosaic", type=float, help="probability of a 4-image mosaic per sample, 0 to 1 (default: 1.0, 0 with --no-augment)")
    data.add_argument("--close-mosaic", type=int, default=10, help="no mosaic in the last N epochs (default: %(default)s)")

    model = parser.add_argument_group("model")
    model.add_argument("--scale", choices=("n", "s", "m", "l", "x"), default="s", help="network scale for training from scratch (default: %(default)s)")
    model.add_argument("--reg-max", type=int, default=16, help="DFL bins for training from scratch (default: %(default)s; FastSAM-x uses 26)")
    model.add_argument("--weights", help="initial weights (FastSAM-s, FastSAM-x, a .pt or .safetensors): fine-tuning; sets the architecture")
    model.add_argument("--freeze-backbone", action="store_true", help="freeze layers 0-9 (the backbone) when fine-tuning")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=100, help="(default: %(default)s)")
    add_batch_size_option(opt, default=8, help="images per batch per process (default: %(default)s)", old=True)
    opt.add_argument("--nominal-batch", type=int, default=64, help="gradients are accumulated up to this many images (default: %(default)s)")
    opt.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd", help="(default: %(default)s)")
    opt.add_argument("--lr", type=float, help="initial learning rate (default: 0.01 for sgd, 0.002 for adamw)")
    opt.add_argument("--lrf", type=float, default=0.01, help="final learning rate as a fraction of --lr (default: %(default)s)")
    opt.add_argument("--cos-lr", action="store_true", help="cosine instead of linear decay")
    opt.add_argument("--warmup-epochs", type=float, default=3.0, help="(default: %(default)s)")
    opt.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    opt.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP")
    opt.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    opt.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms (slower)")

    run_group = parser.add_argument_group("run")
    run_group.add_argument("--device", default="auto", help="auto, cpu, cuda (under torchrun: the local rank's GPU) (default: %(default)s)")
    add_out_option(run_group, default="runs/train", help="output folder (default: %(default)s)")
    run_group.add_argument("--resume", help="resume the run in this folder (its config.json and weights/last_state.pt)")
    run_group.add_argument("--val-interval", type=int, default=1, help="validate every N epochs (default: %(default)s)")
    run_group.add_argument("--max-steps", type=int, help="stop after this many batches (smoke tests)")
    add_quiet_option(run_group, old=True)
    add_debug_option(parser)
    parser.set_defaults(run=run)


def config_from_args(args: argparse.Namespace):
    from ..training.augment import Augment
    from ..training.trainer import TrainConfig
    from dataclasses import asdict

    if not args.resume and not args.data:
        raise UsageError("--data is required (or --resume DIR)")
    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers must be at least 0, got {args.workers}")
    augment = Augment.off() if args.no_augment else Augment()
    if args.mosaic is not None:
        if not 0.0 <= args.mosaic <= 1.0:
            raise UsageError(f"--mosaic is a probability in [0, 1], got {args.mosaic}")
        augment.mosaic = args.mosaic
    if args.close_mosaic < 0:
        raise UsageError(f"--close-mosaic must be >= 0, got {args.close_mosaic}")
    return TrainConfig(
        data=args.data or "", format=args.format, val=args.val, val_format=args.val_format, scale=args.scale,
        reg_max=args.reg_max, weights=args.weights, imgsz=args.imgsz, epochs=args.epochs, batch=args.batch_size,
        nominal_batch=args.nominal_batch, lr=args.lr, lrf=args.lrf, schedule="cosine" if args.cos_lr else "linear",
        optimizer=args.optimizer, warmup_epochs=args.warmup_epochs, workers=args.workers, device=args.device,
        out=args.out, resume=args.resume, freeze_backbone=args.freeze_backbone, seed=args.seed,
        deterministic=args.deterministic, amp=not args.no_amp, sync_bn=args.sync_bn, val_interval=args.val_interval,
        max_steps=args.max_steps, progress=not args.quiet,
        augment=asdict(augment), close_mosaic=args.close_mosaic,
    )


def run(args: argparse.Namespace) -> int:
    from ..training.trainer import train

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format="%(message)s")
    summary = train(config_from_args(args))
    _leave_process_group()  # success path only: a collective teardown after one rank failed could hang the others
    if rank == 0:
        weights = Path(summary["out"]) / "weights"
        print(f"done: {summary['epochs_done']} epochs; EMA weights {weights / 'last.safetensors'}"
              + (f", best mask AP {summary['best_ap']:.4f} ({weights / 'best.safetensors'})" if summary["best_ap"] >= 0 else ""))
    return 0


def _leave_process_group() -> None:
    """Under torchrun, shut the process group down before the interpreter exits: gloo's worker threads still
    running at interpreter shutdown abort it with SIGABRT ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """``python -m fastsam.cli.train ...`` (the same options as ``fastsam train``; handy under torchrun)."""
    parser = argparse.ArgumentParser(prog="fastsam")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", *(argv if argv is not None else __import__("sys").argv[1:])])
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
