"""``fastsam track``: masks with identities through videos, streams and webcams; or prompted objects, followed."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .common import (
    UsageError,
    add_debug_option,
    add_inference_options,
    add_model_options,
    add_out_option,
    add_quiet_option,
    check_inference_args,
    default_batch_size,
    format_list,
    model_from_args,
)
from .frames import write_behind
from .segment import _boxes, _labels, _points

FORMATS = ("overlay", "json", "mots", "ytvis", "davis")
DEFAULT_FORMATS = ("overlay", "json", "mots", "ytvis")


def _frame_index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--prompt-frame {text!r} is not a frame number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--prompt-frame {value}: frames are numbered from 0")
    return value


class _PromptPart(argparse.Action):
    """``--prompt-frame K`` opens a group of prompts for frame K; ``--points``/``--labels``/``--boxes``/``--text``
    that follow it belong to it (before any ``--prompt-frame``: to frame 0)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        groups: list[dict[str, Any]] = list(getattr(namespace, "prompt_groups", None) or [])
        if self.dest == "frame":
            groups.append({"frame": values})
        else:
            if not groups:
                groups.append({"frame": 0})
            group = groups[-1]
            if self.dest == "texts":
                group.setdefault("texts", []).append(values)
            elif self.dest in group:
                parser.error(f"{option_string} given twice for --prompt-frame {group['frame']}: give all of them in one")
            else:
                group[self.dest] = values
        namespace.prompt_groups = groups


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "track",
        help="track objects through videos: stable ids, or prompt once and follow",
        description="Segment every frame of videos, streams (rtsp://, http://) or webcams (webcam:0) in everything "
        "mode and give every mask a track id that stays the same from frame to frame (mask-level ByteTrack: mask "
        "IoU with Kalman-predicted motion, high- then low-score matching, lost tracks kept --track-buffer frames). "
        "With --points/--boxes/--text (on frame 0, or on the frame named by the --prompt-frame before them; "
        "--prompt-frame may be repeated, or use --prompts FILE.json), only the prompted objects are followed, one "
        "id each, and reported lost while not found. Writes, per video, OUT/<name>.mp4 (overlay coloured by id, "
        "ids drawn), <name>.jsonl (one line per frame, masks as COCO RLE with track_id), <name>.mots.txt "
        "(MOTS challenge), <name>.ytvis.json (YouTube-VIS) and, with --format davis, <name>/00000.png ... (DAVIS "
        "palette PNGs of the followed objects). Needs the video extra.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="videos, stream URLs, webcam:N")
    add_out_option(parser, type=Path, default=Path("out"),
                   help="output folder, or a video file (out.mp4) for one input (default: %(default)s)")  # fmt: skip
    parser.add_argument("--format", type=format_list(FORMATS), default=None,
                        help=f"comma-separated outputs among {', '.join(FORMATS)} (default: {','.join(DEFAULT_FORMATS)})")  # fmt: skip
    prompts = parser.add_argument_group("prompt once, follow")
    prompts.add_argument("--prompt-frame", dest="frame", type=_frame_index, action=_PromptPart, metavar="K",
                         help="the frame the prompts after this option apply to (repeatable; default 0)")  # fmt: skip
    prompts.add_argument("--points", dest="points", type=_points, action=_PromptPart,
                         help='points "x,y;x,y" in pixels: one object per foreground point')  # fmt: skip
    prompts.add_argument("--labels", dest="labels", type=_labels, action=_PromptPart,
                         help='one label per point, "1,0": 1 foreground, 0 background (default: all 1)')  # fmt: skip
    prompts.add_argument("--boxes", dest="boxes", type=_boxes, action=_PromptPart,
                         help='boxes "x1,y1,x2,y2;..." in pixels (see --box-format): one object each')  # fmt: skip
    prompts.add_argument("--box-format", choices=("xyxy", "xywh"), default="xyxy",
                         help="xyxy corners or xywh corner + size (default: %(default)s)")  # fmt: skip
    prompts.add_argument("--text", dest="texts", action=_PromptPart,
                         help="a text query (CLIP): one object; repeat for several")  # fmt: skip
    prompts.add_argument("--prompts", dest="prompts_file", type=Path, metavar="FILE",
                         help='JSON list of per-frame prompts: [{"frame": 0, "points": [[x, y]], "labels": [1], '
                         '"boxes": [[x1, y1, x2, y2]], "texts": ["a dog"]}, ...]')  # fmt: skip
    prompts.add_argument("--clip-checkpoint", type=Path, metavar="PATH",
                         help="local weights of the CLIP model used by --text (see fastsam segment --help)")  # fmt: skip
    tracking = parser.add_argument_group("tracking")
    tracking.add_argument("--track-low", type=float, default=0.1,
                          help="masks scoring between this and --conf only continue existing tracks (ByteTrack's "
                          "second stage); the network runs at this threshold (default: %(default)s)")  # fmt: skip
    tracking.add_argument("--track-buffer", type=int, default=30,
                          help="frames a lost track is kept for recovery; followed objects are never dropped "
                          "(default: %(default)s)")  # fmt: skip
    tracking.add_argument("--min-hits", type=int, default=2,
                          help="frames in a row that confirm a new track (default: %(default)s)")  # fmt: skip
    tracking.add_argument("--match-iou", type=float, default=0.2,
                          help="least mask/box similarity that continues a track (default: %(default)s)")  # fmt: skip
    render = parser.add_argument_group("overlay")
    render.add_argument("--alpha", type=float, default=0.5, help="mask opacity (default: %(default)s)")
    render.add_argument("--contours", action=argparse.BooleanOptionalAction, default=True,
                        help="draw mask outlines (default: on)")  # fmt: skip
    render.add_argument("--ids", action=argparse.BooleanOptionalAction, default=True,
                        help="write each mask's id on it (default: on)")  # fmt: skip
    add_model_options(parser)
    add_inference_options(parser, batch_size=None)
    video = parser.add_argument_group("video")
    video.add_argument("--max-frames", type=int, help="stop after this many frames")
    video.add_argument("--show", action="store_true", help="show the overlay in a window while it runs (OpenCV GUI)")
    add_quiet_option(parser)
    add_debug_option(parser)
    parser.set_defaults(run=run, prompt_groups=None)


