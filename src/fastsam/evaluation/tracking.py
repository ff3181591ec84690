"""Tracking metrics, computed by TrackEval (PyPI ``trackeval``): nothing here re-implements a metric.

* :func:`evaluate_mots`: HOTA (DetA, AssA, LocA), CLEAR MOT (MOTA, MOTP, ID switches) and identity metrics (IDF1)
  of MOTS-format predictions against MOTS-format ground truth, through TrackEval's ``MOTSChallenge`` dataset
  (mask IoU; class 2 objects, class 10 ignore regions; masks of one frame may not overlap).
* :func:`evaluate_davis`: DAVIS-style J&F (J: region IoU, F: boundary F-measure within 0.008 x the image
  diagonal, each with mean, recall and decay) of per-frame palette PNGs against DAVIS ``Annotations``, through
  TrackEval's ``DAVIS`` dataset and ``JAndF`` metric. TrackEval pairs predicted and true objects by the assignment
  that maximises the mean J over the sequence (its unsupervised DAVIS protocol), and every frame counts, the
  prompted one included.

The inputs are laid out in the folder structure TrackEval expects (links in a temporary folder), evaluated with its
``Evaluator``, and its numbers returned as plain floats.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

TRACKER = "fastsam"

HOTA_FIELDS = ("HOTA", "DetA", "AssA", "LocA", "DetRe", "DetPr", "AssRe", "AssPr")
CLEAR_FIELDS = {"MOTA": "MOTA", "MOTP": "MOTP", "IDSW": "IDSW", "FP": "CLR_FP", "FN": "CLR_FN", "TP": "CLR_TP",
                "Frag": "Frag", "MT": "MT", "ML": "ML"}  # fmt: skip
IDENTITY_FIELDS = ("IDF1", "IDP", "IDR", "IDTP", "IDFN", "IDFP")
JF_FIELDS = ("J&F", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def _import_trackeval() -> Any:
    try:
        import trackeval
    except ImportError as err:
        raise ImportError('tracking metrics need TrackEval: pip install "fastsam[eval]"') from err
    return trackeval


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(src.resolve(), dst, target_is_directory=src.is_dir())
    except OSError:  # no symlinks here (some Windows setups): copy
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)


def _mots_files(path: Path, role: str) -> dict[str, Path]:
    """``{sequence: text file}`` from a MOTS text file or a folder of them (``<seq>.txt``, ``<seq>.mots.txt``, or
    MOTSChallenge's ``<seq>/gt/gt.txt``)."""
    if path.is_file():
        return {path.name.split(".")[0]: path}
    if not path.is_dir():
        raise FileNotFoundError(f"{role} not found: {path}")
    found: dict[str, Path] = {}
    for item in sorted(path.iterdir()):
        if item.is_file() and item.name.endswith(".txt"):
            found[item.name.split(".")[0]] = item
        elif (item / "gt" / "gt.txt").is_file():
            found[item.name] = item / "gt" / "gt.txt"
    if not found:
        raise ValueError(f"{role} {path}: no MOTS text files (<seq>.txt, <seq>.mots.txt or <seq>/gt/gt.txt)")
    return found


def _last_frame(path: Path) -> int:
    last = 0
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            head = line.split(" ", 1)[0].strip()
            if head:
                try:
                    last = max(last, int(head))
                except ValueError:
                    raise ValueError(f"{path}: {line.strip()[:60]!r} is not a MOTS line (frame id class h w rle)") from None
    return last


def _seq_length(gt: Path, pred: Path) -> int:
    """Frames in a sequence: ``seqinfo.ini``'s seqLength next to a MOTSChallenge ``gt/gt.txt``, else the last frame
    either file mentions."""
    import configparser

    ini = gt.parent.parent / "seqinfo.ini"
    if gt.name == "gt.txt" and ini.is_file():
        config = configparser.ConfigParser()
        config.read(ini)
        return int(config["Sequence"]["seqLength"])
    return max(_last_frame(gt), _last_frame(pred), 1)


def _summary(values: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    hota, clear, identity = values.get("HOTA", {}), values.get("CLEAR", {}), values.get("Identity", {})
    for name in HOTA_FIELDS:
        if name in hota:
            out[name] = float(np.mean(hota[name]))  # averaged over the localisation thresholds, as TrackEval reports
    for name, key in CLEAR_FIELDS.items():
        if key in clear:
            out[name] = float(clear[key])
    for name in IDENTITY_FIELDS:
        if name in identity:
            out[name] = float(identity[name])
    count = values.get("Count", {})
    for name in ("GT_IDs", "IDs", "GT_Dets", "Dets"):
        if name in count:
            out[name] = float(count[name])
    return out


def _run(trackeval: Any, dataset: Any, metric_names: list[str]) -> dict[str, Any]:
    config = {
        "USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False,
        "DISPLAY_LESS_PROGRESS": False, "OUTPUT_SUMMARY": False, "OUTPUT_EMPTY_CLASSES": False,
        "OUTPUT_DETAILED": False, "PLOT_CURVES": False, "LOG_ON_ERROR": None, "BREAK_ON_ERROR": True,
    }  # fmt: skip
    # TrackEval reports its progress on stdout and prints tracebacks of the errors it re-raises on stderr
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        metrics = [getattr(trackeval.metrics, name)({"PRINT_CONFIG": False}) for name in metric_names]
        try:
            results, _ = trackeval.Evaluator(config).evaluate([dataset], metrics)
        except trackeval.utils.TrackEvalException as err:
            raise ValueError(f"TrackEval: {err}") from None
    return next(iter(results.values()))[TRACKER]


def evaluate_mots(pred: str | os.PathLike[str], gt: str | os.PathLike[str]) -> dict[str, Any]:
    """HOTA, CLEAR and identity metrics of MOTS predictions, by TrackEval.

    Args:
        pred: a MOTS text file, or a folder of ``<seq>.txt`` / ``<seq>.mots.txt`` (what ``fastsam track`` writes).
        gt: a MOTS text file (evaluated against a single ``pred`` file), or a folder of ``<seq>.txt`` or of
            MOTSChallenge sequences (``<seq>/gt/gt.txt`` with ``seqinfo.ini``).

    Returns:
        ``{"combined": {...}, "sequences": {seq: {...}}}`` with HOTA, DetA, AssA, LocA, DetRe, DetPr, AssRe, AssPr,
        MOTA, MOTP, IDSW, FP, FN, TP, Frag, MT, ML, IDF1, IDP, IDR, IDTP, IDFN, IDFP, GT_IDs, IDs (TrackEval's
        numbers; HOTA-family values are its mean over the IoU thresholds 0.05-0.95).

    Raises:
        FileNotFoundError / ValueError: missing inputs, a sequence without a prediction, bad lines, overlapping
            masks (as TrackEval reports them).
    """
    trackeval = _import_trackeval()
    pred, gt = Path(pred), Path(gt)
    gt_files = _mots_files(gt, "ground truth")
    if pred.is_file():
        if len(gt_files) != 1:
            raise ValueError(f"{pred} is one sequence but the ground truth {gt} has {len(gt_files)}: give a folder")
        pred_files = {next(iter(gt_files)): pred}
    else:
        pred_files = _mots_files(pred, "predictions")
    missing = sorted(set(gt_files) - set(pred_files))
    if missing:
        raise ValueError(f"no prediction for sequence(s) {', '.join(missing)} in {pred}")
    with tempfile.TemporaryDirectory(prefix="fastsam-trackeval-") as tmp:
        root = Path(tmp)
        lengths = {}
        for seq, gt_file in gt_files.items():
            _link(gt_file, root / "gt" / seq / "gt" / "gt.txt")
            _link(pred_files[seq], root / "trackers" / TRACKER / "data" / f"{seq}.txt")
            lengths[seq] = _seq_length(gt_file, pred_files[seq])
        dataset = trackeval.datasets.MOTSChallenge({
            "GT_FOLDER": str(root / "gt"), "TRACKERS_FOLDER": str(root / "trackers"),
            "OUTPUT_FOLDER": str(root / "out"), "TRACKERS_TO_EVAL": [TRACKER], "SKIP_SPLIT_FOL": True,
            "SEQ_INFO": lengths, "PRINT_CONFIG": False,
        })  # fmt: skip
        per_seq = _run(trackeval, dataset, ["HOTA", "CLEAR", "Identity"])
    summary = {seq: _summary(values["pedestrian"]) for seq, values in per_seq.items()}
    return {"combined": summary.pop("COMBINED_SEQ"), "sequences": summary, "lengths": lengths}


def davis_annotations(root: Path) -> Path:
    """The folder of per-sequence annotation folders in a DAVIS tree (``Annotations/480p``, ``Annotations`` or the
    folder itself)."""
    for candidate in (root / "Annotations" / "480p", root / "Annotations", root):
        if candidate.is_dir() and any(p.is_dir() for p in candidate.iterdir()):
            return candidate
    raise ValueError(f"{root}: no DAVIS annotations (Annotations/480p/<sequence>/00000.png, ...)")


def evaluate_davis(pred: str | os.PathLike[str], gt: str | os.PathLike[str]) -> dict[str, Any]:
    """DAVIS J&F of palette-PNG predictions, by TrackEval.

    Args:
        pred: a folder of ``<sequence>/00000.png, ...`` (what ``fastsam track --format davis`` writes), or one
            sequence's folder of PNGs when ``gt`` holds one sequence.
        gt: a DAVIS root (``Annotations/480p/<sequence>/*.png``; ``JPEGImages`` is not needed) or the annotations
            folder itself.

    Returns:
        ``{"combined": {...}, "sequences": {seq: {...}}}`` with J&F, J-Mean, J-Recall, J-Decay, F-Mean, F-Recall,
        F-Decay.
    """
    trackeval = _import_trackeval()
    pred, gt = Path(pred), Path(gt)
    if not gt.is_dir():
        raise FileNotFoundError(f"ground truth not found: {gt}")
    if not pred.is_dir():
        raise FileNotFoundError(f"predictions not found: {pred}")
    annotations = davis_annotations(gt)
    sequences = sorted(p.name for p in annotations.iterdir() if p.is_dir())
    pngs_here = any(p.suffix == ".png" for p in pred.iterdir())
    with tempfile.TemporaryDirectory(prefix="fastsam-trackeval-") as tmp:
        root = Path(tmp)
        for seq in sequences:
            source = pred if pngs_here and len(sequences) == 1 else pred / seq
            if not source.is_dir():
                raise ValueError(f"no prediction for sequence {seq}: expected {pred / seq}/00000.png, ...")
            want = len([p for p in (annotations / seq).iterdir() if p.suffix == ".png"])
            have = len([p for p in source.iterdir() if p.suffix == ".png"])
            if want != have:
                raise ValueError(f"sequence {seq}: {have} predicted frame(s) for {want} annotated frame(s)")
            _link(source, root / "trackers" / TRACKER / "data" / seq)
        dataset = trackeval.datasets.DAVIS({
            "GT_FOLDER": str(annotations), "TRACKERS_FOLDER": str(root / "trackers"), "OUTPUT_FOLDER": str(root / "out"),
            "TRACKERS_TO_EVAL": [TRACKER], "SEQ_INFO": {seq: None for seq in sequences}, "PRINT_CONFIG": False,
        })  # fmt: skip
        per_seq = _run(trackeval, dataset, ["JAndF"])
    summary = {
        seq: {name: float(values["general"]["JAndF"][name]) for name in JF_FIELDS}
        for seq, values in per_seq.items()
    }
    return {"combined": summary.pop("COMBINED_SEQ"), "sequences": summary}
