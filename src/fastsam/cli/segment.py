"""``fastsam segment``: segment everything in images, write overlays, JSON and mask PNGs."""

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

FORMATS = ("overlay", "json", "png", "polygons", "sam")


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
        "(one mask per file), OUT/<stem>_polygons.json and OUT/<stem>_sam.json (segment-anything's generator "
        "records, COCO RLE), as chosen with --format (<stem>_<ext> when two inputs "
        "share a stem). Images are decoded in "
        "background threads and outputs written while the network runs. A bad image is reported, logged to "
        "OUT/errors.jsonl and skipped; the exit code is 1 if any image failed. "
        "Videos (VIDEO.mp4, rtsp://... or http://... streams, webcam:0) give an overlay video "
        "(--out out.mp4, or OUT/<name>.mp4) and, with --format overlay,json, one JSON line per frame "
        "(<name>.jsonl); prompts apply to every frame (needs the video extra: PyAV).",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders, glob patterns, videos, stream URLs, webcam:N"
    )
    add_out_option(parser, type=Path, default=Path("out"),
                   help="output folder, or a video file for one video (default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--format",
        type=format_list(FORMATS),
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
    add_clip_checkpoint_option(prompts, "--text")
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
    tiling = parser.add_argument_group("tiling", "small objects in big photos (see the README, 'Big photos')")
    tiling.add_argument(
        "--tiles",
        help="also run the network on overlapping tiles and merge the masks: N tiles along the longer side, or auto "
        "(tiles of at most --imgsz pixels, seen at full detail); 1 or unset: the whole image only",
    )  # fmt: skip
    tiling.add_argument("--tile-overlap", type=float, default=0.2, metavar="FRACTION",
                        help="fraction of a tile shared with its neighbour, in [0, 0.9) (default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--skip-existing",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="skip images whose outputs are all already in --out (resume an interrupted run) (default: off)",
    )
    add_workers_option(parser, "image decoding threads")
    video = parser.add_argument_group("video")
    video.add_argument("--max-frames", type=int, help="stop a video, stream or webcam after this many frames")
    video.add_argument(
        "--show", action="store_true", help="show the overlay in a preview window while it runs (needs OpenCV with a GUI)"
    )
    add_quiet_option(parser)
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
    names = {"overlay": f"{stem}.png", "json": f"{stem}.json", "png": stem, "polygons": f"{stem}_polygons.json",
             "sam": f"{stem}_sam.json"}  # fmt: skip
    return [args.out / names[f] for f in args.format]


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import ExitStack

    from tqdm import tqdm

    from ..io import list_images
    from ..pipeline import segment_stream
    from ..video.sources import is_video_source

    check_segment_args(args)  # before any image is read
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
    args.text_scorer = _text_scorer(args, str(model.device)) if args.text else None
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
    errors_path = args.out / "errors.jsonl"  # this run's failures only, created at the first one
    errors_path.unlink(missing_ok=True)  # an earlier run's list would mislead
    failed, total_masks, writes = 0, 0, []
    start = time.perf_counter()
    bar = tqdm(total=len(todo), unit="img", disable=args.quiet or len(todo) < 2, file=sys.stderr)
    settings = {"imgsz": args.imgsz, "conf": args.conf, "iou": args.iou, "max_det": args.max_det, "retina": args.retina}
    # Outputs are written in a background thread while the network works on the next batch.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastsam-write") as writer, ExitStack() as logs:
        log = None

        def fail(path: Path, stage: str, message: str) -> None:
            nonlocal failed, log
            failed += 1
            if log is None:
                log = logs.enter_context(open(errors_path, "w"))
            log.write(json.dumps({"path": str(path), "stage": stage, "error": message}) + "\n")
            log.flush()
            bar.write(f"skipped {path}: {message}", file=sys.stderr)

        stream = _tiled_stream(todo, model, args, settings) if args.tiles is not None else \
            segment_stream(todo, model, batch_size=args.batch_size, workers=args.workers, **settings)  # fmt: skip
        for outcome in stream:
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
    elapsed = time.perf_counter() - start
    done = len(todo) - failed
    print(
        f"segmented {done} image(s), {total_masks} mask(s) in {elapsed:.1f} s ({done / max(elapsed, 1e-9):.2f} images/s), "
        f"wrote {args.out}" + (f"; skipped {skipped} already done" if skipped else "")
        + (f"; {failed} failed (see {errors_path})" if failed else ""),
        file=sys.stderr,
    )  # fmt: skip
    return 1 if failed or failed_videos else 0


def check_segment_args(args: argparse.Namespace) -> None:
    """Every mistake that does not depend on the image, as a :class:`UsageError` (exit 2) before any image is read."""
    check_inference_args(args)
    if args.labels is not None:
        if args.points is None:
            raise UsageError("--labels needs --points")
        if len(args.labels) != len(args.points):
            raise UsageError(f"--labels has {len(args.labels)} label(s) for {len(args.points)} point(s) of --points")
    for box in args.boxes or []:
        if args.box_format == "xywh":
            if box[2] <= 0 or box[3] <= 0:
                raise UsageError(f"--boxes {','.join(f'{v:g}' for v in box)}: width and height must be positive (xywh)")
        elif box[2] <= box[0] or box[3] <= box[1]:
            raise UsageError(f"--boxes {','.join(f'{v:g}' for v in box)}: x2 must exceed x1 and y2 exceed y1 (xyxy "
                             "corners; --box-format xywh for corner + size)")  # fmt: skip
    if any(not t.strip() for t in args.text or []):
        raise UsageError("--text is empty")
    if getattr(args, "clip_checkpoint", None) is not None and not args.text:
        raise UsageError("--clip-checkpoint is for --text prompts: without --text no CLIP is used")
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha is an opacity in [0, 1], got {args.alpha}")
    if args.tiles is not None and args.tiles != "auto":
        try:
            args.tiles = int(args.tiles)
        except ValueError:
            raise UsageError(f"--tiles is auto or a number of tiles along the longer side, got {args.tiles!r}") from None
        if args.tiles < 1:
            raise UsageError(f"--tiles must be at least 1 (1: no tiles), got {args.tiles}")
    if not 0.0 <= args.tile_overlap < 0.9:
        raise UsageError(f"--tile-overlap is a fraction of a tile in [0, 0.9), got {args.tile_overlap}")
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames must be at least 1, got {args.max_frames}")


def _tiled_stream(paths: list[Path], model, args: argparse.Namespace, settings: dict):
    """One image at a time through :meth:`FastSAM.predict` with tiles (its tiles are batched), as pipeline outcomes."""
    from ..errors import ImageLoadError
    from ..pipeline import Outcome

    for path in paths:
        try:
            [result] = model.predict(path, **settings, batch_size=args.batch_size, tiles=args.tiles,
                                     tile_overlap=args.tile_overlap)  # fmt: skip
        except ImageLoadError as err:
            yield Outcome(path, error=str(err), stage="load")
        except (ValueError, RuntimeError) as err:
            yield Outcome(path, error=f"{type(err).__name__}: {err}", stage="segment")
        else:
            yield Outcome(path, result=result)


def _text_scorer(args: argparse.Namespace, device: str):
    """CLIP for --text, loaded now so that missing weights stop the run before any image is segmented."""
    return load_clip(args.clip_checkpoint, device)


def _apply_prompts(result, args: argparse.Namespace):
    from ..predictor import SegmentedImage

    boxes = args.boxes
    if boxes is not None and args.box_format == "xywh":
        boxes = [[x, y, x + w, y + h] for x, y, w, h in boxes]
    session = SegmentedImage(result, getattr(args, "text_scorer", None))
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
    if "sam" in args.format:  # SamAutomaticMaskGenerator.generate's records (no logits here: stability_score null)
        (out / f"{stem}_sam.json").write_text(json.dumps(result.to_sam_records(output_mode="coco_rle")))