def check_track_args(args: argparse.Namespace) -> None:
    """Mistakes that do not depend on the video: :class:`UsageError` (exit 2) before anything is read."""
    check_inference_args(args)
    if not 0.0 <= args.track_low <= args.conf:
        raise UsageError(f"--track-low must be in [0, --conf ({args.conf})], got {args.track_low}")
    if args.track_buffer < 0 or args.min_hits < 1:
        raise UsageError("--track-buffer must be >= 0 and --min-hits >= 1")
    if not 0.0 < args.match_iou <= 1.0:
        raise UsageError(f"--match-iou must be in (0, 1], got {args.match_iou}")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha is an opacity in [0, 1], got {args.alpha}")
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames must be at least 1, got {args.max_frames}")
    for group in args.prompt_groups or []:
        where = f"--prompt-frame {group['frame']}"
        if "labels" in group and "points" not in group:
            raise UsageError(f"{where}: --labels needs --points")
        if "labels" in group and len(group["labels"]) != len(group["points"]):
            raise UsageError(f"{where}: {len(group['labels'])} label(s) for {len(group['points'])} point(s)")
        if not any(k in group for k in ("points", "boxes", "texts")):
            raise UsageError(f"{where} has no --points, --boxes or --text after it")
        for box in group.get("boxes", []):
            if args.box_format == "xywh":
                if box[2] <= 0 or box[3] <= 0:
                    raise UsageError(f"--boxes {box}: width and height must be positive (xywh)")
            elif box[2] <= box[0] or box[3] <= box[1]:
                raise UsageError(f"--boxes {box}: x2 must exceed x1 and y2 exceed y1 (xyxy)")
    if args.prompts_file is not None and not args.prompts_file.is_file():
        raise UsageError(f"--prompts {args.prompts_file}: file not found")


def frame_prompts(args: argparse.Namespace) -> list:
    """The :class:`~fastsam.video.follow.FramePrompt` list of the command line and ``--prompts`` file."""
    from ..video.follow import FramePrompt, load_prompts

    prompts = []
    for group in args.prompt_groups or []:
        boxes = group.get("boxes")
        if boxes is not None and args.box_format == "xywh":
            boxes = [[x, y, x + w, y + h] for x, y, w, h in boxes]
        prompts.append(FramePrompt(group["frame"], group.get("points"), group.get("labels"), boxes,
                                   group.get("texts")))  # fmt: skip
    if args.prompts_file is not None:
        try:
            prompts += load_prompts(args.prompts_file)
        except ValueError as err:
            raise UsageError(str(err)) from None
    return prompts


