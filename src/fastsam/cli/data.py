"""``fastsam data convert``: COCO / SA-1B / YOLO-seg training data -> the fast sharded format ``fastsam train`` reads."""

from __future__ import annotations

import argparse
import logging
import os

from ..training.records import DATA_FORMATS
from .common import UsageError, add_debug_option, add_quiet_option, add_workers_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "data",
        help="prepare training data (convert to the fast sharded format)",
        description="Tools for training data. 'fastsam data convert SRC OUT' reads a COCO instances JSON, an SA-1B "
        "folder or a YOLO-seg folder and writes shards (images, optionally downscaled, with their masks as COCO RLE "
        "and their boxes) that 'fastsam train --data OUT' reads quickly.",
    )
    def usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(run=usage)
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    convert = actions.add_parser(
        "convert",
        help="convert COCO / SA-1B / YOLO-seg data to shards",
        description="Convert training data to the sharded format. Unreadable images and unusable annotations are "
        "counted by reason, reported and skipped; the conversion goes on.",
    )
    convert.add_argument("src", help="COCO instances JSON, SA-1B folder, YOLO-seg folder (or a converted folder)")
    convert.add_argument("out", help="output folder (created)")
    convert.add_argument("--format", choices=DATA_FORMATS, default="auto", help="format of SRC (default: %(default)s, detected)")
    convert.add_argument("--max-side", type=int, help="downscale images (and masks) whose longest side exceeds this many pixels "
                         "(default: keep the size; e.g. 1024 for SA-1B at the paper's training size)")
    convert.add_argument("--quality", type=int, default=95, help="JPEG quality of re-encoded images (default: %(default)s)")
    convert.add_argument("--shard-size", type=int, default=1000, help="images per shard (default: %(default)s)")
    add_workers_option(convert, "conversion processes; 0: in this process")
    add_quiet_option(convert, old=True)
    add_debug_option(convert)
    convert.set_defaults(run=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from ..training.data import load_records
    from ..training.shards import convert_dataset

    if args.max_side is not None and args.max_side < 32:
        raise UsageError(f"--max-side must be at least 32, got {args.max_side}")
    if not 1 <= args.quality <= 100:
        raise UsageError(f"--quality must be in 1..100, got {args.quality}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    records, report = load_records(args.src, args.format)
    if not records:
        raise ValueError(f"no usable image in {args.src} ({report.summary()})")
    index = convert_dataset(
        records, args.out, report, max_side=args.max_side, quality=args.quality, per_shard=args.shard_size,
        workers=args.workers, progress=not args.quiet, source={"path": os.path.abspath(args.src), "format": args.format},
    )
    print(f"converted {args.src} -> {args.out}: {len(index['shards'])} shard(s); {report.summary()}")
    skipped_images, skipped_annotations = sum(report.skipped_images.values()), sum(report.skipped_annotations.values())
    if skipped_images or skipped_annotations:
        print(f"skipped {skipped_images} image(s) and {skipped_annotations} annotation(s) (reasons above; counts in "
              f"{os.path.join(args.out, 'fastsam-data.json')})")
    if not index["images"]:
        print("error: no image could be converted", flush=True)
        return 1
    return 0
