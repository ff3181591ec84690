"""``fastsam eval``: the FastSAM paper's evaluation protocols (BSDS500 edges, COCO/LVIS proposals, COCO instance
segmentation from box prompts, speed). Each subcommand writes ``<name>.json`` and ``<name>.md`` to ``--out``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .common import (
    UsageError,
    add_debug_option,
    add_model_options,
    add_out_option,
    add_quiet_option,
    add_workers_option,
    check_inference_args,
)


def _add_inference(parser: argparse.ArgumentParser, conf: float = 0.4, max_det: int = 300, retina: bool = True) -> None:
    group = parser.add_argument_group("everything mode")
    group.add_argument(
        "--imgsz",
        type=int,
        default=1024,
        help="longest side of the network input, multiple of 32 (default: %(default)s)",
    )
    group.add_argument("--conf", type=float, default=conf, help="minimum mask confidence (default: %(default)s)")
    group.add_argument("--iou", type=float, default=0.9, help="NMS IoU threshold (default: %(default)s)")
    group.add_argument("--max-det", type=int, default=max_det, help="maximum masks per image (default: %(default)s)")
    if retina:
        group.add_argument(
            "--retina", action=argparse.BooleanOptionalAction, default=True, help="full-resolution masks (default: on)"
        )


def _add_common(parser: argparse.ArgumentParser, name: str) -> None:
    add_out_option(parser, type=Path, default=Path("eval_out"),
                   help=f"output folder for {name}.json and {name}.md (default: %(default)s)")  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    add_quiet_option(parser)
    add_debug_option(parser)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval",
        help="reproduce the paper's evaluations (edges, proposals, instances, speed)",
        description="Evaluate FastSAM with the protocols of the FastSAM paper. Each subcommand writes JSON and a "
        "markdown report to --out.",
    )
    evals = parser.add_subparsers(dest="eval_command", metavar="EVAL")
    parser.set_defaults(run=lambda args: _usage(parser))

    edges = evals.add_parser(
        "edges",
        help="BSDS500 zero-shot edge detection (ODS, OIS, AP, R50)",
        description="Turn everything-mode masks into edge maps (Sobel on each mask's probability map, maximum over "
        "masks, normalised, edge NMS, thinning) and score them with the BSDS boundary benchmark (thresholded maps "
        "thinned, one-to-one pixel matching within 0.0075 x the image diagonal). With --pred, score a folder of "
        "any method's edge maps (<id>.png 0-255 or <id>.npy floats in [0, 1]) instead of running the model.",
    )
    edges.add_argument(
        "--data", type=Path, required=True, help="BSDS500 folder (groundTruth/<split>/*.mat, images/<split>/*.jpg)"
    )
    edges.add_argument("--split", default="test", help="test, val or train (default: %(default)s)")
    edges.add_argument("--pred", type=Path, help="score the edge maps in this folder instead of running the model")
    edges.add_argument(
        "--nthresh", type=int, default=99, help="thresholds, linspace(1/(n+1), n/(n+1)) (default: %(default)s)"
    )
    edges.add_argument(
        "--max-dist", type=float, default=0.0075, help="matching radius / image diagonal (default: %(default)s)"
    )
    edges.add_argument("--no-thin", dest="thin", action="store_false", help="do not thin the thresholded maps")
    add_workers_option(edges, "boundary-benchmark processes")
    edges.add_argument(
        "--edge-source",
        choices=("prob", "mask"),
        default="prob",
        help="Sobel on mask probability maps (prob) or on the 0/1 masks (mask) (default: %(default)s)",
    )
    edges.add_argument("--weight-by-score", action="store_true", help="scale each mask's edges by its confidence")
    add_model_options(edges)
    _add_inference(edges, retina=False)
    _add_common(edges, "edges")
    edges.set_defaults(run=run_edges)

    proposals = evals.add_parser(
        "proposals",
        help="COCO / LVIS class-agnostic box and mask average recall",
        description="Class-agnostic AR@10/100/1000 (all, small, medium, large) of the everything-mode boxes and "
        "masks, by the COCO protocol (pycocotools COCOeval with useCats=0). LVIS v1 JSON is accepted too.",
    )
    proposals.add_argument("--coco", type=Path, required=True, help="COCO or LVIS instances JSON")
    proposals.add_argument("--images", type=Path, required=True, help="folder of the images")
    add_model_options(proposals)
    _add_inference(proposals, conf=0.05, max_det=1000)
    _add_common(proposals, "proposals")
    proposals.set_defaults(run=run_proposals)

    instances = evals.add_parser(
        "instances",
        help="COCO instance segmentation from box prompts (mask AP)",
        description="One FastSAM mask per box prompt (ground-truth boxes, or a detector's boxes from a COCO results "
        "JSON such as ViTDet-H's), each taking its box's category and score (ground truth: 1); class-aware mask AP "
        "with pycocotools.",
    )
    instances.add_argument("--coco", type=Path, required=True, help="COCO or LVIS instances JSON")
    instances.add_argument("--images", type=Path, required=True, help="folder of the images")
    instances.add_argument(
        "--boxes", type=Path, help="detections JSON (COCO results: image_id, category_id, bbox, score)"
    )
    instances.add_argument(
        "--max-per-image", type=int, default=100, help="detector boxes kept per image (default: %(default)s)"
    )
    add_model_options(instances)
    _add_inference(instances)
    _add_common(instances, "instances")
    instances.set_defaults(run=run_instances)

    speed = evals.add_parser(
        "speed",
        help="ms/image of everything mode and 1/10/100 point prompts",
        description="Time FastSAM as the paper's speed table does: everything mode, then N random point prompts "
        "(the network runs once per image; prompts only select masks). The SAM side of the comparison is "
        "bench/vs_sam.py.",
    )
    speed.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="images to time")
    speed.add_argument("--points", default="1,10,100", help="comma-separated point counts (default: %(default)s)")
    speed.add_argument("--repeats", type=int, default=3, help="timed runs per image and setting (default: %(default)s)")
    speed.add_argument("--warmup", type=int, default=1, help="untimed runs per image first (default: %(default)s)")
    add_model_options(speed)
    _add_inference(speed)
    _add_common(speed, "speed")
    speed.set_defaults(run=run_speed)

    tracking = evals.add_parser(
        "tracking",
        help="tracking metrics: HOTA, MOTA, IDF1 (MOTS) or J&F (DAVIS), by TrackEval",
        description="Score tracking output with TrackEval. MOTS text files (fastsam track's <name>.mots.txt) against "
        "MOTS ground truth: HOTA (DetA, AssA, LocA), CLEAR MOT (MOTA, MOTP, ID switches), IDF1. Or DAVIS palette PNGs "
        "(fastsam track --format davis) against a DAVIS tree (Annotations/480p/<sequence>/*.png): J&F (region IoU J, "
        "boundary F-measure F; mean, recall, decay). No model is run.",
    )
    tracking.add_argument("--pred", type=Path, required=True,
                          help="a MOTS text file or a folder of <seq>.txt / <seq>.mots.txt; for DAVIS a folder of "
                          "<seq>/00000.png ...")  # fmt: skip
    tracking.add_argument("--gt", type=Path, required=True,
                          help="a MOTS text file, a folder of <seq>.txt or MOTSChallenge <seq>/gt/gt.txt, or a DAVIS "
                          "root with Annotations/")  # fmt: skip
    tracking.add_argument("--benchmark", choices=("auto", "mots", "davis"), default="auto",
                          help="auto: DAVIS when --gt holds Annotations/, else MOTS (default: %(default)s)")  # fmt: skip
    add_out_option(tracking, type=Path, default=Path("eval_out"),
                   help="output folder for tracking.json and tracking.md (default: %(default)s)")  # fmt: skip
    add_debug_option(tracking)
    tracking.set_defaults(run=run_tracking)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _progress(args: argparse.Namespace, desc: str):
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr (None with --quiet)."""
    if args.quiet:
        return None
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(*values) -> None:
        stage, done, total = (desc, *values) if len(values) == 2 else values
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="img", file=sys.stderr)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def _load_model(args: argparse.Namespace):
    from .common import model_from_args

    return model_from_args(args)