def output_paths(args: argparse.Namespace, source: str, several: bool, formats: list[str]) -> dict[str, Path]:
    """Where one video's outputs go (see the command's description)."""
    from ..video import VIDEO_EXTENSIONS
    from .video import _source_name

    out: Path = args.out
    if not several and out.suffix.lower() in VIDEO_EXTENSIONS:
        folder, name, video = out.parent, out.stem, out
    else:
        folder, name = out, _source_name(source)
        video = folder / f"{name}.mp4"
    paths = {"overlay": video, "json": folder / f"{name}.jsonl", "mots": folder / f"{name}.mots.txt",
             "ytvis": folder / f"{name}.ytvis.json", "davis": folder / name}  # fmt: skip
    return {f: paths[f] for f in formats}


def run(args: argparse.Namespace) -> int:
    from ..errors import VideoError
    from ..video import is_video_source

    check_track_args(args)
    formats = args.format or list(DEFAULT_FORMATS)
    prompts = frame_prompts(args)
    if "davis" in formats and not prompts:
        raise UsageError("--format davis writes the followed objects: give prompts (--points, --boxes, --text)")
    not_videos = [i for i in args.inputs if not is_video_source(i)]
    if not_videos:
        raise UsageError(f"{not_videos[0]} is not a video, stream URL or webcam:N (fastsam segment takes images)")
    failed = 0

    def report(source: str, err: Exception) -> None:
        nonlocal failed
        failed += 1
        print(f"error: {source}: {err}" if source not in str(err) else f"error: {err}", file=sys.stderr)

    sources = []
    for source in args.inputs:  # files that cannot be tracked fail before the model is loaded
        try:
            _precheck(source, prompts)
            sources.append(source)
        except (VideoError, ValueError) as err:
            report(source, err)
    if not sources:
        return 1
    model = model_from_args(args)
    if args.batch_size is None:
        args.batch_size = default_batch_size(model.device.type)
    text_scorer = None
    if any(p.texts for p in prompts):
        from .segment import _text_scorer

        text_scorer = _text_scorer(args, str(model.device))
    for source in sources:
        outputs = output_paths(args, source, len(args.inputs) > 1, formats)
        try:
            _track_video(args, source, outputs, model, prompts, text_scorer)
        except (VideoError, ValueError) as err:  # e.g. a prompt frame found to be beyond the video's end
            report(source, err)
    return 1 if failed else 0


def _precheck(source: str, prompts: list) -> None:
    """Open a video file (not a live source: it is opened once, when tracked) and check the prompts against its
    size and length; raises ``VideoError`` or ``ValueError``."""
    from ..video import VideoReader, is_live_source
    from ..video.follow import VideoTracker

    if is_live_source(source):
        return
    with VideoReader(source) as reader:
        _check_prompts(reader, prompts)
        VideoTracker((reader.height, reader.width), None, prompts)  # checks each point and box against the frame


def _check_prompts(reader: Any, prompts: list) -> None:
    known = reader.frame_count
    late = [p.frame for p in prompts if known is not None and p.frame >= known]
    if late:
        raise ValueError(f"--prompt-frame {late[0]} is beyond the end of the video ({known} frames, 0-{known - 1})")


