"""``fastsam convert``: official .pt checkpoint -> our .safetensors format."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_debug_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "convert",
        help="convert an official FastSAM .pt checkpoint to .safetensors",
        description="Read an official FastSAM/ultralytics .pt checkpoint safely (no pickle code runs) and write "
        "its weights as .safetensors with the architecture and the source's SHA-256 as metadata.",
    )
    parser.add_argument("src", type=Path, help="the .pt checkpoint")
    parser.add_argument("dst", type=Path, nargs="?", help="output file (default: SRC with .safetensors)")
    add_debug_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import convert_checkpoint, load_safetensors

    dst = args.dst or args.src.with_suffix(".safetensors")
    path = convert_checkpoint(args.src, dst)
    _, meta = load_safetensors(path)
    print(f"wrote {path} (YOLOv8-seg-{meta['scale']}, nc {meta['nc']}, reg_max {meta['reg_max']}, "
          f"source sha256 {meta['source_sha256'][:16]}...)")
    return 0