def _settings_lines(settings: dict) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in settings.items())


def _check_coco_paths(args: argparse.Namespace) -> None:
    """Fail on missing inputs before loading the model."""
    if not args.coco.is_file():
        raise FileNotFoundError(f"annotation file not found: {args.coco}")
    if not args.images.is_dir():
        raise FileNotFoundError(f"image folder not found: {args.images}")
    if getattr(args, "boxes", None) is not None and not args.boxes.is_file():
        raise FileNotFoundError(f"detections file not found: {args.boxes}")


def _images_line(out: dict) -> str:
    return f"{out['images']} evaluated, {len(out['missing_images'])} missing"


def run_edges(args: argparse.Namespace) -> int:
    check_inference_args(args)  # before any image is read
    from ..evaluation.bsds_data import list_bsds
    from ..evaluation.edge_pipeline import evaluate_edge_folder, evaluate_model_edges
    from ..evaluation.report import PAPER_EDGES, metrics_table, plot_pr_curve, write_json, write_markdown

    items = list_bsds(args.data, args.split, args.limit)
    start = time.perf_counter()
    if args.pred is not None:
        bench = evaluate_edge_folder(
            args.pred, items, args.nthresh, args.max_dist, args.thin, args.workers, _progress(args, "benchmark")
        )
        source = f"edge maps from {args.pred}"
    else:
        if not args.thin:
            raise ValueError("--no-thin only applies to --pred (the model's edge maps are always thinned)")
        bench = evaluate_model_edges(
            _load_model(args),
            items,
            imgsz=args.imgsz,
            conf=args.conf,
            iou=args.iou,
            max_det=args.max_det,
            source=args.edge_source,
            weight_by_score=args.weight_by_score,
            nthresh=args.nthresh,
            max_dist=args.max_dist,
            workers=args.workers,
            save_dir=args.out / "edge_maps",
            progress=_progress(args, "edges"),
        )
        weighting = ", score-weighted" if args.weight_by_score else ""
        source = (
            f"FastSAM {args.model} (imgsz {args.imgsz}, conf {args.conf}, iou {args.iou}, max_det {args.max_det}, "
            f"Sobel on {args.edge_source} maps{weighting})"
        )
    seconds = time.perf_counter() - start
    s = bench.scores
    write_json({"source": source, "split": args.split, "seconds": seconds, **bench.as_dict()}, args.out / "edges.json")
    plot = plot_pr_curve(
        bench.curve.recall,
        bench.curve.precision,
        args.out / "edges_pr.png",
        label=f"ODS F {s.ods_f:.3f}",
        ods=(s.ods_recall, s.ods_precision),
    )
    setting = {
        "data": f"{args.data} ({args.split}, {s.n_images} images)",
        "edges": source,
        "thresholds": args.nthresh,
        "max_dist": args.max_dist,
        "thinning": bench.thin,
        "time": f"{seconds:.1f} s",
    }
    scores = metrics_table({"ODS": s.ods_f, "OIS": s.ois_f, "AP": s.ap, "R50": s.r50}, PAPER_EDGES) + (
        f"\n\nODS at threshold {s.ods_threshold:.3f}: R {s.ods_recall:.3f}, P {s.ods_precision:.3f}; "
        f"OIS: R {s.ois_recall:.3f}, P {s.ois_precision:.3f}. Paper: FastSAM (official weights), BSDS500 test split."
    )
    sections = [("Setting", _settings_lines(setting)), ("Scores", scores)]
    if plot is not None:
        sections.append(("Precision-recall", f"![PR curve]({plot.name})"))
    write_markdown("BSDS500 boundary benchmark", sections, args.out / "edges.md")
    print(
        f"ODS {s.ods_f:.4f}  OIS {s.ois_f:.4f}  AP {s.ap:.4f}  R50 {s.r50:.4f}  "
        f"({s.n_images} images, {seconds:.1f} s); wrote {args.out}",
        file=sys.stderr,
    )
    return 0


