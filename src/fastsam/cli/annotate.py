"""``fastsam annotate``: pre-label a folder of photos as a COCO or YOLO-seg dataset (everything mode + CLIP classes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (
    UsageError,
    add_clip_checkpoint_option,
    add_debug_option,
    add_inference_options,
    add_model_options,
    add_out_option,
    add_quiet_option,
    add_workers_option,
    check_inference_args,
    default_batch_size,
    format_list,
    load_clip,
    model_from_args,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "annotate",
        help="pre-label images as a COCO or YOLO-seg dataset",
        description="Segment every object in the images (everything mode) and write a training dataset to --out: "
        "OUT/images/ and OUT/annotations.json (COCO instances: RLE or polygons, bbox, area, score) or OUT/labels/ and "
        "OUT/data.yaml (YOLO-seg). With --classes every mask is scored against the class names with CLIP (one batch "
        "per image, plus generic background prompts: masks that match no class are dropped) and overlapping masks of "
        "one class are resolved; without it every mask is one class-agnostic 'object'. Runs are resumable: images "
        "already in OUT are not segmented again. A bad image is logged to OUT/errors.jsonl and skipped; the exit code "
        "is 1 if any image failed. The dataset trains as is: fastsam train --data OUT/annotations.json (or OUT for "
        "YOLO).",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, glob patterns")
    add_out_option(parser, type=Path, help="the dataset folder to write (required)")
    parser.add_argument("--format", type=format_list(("coco", "yolo")), default=["coco"],
                        help="dataset format: coco, yolo, or both as coco,yolo (default: coco)")  # fmt: skip
    labels = parser.add_argument_group("labels")
    labels.add_argument("--classes", help='comma-separated class names scored with CLIP, e.g. "person,car,dog" '
                        "(default: one class-agnostic 'object' category, no CLIP)")  # fmt: skip
    labels.add_argument("--text-threshold", type=float, default=0.25,
                        help="least CLIP probability (softmax over the classes and the background prompts) a mask's "
                        "class needs (default: %(default)s)")  # fmt: skip
    labels.add_argument("--min-area", type=int, default=100,
                        help="masks with fewer pixels are left out (default: %(default)s)")  # fmt: skip
    labels.add_argument("--overlap", choices=("auto", "resolve", "keep"), default="auto",
                        help="resolve: masks of one class made disjoint (parts of a kept mask dropped); keep: masks "
                        "as predicted; auto: resolve with --classes, keep without (default: %(default)s)")  # fmt: skip
    labels.add_argument("--segmentation", choices=("rle", "polygons"), default="rle",
                        help="COCO masks as compressed RLE (exact) or polygons (holes filled) (default: %(default)s)")  # fmt: skip
    add_clip_checkpoint_option(labels, "--classes")
    add_model_options(parser)
    add_inference_options(parser, batch_size=None)
    add_workers_option(parser, "image decoding threads")
    add_quiet_option(parser)
    add_debug_option(parser)
    parser.set_defaults(run=run)


def check_annotate_args(args: argparse.Namespace) -> None:
    """Every mistake that does not depend on the images, as a :class:`UsageError` (exit 2)."""
    from ..labelling.classes import parse_classes

    check_inference_args(args)
    if args.out is None:
        raise UsageError("--out DATASET is required: the folder the dataset is written to")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file: give a folder for the dataset")
    args.class_names = []
    if args.classes is not None:
        try:
            args.class_names = parse_classes(args.classes)
        except ValueError as err:
            raise UsageError(str(err)) from None
    if not 0.0 <= args.text_threshold <= 1.0:
        raise UsageError(f"--text-threshold is a probability in [0, 1], got {args.text_threshold}")
    if args.min_area < 0:
        raise UsageError(f"--min-area must be at least 0 pixels, got {args.min_area}")
    if args.clip_checkpoint is not None and not args.class_names:
        raise UsageError("--clip-checkpoint is for --classes: without classes no CLIP is used")
    if args.segmentation != "rle" and "coco" not in args.format:
        raise UsageError("--segmentation is for --format coco")


def _text_scorer(args: argparse.Namespace, device: str):
    """CLIP for --classes, loaded now so that missing weights stop the run before any image is segmented."""
    return load_clip(args.clip_checkpoint, device)


def run(args: argparse.Namespace) -> int:
    from ..io import list_images
    from ..labelling.annotate import AnnotateSettings, annotate_images
    from ..labelling.dataset import Journal

    check_annotate_args(args)  # before any image is read
    paths, problems = list_images(args.inputs)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not paths:
        print("error: no images to annotate", file=sys.stderr)
        return 1
    settings = AnnotateSettings(
        classes=tuple(args.class_names), text_threshold=args.text_threshold, min_area=args.min_area,
        overlap=args.overlap, model=str(args.model), imgsz=args.imgsz, conf=args.conf, iou=args.iou,
        max_det=args.max_det, retina=args.retina,
    )  # fmt: skip
    Journal.check(args.out, settings.fingerprint())  # a folder made with other settings: refused before any loading
    model = model_from_args(args)
    scorer = _text_scorer(args, str(model.device)) if settings.classes else None
    batch_size = args.batch_size or default_batch_size(model.device.type)
    summary = annotate_images(
        paths, args.out, model, settings, scorer=scorer, formats=args.format,
        segmentation=args.segmentation, batch_size=batch_size, workers=args.workers, progress=not args.quiet,
    )  # fmt: skip
    counts = ", ".join(f"{n} {name}" for name, n in sorted(summary.instances.items())) or "no instances"
    print(
        f"annotated {summary.annotated} image(s) in {summary.seconds:.1f} s"
        + (f", {summary.resumed} already done" if summary.resumed else "")
        + f"; dataset: {summary.annotated + summary.resumed} image(s), {counts}; wrote "
        + ", ".join(str(p) for p in summary.written)
        + (f"; {summary.failed} failed (see {summary.errors})" if summary.failed else ""),
        file=sys.stderr,
    )
    return 1 if summary.failed else 0