def _track_video(args: argparse.Namespace, source: str, outputs: dict[str, Path], model: Any, prompts: list,
                 text_scorer: Any) -> None:  # fmt: skip
    from tqdm import tqdm

    from ..video import (
        FrameFeed,
        VideoReader,
        is_live_source,
        segment_frames,
    )
    from ..video.follow import VideoTracker
    from ..video.tracking import TrackerConfig
    from .video import _Preview, _source_name

    config = TrackerConfig(high_score=args.conf, low_score=args.track_low, match_iou=args.match_iou,
                           track_buffer=args.track_buffer, min_hits=args.min_hits)  # fmt: skip
    reader = VideoReader(source)
    try:
        _check_prompts(reader, prompts)
        tracker = VideoTracker((reader.height, reader.width), config, prompts, text_scorer)  # checks the prompts
    except BaseException:
        reader.close()
        raise
    live = is_live_source(source)
    settings = {"imgsz": args.imgsz, "conf": args.track_low, "iou": args.iou, "max_det": args.max_det,
                "retina": args.retina}  # fmt: skip
    feed = FrameFeed(reader, capacity=2 * args.batch_size, live=live, max_frames=args.max_frames)
    known = reader.frame_count
    total = known if args.max_frames is None else min(known or args.max_frames, args.max_frames)
    bar = tqdm(total=total, unit="frame", disable=args.quiet, file=sys.stderr, desc=_source_name(source))
    sinks = _open_sinks(outputs, reader, _source_name(source))
    preview = _Preview(source) if args.show else None
    counts = {"frames": 0, "masks": 0}
    start = time.perf_counter()

    def tracked_frames():
        for frame, result in segment_frames(feed, model, args.batch_size, **settings):
            tracked = tracker.step(frame, result)
            counts["frames"] += 1
            counts["masks"] += len(tracked.result)
            yield tracked

    try:
        interrupted = write_behind(tracked_frames(), lambda tracked: _emit(tracked, args, sinks, preview),
                                   2 * args.batch_size, bar, "fastsam-track-write")  # fmt: skip
    finally:
        feed.close()
        reader.close()
        bar.close()
        for sink in sinks.values():
            sink.close()
        if preview is not None:
            preview.close()
    elapsed = time.perf_counter() - start
    frames, masks = counts["frames"], counts["masks"]
    note = f", {feed.dropped} dropped to keep up with the live source" if feed.dropped else ""
    note += ", stopped by the user" if interrupted else ""
    what = f"{len(tracker.objects)} followed object(s)" if tracker.following else f"{tracker.tracker.started} track(s)"
    print(f"{source}: {frames} frame(s), {masks} tracked mask(s), {what} in {elapsed:.1f} s "
          f"({frames / max(elapsed, 1e-9):.2f} FPS){note}; wrote {', '.join(str(p) for p in outputs.values())}",
          file=sys.stderr)  # fmt: skip
    if interrupted and not live:
        raise KeyboardInterrupt
    if not interrupted:
        tracker.finish()  # a prompt frame the video never reached: an error, now that the files are complete


def _open_sinks(outputs: dict[str, Path], reader: Any, name: str) -> dict[str, Any]:
    """One writer per output format (each with ``write``-like use in :func:`_emit` and ``close``)."""
    from ..video import VideoWriter
    from ..video.davis import DavisWriter
    from ..video.mots import MotsWriter
    from ..video.ytvis import YtvisWriter

    sinks: dict[str, Any] = {}
    try:
        for fmt, path in outputs.items():
            if fmt == "overlay":
                sinks[fmt] = VideoWriter(path, reader.fps, reader.width, reader.height)
            elif fmt == "json":
                path.parent.mkdir(parents=True, exist_ok=True)
                sinks[fmt] = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by the caller
            elif fmt == "mots":
                sinks[fmt] = MotsWriter(path)
            elif fmt == "ytvis":
                sinks[fmt] = YtvisWriter(path, name, (reader.height, reader.width))
            elif fmt == "davis":
                sinks[fmt] = DavisWriter(path)
    except BaseException:
        for sink in sinks.values():
            sink.close()
        raise
    return sinks


def _emit(tracked: Any, args: argparse.Namespace, sinks: dict[str, Any], preview: Any) -> None:
    """Write one frame's outputs (runs in the writer thread, in frame order)."""
    import json

    from ..video.track_render import render_tracks

    result, ids, index = tracked.result, tracked.ids, tracked.frame.index
    if "overlay" in sinks or preview is not None:
        windows = result.mask_windows()
        image = render_tracks(
            tracked.frame.image, windows if windows is not None else result.masks, ids, alpha=args.alpha,
            contours=args.contours, labels=args.ids, boxes=result.boxes,
            lost=[(o.object_id, o.box) for o in tracked.lost],
        )  # fmt: skip
        if "overlay" in sinks:
            sinks["overlay"].write(image)
        if preview is not None:
            preview.show(image)
    if "json" in sinks:
        sinks["json"].write(json.dumps(tracked.to_record()) + "\n")
    for fmt in ("mots", "ytvis", "davis"):
        if fmt in sinks:
            sinks[fmt].write(index, ids, result)