def run_proposals(args: argparse.Namespace) -> int:
    check_inference_args(args)  # before any image is read
    from ..evaluation.proposals import evaluate_proposals
    from ..evaluation.report import (
        PAPER_PROPOSALS_COCO,
        PAPER_PROPOSALS_LVIS,
        metrics_table,
        write_json,
        write_markdown,
    )

    _check_coco_paths(args)
    start = time.perf_counter()
    out = evaluate_proposals(
        _load_model(args),
        args.coco,
        args.images,
        imgsz=args.imgsz,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        retina=args.retina,
        limit=args.limit,
        progress=_progress(args, "proposals"),
    )
    out.update(seconds=time.perf_counter() - start, model=str(args.model), annotations=str(args.coco))
    write_json(out, args.out / "proposals.json")
    paper = PAPER_PROPOSALS_LVIS if out["dataset"] == "lvis" else PAPER_PROPOSALS_COCO
    setting = {
        "annotations": args.coco,
        "images": _images_line(out),
        "model": args.model,
        **out["settings"],
        "proposals per image": f"{out['proposals_per_image']:.1f}",
    }
    sections = [
        ("Setting", _settings_lines(setting)),
        ("Box proposals (class-agnostic AR, %)", metrics_table(out["box"], paper, scale=100)),
        ("Mask proposals (class-agnostic AR, %)", metrics_table(out["mask"], scale=100)),
    ]
    write_markdown(f"{out['dataset'].upper()} proposals", sections, args.out / "proposals.md")
    b = out["box"]
    print(
        f"box AR@10 {100 * b['AR@10']:.1f} %  AR@100 {100 * b['AR@100']:.1f} %  AR@1000 {100 * b['AR@1000']:.1f} %  "
        f"({out['images']} images); wrote {args.out}",
        file=sys.stderr,
    )
    return 0


