"""``fastsam label-studio``: serve FastSAM as a Label Studio ML backend."""

from __future__ import annotations

import argparse

from .common import (
    UsageError,
    add_clip_checkpoint_option,
    add_debug_option,
    add_inference_options,
    add_model_options,
    check_inference_args,
    load_clip,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "label-studio",
        help="serve FastSAM as a Label Studio ML backend",
        description="Serve Label Studio's ML backend protocol (/health, /setup, /predict, /webhook) so that a click "
        "(KeyPointLabels; negative with the tool's modifier) or a box (RectangleLabels) gives a BrushLabels mask, and "
        "new tasks get pre-annotations. Add http://HOST:PORT under the project's Settings > Model (turn on "
        "interactive pre-annotations). Images are fetched from Label Studio with the token in LABEL_STUDIO_API_KEY "
        "at LABEL_STUDIO_URL (default: what Label Studio sends to /setup). Each image is segmented once and kept, "
        "so later clicks answer in milliseconds. Needs the 'labelstudio' extra.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 for Label Studio in "
                        "another container or machine (default: %(default)s)")  # fmt: skip
    parser.add_argument("--port", type=int, default=9090, help="port (default: %(default)s)")
    labels = parser.add_argument_group("pre-annotations")
    labels.add_argument("--prelabel", choices=("everything", "classes", "off"), default="everything",
                        help="what new tasks get: everything (every mask, labelled with the BrushLabels label "
                        "'Object' or else its first label), classes (masks scored with CLIP against the BrushLabels "
                        "label names) or off (default: %(default)s)")  # fmt: skip
    labels.add_argument("--min-area", type=int, default=100, help="masks with fewer pixels are left out (default: %(default)s)")
    labels.add_argument("--text-threshold", type=float, default=0.25,
                        help="with --prelabel classes: least CLIP probability a mask's label needs (default: %(default)s)")  # fmt: skip
    labels.add_argument("--overlap", choices=("auto", "resolve", "keep"), default="auto",
                        help="resolve: masks of one label made disjoint; keep: as predicted; auto: resolve with "
                        "--prelabel classes (default: %(default)s)")  # fmt: skip
    add_clip_checkpoint_option(labels, "--prelabel classes")
    parser.add_argument("--cache-images", type=int, default=32,
                        help="segmented images kept for later clicks (default: %(default)s)")  # fmt: skip
    add_model_options(parser)
    add_inference_options(parser, batch_size=1)
    add_debug_option(parser)
    parser.set_defaults(run=run)


def check_label_studio_args(args: argparse.Namespace) -> None:
    check_inference_args(args)
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1..65535, got {args.port}")
    if args.min_area < 0:
        raise UsageError(f"--min-area must be at least 0 pixels, got {args.min_area}")
    if not 0.0 <= args.text_threshold <= 1.0:
        raise UsageError(f"--text-threshold is a probability in [0, 1], got {args.text_threshold}")
    if args.cache_images < 1:
        raise UsageError(f"--cache-images must be at least 1, got {args.cache_images}")
    if args.clip_checkpoint is not None and args.prelabel != "classes":
        raise UsageError("--clip-checkpoint is for --prelabel classes")


def run(args: argparse.Namespace) -> int:
    import logging

    check_label_studio_args(args)
    try:
        import uvicorn

        from ..labelling.label_studio import BackendSettings, FastSAMBackend, create_app
    except ImportError as err:
        raise ImportError(f"fastsam label-studio needs the 'labelstudio' extra: pip install 'fastsam[labelstudio]' "
                          f"({err})") from None  # fmt: skip
    from .common import model_from_args

    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = BackendSettings(
        prelabel=args.prelabel, min_area=args.min_area, text_threshold=args.text_threshold, overlap=args.overlap,
        cache_images=args.cache_images, imgsz=args.imgsz, conf=args.conf, iou=args.iou, max_det=args.max_det,
        retina=args.retina, batch_size=args.batch_size,
    )  # fmt: skip
    model = model_from_args(args)  # before the server starts: bad weights are one error line, not a failed startup
    scorer = None
    if args.prelabel == "classes":
        scorer = load_clip(args.clip_checkpoint, str(model.device))
    backend = FastSAMBackend(model, settings, model_name=str(args.model), text_scorer=scorer)
    uvicorn.run(create_app(backend), host=args.host, port=args.port, log_level="debug" if args.debug else "info")
    return 0
