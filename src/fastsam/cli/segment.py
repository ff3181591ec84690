"""``fastsam segment``: segment everything in images, write overlays, JSON and mask PNGs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_debug_option, add_inference_options, add_model_options, default_batch_size, model_from_args

FORMATS = ("overlay", "json", "png", "polygons")


def _formats(text: str) -> list[str]:
    chosen = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown format {', '.join(unknown) or text!r}; choose from {', '.join(FORMATS)}")
    return chosen


def _number_groups(text: str, size: int, what: str) -> list[list[float]]:
    """Parse "a,b;c,d" into [[a, b], [c, d]] with ``size`` numbers per group."""
    groups = []
    for chunk in (c.strip() for c in text.replace(" ", "").split(";")):
        if not chunk:
            continue
        try:
            values = [float(v) for v in chunk.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} {chunk!r} is not {size} comma-separated numbers") from None
        if len(values) != size:
            raise argparse.ArgumentTypeError(f"{what} {chunk!r} has {len(values)} numbers, expected {size}")
        groups.append(values)
    return groups


def _points(text: str) -> list[list[float]]:
    return _number_groups(text, 2, "point")


def _boxes(text: str) -> list[list[float]]:
    return _number_groups(text, 4, "box")


def _labels(text: str) -> list[int]:
    try:
        labels = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"labels {text!r} must be comma-separated 0/1 values") from None
    if any(v not in (0, 1) for v in labels):
        raise argparse.ArgumentTypeError(f"labels {text!r}: use 1 for foreground and 0 for background")
    return labels


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "segment",
        help="segment everything in images",
        description="Segment every object in the given images (files, folders, globs) and write, per image, "
        "OUT/<stem>.png (overlay), OUT/<stem>.json (SA-1B schema, COCO RLE masks), OUT/<stem>/NNN.png "
        "(one mask per file) and OUT/<stem>_polygons.json, as chosen with --format. Images are decoded in "
        "background threads and outputs written while the network runs. A bad image is reported, logged to "
        "OUT/errors.jsonl and skipped; the exit code is 1 if any image failed. "
        "Videos (VIDEO.mp4, rtsp://... or http://... streams, webcam:0) give an overlay video "
        "(--out out.mp4, or OUT/<name>.mp4) and, with --format overlay,json, one JSON line per frame "
        "(<name>.jsonl); prompts apply to every frame (needs the video extra: PyAV).",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders, glob patterns, videos, stream URLs, webcam:N"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("out"), help="output folder, or a video file for one video (default: %(default)s)"
    )
    parser.add_argument(
        "--format",
        type=_formats,
        default=None,
        help=f"comma-separated outputs among {', '.join(FORMATS)} (default: overlay,json for images, overlay for videos)",
    )
    prompts = parser.add_argument_group(
        "prompts", "select masks instead of writing all of them (the network still runs once per image)"
    )
    prompts.add_argument("--points", type=_points, help='points "x,y;x,y" in pixels of the original image')
    prompts.add_argument("--labels", type=_labels, help='one label per point, "1,0": 1 foreground, 0 background (default: all 1)')
    prompts.add_argument(
        "--multimask",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="up to three masks per foreground point, part to whole (default: off)",
    )
    prompts.add_argument(
        "--point-mode",
        choices=("best", "official", "ultralytics"),
        default="best",
        help="best: one mask per foreground point; official: one merged mask as the official repo; "
        "ultralytics: all selected masks as ultralytics (default: %(default)s)",
    )
    prompts.add_argument("--boxes", type=_boxes, help='boxes "x1,y1,x2,y2;..." in pixels (see --box-format)')
    prompts.add_argument(
        "--box-format",
        choices=("xyxy", "xywh"),
        default="xyxy",
        help="xyxy corners, or xywh top-left corner + size as the official FastSAM CLI (default: %(default)s)",
    )
    prompts.add_argument("--text", action="append", help="a text query (CLIP); repeat for several, one mask each")
    prompts.add_argument("--top-k", type=int, default=1, help="masks per text query (default: %(default)s)")
    render = parser.add_argument_group("overlay")
    render.add_argument("--contours", action=argparse.BooleanOptionalAction, default=True, help="draw mask outlines (default: on)")
    render.add_argument(
        "--random-colors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a random colour per mask; --no-random-colors paints all masks one colour (default: on)",
    )
    render.add_argument("--alpha", type=float, default=0.5, help="mask opacity in the overlay (default: %(default)s)")
    add_model_options(parser)
    add_inference_options(parser, batch_size=None)
    parser.add_argument(
        "--skip-existing",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="skip images whose outputs are all already in --out (resume an interrupted run) (default: off)",
    )
    parser.add_argument("--workers", type=int, default=2, help="image decoding threads (default: %(default)s)")
    video = parser.add_argument_group("video")
    video.add_argument("--max-frames", type=int, help="stop a video, stream or webcam after this many frames")
    video.add_argument(
        "--show", action="store_true", help="show the overlay in a preview window while it runs (needs OpenCV with a GUI)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug_option(parser)
    parser.set_defaults(run=run)


def _output_stems(paths: list[Path]) -> list[str]:
    """One output name per input: the file stem, disambiguated by the extension when two stems collide."""
    counts: dict[str, int] = {}
    for path in paths:
        counts[path.stem] = counts.get(path.stem, 0) + 1
    stems, used = [], set()
    for path in paths:
        stem = path.stem if counts[path.stem] == 1 else f"{path.stem}_{path.suffix.lstrip('.')}"
        base, n = stem, 1
        while stem in used:
            n += 1
            stem = f"{base}_{n}"
        used.add(stem)
        stems.append(stem)
    return stems


def _outputs(args: argparse.Namespace, stem: str) -> list[Path]:
    """The files (or folder) that the chosen formats write for one image."""
    names = {"overlay": f"{stem}.png", "json": f"{stem}.json", "png": stem, "polygons": f"{stem}_polygons.json"}
    return [args.out / names[f] for f in args.format]


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from ..io import list_images
    from ..pipeline import segment_stream
    from ..video.sources import is_video_source

    if args.labels is not None and args.points is None:
        print("error: --labels needs --points", file=sys.stderr)
        return 2
    if args.batch_size is not None and args.batch_size < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    if args.max_frames is not None and args.max_frames < 1:
        print("error: --max-frames must be at least 1", file=sys.stderr)
        return 2
    prompted = args.points is not None or args.boxes is not None or bool(args.text)
    videos = [i for i in args.inputs if is_video_source(i)]
    images = [i for i in args.inputs if not is_video_source(i)]
    paths, problems = list_images(images) if images else ([], [])
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not paths and not videos:
        print("error: no images to segment", file=sys.stderr)
        return 1
    chosen = args.format
    args.format = chosen or ["overlay", "json"]
    stems = dict(zip(paths, _output_stems(paths)))
    todo = [p for p in paths if not (args.skip_existing and all(o.exists() for o in _outputs(args, stems[p])))]
    skipped = len(paths) - len(todo)
    if paths and not todo:
        print(f"nothing to do: all {len(paths)} image(s) already have outputs in {args.out}", file=sys.stderr)
    if not todo and not videos:
        return 0
    model = model_from_args(args)
    if args.batch_size is None:
        args.batch_size = default_batch_size(model.device.type)
    failed_videos = 0
    if videos:
        from .video import run_videos

        prompt = (lambda r: _apply_prompts(r, args)) if prompted else None
        failed_videos = run_videos(args, videos, model, prompt, formats=chosen or ["overlay"])
    if not todo:
        return 1 if failed_videos else 0
    args.out.mkdir(parents=True, exist_ok=True)
    errors_path = args.out / "errors.jsonl"
    failed, total_masks, writes = 0, 0, []
    start = time.perf_counter()
    bar = tqdm(total=len(todo), unit="img", disable=args.quiet or len(todo) < 2, file=sys.stderr)
    settings = {"imgsz": args.imgsz, "conf": args.conf, "iou": args.iou, "max_det": args.max_det, "retina": args.retina}
    # Outputs are written in a background thread while the network works on the next batch.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastsam-write") as writer, open(errors_path, "a") as log:

        def fail(path: Path, stage: str, message: str) -> None:
            nonlocal failed
            failed += 1
            log.write(json.dumps({"path": str(path), "stage": stage, "error": message}) + "\n")
            log.flush()
            bar.write(f"skipped {path}: {message}", file=sys.stderr)

        for outcome in segment_stream(todo, model, batch_size=args.batch_size, workers=args.workers, **settings):
            bar.update(1)
            if outcome.result is None:
                fail(outcome.path, outcome.stage or "load", outcome.error or "unknown error")
                continue
            result = outcome.result
            if prompted:
                try:
                    result = _apply_prompts(result, args)
                except ValueError as err:  # e.g. a point outside this image: skip it, keep going
                    fail(outcome.path, "prompt", str(err))
                    continue
            total_masks += len(result)
            writes.append(writer.submit(_write, result, args, stems[outcome.path]))
            while len(writes) > 2 * args.batch_size:  # bound the results held in memory
                writes.pop(0).result()
        for pending in writes:
            pending.result()
    bar.close()
    if failed == 0 and errors_path.stat().st_size == 0:
        errors_path.unlink()
    elapsed = time.perf_counter() - start
    done = len(todo) - failed
    print(
        f"segmented {done} image(s), {total_masks} mask(s) in {elapsed:.1f} s ({done / max(elapsed, 1e-9):.2f} images/s), "
        f"wrote {args.out}" + (f"; skipped {skipped} already done" if skipped else "")
        + (f"; {failed} failed (see {errors_path})" if failed else ""),
        file=sys.stderr,
    )  # fmt: skip
    return 1 if failed or failed_videos else 0


def _apply_prompts(result, args: argparse.Namespace):
    from ..predictor import SegmentedImage

    boxes = args.boxes
    if boxes is not None and args.box_format == "xywh":
        boxes = [[x, y, x + w, y + h] for x, y, w, h in boxes]
    session = SegmentedImage(result)
    return session.prompt(
        points=args.points,
        labels=args.labels,
        boxes=boxes,
        texts=args.text,
        multimask=args.multimask,
        mode=args.point_mode,
        top_k=args.top_k,
    )


def _write(result, args: argparse.Namespace, stem: str) -> None:
    import json

    out: Path = args.out
    if "overlay" in args.format:
        result.save_overlay(out / f"{stem}.png", alpha=args.alpha, contours=args.contours, random_colors=args.random_colors)
    if "json" in args.format:
        result.save_json(out / f"{stem}.json")
    if "png" in args.format:
        result.save_masks(out / stem)
    if "polygons" in args.format:
        rings = [[ring.round(2).tolist() for ring in mask_rings] for mask_rings in result.polygons()]
        (out / f"{stem}_polygons.json").write_text(json.dumps({"file_name": result.file_name, "polygons": rings}))