def run_instances(args: argparse.Namespace) -> int:
    check_inference_args(args)  # before any image is read
    from ..evaluation.instances import evaluate_instances
    from ..evaluation.report import PAPER_INSTANCES, metrics_table, write_json, write_markdown

    _check_coco_paths(args)
    start = time.perf_counter()
    out = evaluate_instances(
        _load_model(args),
        args.coco,
        args.images,
        boxes=args.boxes,
        imgsz=args.imgsz,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        retina=args.retina,
        max_per_image=args.max_per_image,
        limit=args.limit,
        progress=_progress(args, "instances"),
    )
    out.update(seconds=time.perf_counter() - start, model=str(args.model), annotations=str(args.coco))
    write_json(out, args.out / "instances.json")
    setting = {
        "annotations": args.coco,
        "images": _images_line(out),
        "box prompts": f"{out['boxes']} ({out['prompts']} boxes)",
        "model": args.model,
        **out["settings"],
    }
    if args.boxes is not None:
        ap = metrics_table(out["mask"], PAPER_INSTANCES) + "\n\nPaper: COCO val2017 with ViTDet-H boxes."
    else:
        ap = metrics_table(out["mask"]) + "\n\nGround-truth boxes: an upper bound on box-prompted mask quality."
    sections = [("Setting", _settings_lines(setting)), ("Mask AP", ap)]
    write_markdown("Instance segmentation from box prompts", sections, args.out / "instances.md")
    m = out["mask"]
    print(
        f"mask AP {m['AP']:.3f}  AP50 {m['AP50']:.3f}  AP75 {m['AP75']:.3f}  "
        f"({out['prompts']} boxes, {out['images']} images); wrote {args.out}",
        file=sys.stderr,
    )
    return 0


def _point_counts(text: str) -> list[int]:
    try:
        counts = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UsageError(f"--points {text!r} must be comma-separated integers") from None
    if not counts or any(c < 1 for c in counts):
        raise UsageError(f"--points {text!r} must be positive integers")
    return counts


SPEED_PAPER_NOTE = (
    "Paper (RTX 3090): FastSAM 40 ms at every prompt count; SAM-H 446 / 464 / 627 ms and SAM-B 110 / 125 / 230 ms "
    "for 1 / 10 / 100 points (bench/vs_sam.py runs SAM on this machine)."
)


def run_speed(args: argparse.Namespace) -> int:
    check_inference_args(args)  # before any image is read
    from ..evaluation.report import write_json, write_markdown
    from ..evaluation.speed import speed_table, time_fastsam

    counts = _point_counts(args.points)
    images = args.images[: args.limit] if args.limit else args.images
    model = _load_model(args)
    settings = {"imgsz": args.imgsz, "conf": args.conf, "iou": args.iou, "max_det": args.max_det, "retina": args.retina}
    rows = time_fastsam(model, [str(p) for p in images], counts, repeats=args.repeats, warmup=args.warmup, **settings)
    device = str(model.device)
    if model.device.type == "cuda":
        import torch

        device += f" ({torch.cuda.get_device_name(model.device)})"
    data = {
        "model": str(args.model),
        "device": device,
        "images": [str(p) for p in images],
        "repeats": args.repeats,
        "settings": settings,
        "rows": [r.as_dict() for r in rows],
    }
    write_json(data, args.out / "speed.json")
    table = speed_table(rows)
    setting = {"model": args.model, "device": device, "images": len(images), "repeats": args.repeats, **settings}
    sections = [("Setting", _settings_lines(setting)), ("ms per image", f"{table}\n\n{SPEED_PAPER_NOTE}")]
    write_markdown("FastSAM speed", sections, args.out / "speed.md")
    print(table)
    return 0


def run_tracking(args: argparse.Namespace) -> int:
    from ..evaluation.report import metrics_table, write_json, write_markdown
    from ..evaluation.tracking import evaluate_davis, evaluate_mots

    for role, path in (("--pred", args.pred), ("--gt", args.gt)):
        if not path.exists():
            raise UsageError(f"{role} {path}: not found")
    benchmark = args.benchmark
    if benchmark == "auto":
        benchmark = "davis" if (args.gt / "Annotations").is_dir() else "mots"
    start = time.perf_counter()
    out = (evaluate_davis if benchmark == "davis" else evaluate_mots)(args.pred, args.gt)
    out.update(benchmark=benchmark, pred=str(args.pred), gt=str(args.gt), seconds=time.perf_counter() - start)
    write_json(out, args.out / "tracking.json")
    combined = out["combined"]
    if benchmark == "davis":
        keys = ("J&F", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
        line = "J&F {J&F:.4f}  J {J-Mean:.4f}  F {F-Mean:.4f}"
    else:
        keys = ("HOTA", "DetA", "AssA", "LocA", "MOTA", "MOTP", "IDF1", "IDP", "IDR")
        line = "HOTA {HOTA:.4f}  MOTA {MOTA:.4f}  IDF1 {IDF1:.4f}  ID switches {IDSW:.0f}"
    table = metrics_table({k: combined[k] for k in keys if k in combined})
    counts = ", ".join(f"{k} {combined[k]:.0f}" for k in ("IDSW", "FP", "FN", "GT_IDs", "IDs") if k in combined)
    setting = (f"- predictions: {args.pred}\n- ground truth: {args.gt}\n- sequences: {len(out['sequences'])}\n"
               "- computed by: TrackEval")  # fmt: skip
    sections = [("Setting", setting), ("Scores", table + (f"\n\n{counts}" if counts else ""))]
    write_markdown(f"Tracking ({benchmark.upper()})", sections, args.out / "tracking.md")
    print(line.format(**combined) + f" ({len(out['sequences'])} sequence(s)); wrote {args.out}", file=sys.stderr)
    return 0
