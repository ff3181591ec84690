"""ODS, OIS, AP and R50 from per-image boundary counts, as the BSDS benchmark aggregates them.

* Recall ``R = cnt_r / sum_r`` and precision ``P = cnt_p / sum_p`` (0 where the denominator is 0);
  ``F = 2PR / (P + R)`` (0 where ``P + R = 0``).
* ODS (optimal dataset scale): counts summed over the images at each threshold; the best F along the
  curve, where between consecutive thresholds R, P (and the threshold) are interpolated linearly at 100
  evenly spaced points, endpoints included.
* OIS (optimal image scale): each image's counts at its own best (non-interpolated) threshold, summed
  over the images, then R, P, F of the sums.
* AP: area under the dataset PR curve: precision linearly interpolated over the distinct recall values
  at recall 0, 0.01, ..., 1, zero outside the recall range the curve covers, summed times 0.01.
* R50: the largest recall on the (threshold-interpolated) dataset curve at which precision >= 0.5
  (0 if precision never reaches 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .boundary_counts import BoundaryCounts

_STEPS = 100  # interpolation points per threshold interval


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return num / np.where(den == 0, 1.0, den)


def f_measure(recall: np.ndarray | float, precision: np.ndarray | float) -> np.ndarray:
    """Harmonic mean ``2PR / (P + R)``, 0 where ``P + R = 0``."""
    r = np.asarray(recall, dtype=np.float64)
    p = np.asarray(precision, dtype=np.float64)
    s = p + r
    return 2 * p * r / np.where(s == 0, 1.0, s)


def _dense_curve(thresholds: np.ndarray, r: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, ...]:
    """The curve with 100 linear-interpolation points per threshold interval (endpoints included)."""
    if thresholds.size == 1:
        return thresholds, r, p
    d = np.linspace(0.0, 1.0, _STEPS)[None, :]

    def lerp(v: np.ndarray) -> np.ndarray:
        return (v[1:, None] * d + v[:-1, None] * (1 - d)).ravel()

    return lerp(thresholds), lerp(r), lerp(p)


def best_f(thresholds: np.ndarray, recall: np.ndarray, precision: np.ndarray) -> tuple[float, float, float, float]:
    """The best F along the threshold-interpolated curve: ``(threshold, R, P, F)`` (first maximum)."""
    t, r, p = _dense_curve(np.asarray(thresholds, float), np.asarray(recall, float), np.asarray(precision, float))
    f = f_measure(r, p)
    i = int(np.argmax(f))
    return float(t[i]), float(r[i]), float(p[i]), float(f[i])


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the PR curve sampled at recall 0, 0.01, ..., 1 (zero outside the covered recall range)."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    ru, first = np.unique(recall, return_index=True)
    if ru.size < 2:
        return 0.0
    pu = precision[first]
    grid = np.linspace(0.0, 1.0, 101)
    p_int = np.interp(grid, ru, pu, left=0.0, right=0.0)
    return float(p_int.sum() * 0.01)


def recall_at_precision(thresholds: np.ndarray, recall: np.ndarray, precision: np.ndarray, level: float = 0.5) -> float:
    """The largest recall on the threshold-interpolated curve where precision >= ``level`` (0 if none)."""
    _, r, p = _dense_curve(np.asarray(thresholds, float), np.asarray(recall, float), np.asarray(precision, float))
    ok = p >= level
    return float(r[ok].max()) if ok.any() else 0.0


@dataclass
class BoundaryScores:
    """The benchmark's summary numbers (R, P, F in [0, 1]).

    Attributes:
        ods_threshold, ods_recall, ods_precision, ods_f: optimal dataset scale.
        ois_recall, ois_precision, ois_f: optimal image scale.
        ap: area under the PR curve.
        r50: recall at 50% precision.
        n_images: number of images.
    """

    ods_threshold: float
    ods_recall: float
    ods_precision: float
    ods_f: float
    ois_recall: float
    ois_precision: float
    ois_f: float
    ap: float
    r50: float
    n_images: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class PerThreshold:
    """The dataset curve: ``(T,)`` thresholds, recall, precision and F of the dataset-summed counts."""

    thresholds: np.ndarray
    recall: np.ndarray
    precision: np.ndarray
    f: np.ndarray


def dataset_curve(counts: Sequence[BoundaryCounts]) -> PerThreshold:
    """Recall, precision and F per threshold of the counts summed over the images."""
    if not counts:
        raise ValueError("no images to aggregate")
    thr = counts[0].thresholds
    for c in counts:
        if c.thresholds.shape != thr.shape or not np.allclose(c.thresholds, thr):
            raise ValueError("all images must be scored at the same thresholds")
    cnt_r = np.sum([c.cnt_r for c in counts], axis=0)
    sum_r = np.sum([c.sum_r for c in counts], axis=0)
    cnt_p = np.sum([c.cnt_p for c in counts], axis=0)
    sum_p = np.sum([c.sum_p for c in counts], axis=0)
    r, p = _ratio(cnt_r, sum_r), _ratio(cnt_p, sum_p)
    return PerThreshold(thr, r, p, f_measure(r, p))


def image_best(counts: BoundaryCounts) -> tuple[float, float, float, float]:
    """One image's best ``(threshold, R, P, F)`` along its threshold-interpolated curve."""
    r, p = _ratio(counts.cnt_r, counts.sum_r), _ratio(counts.cnt_p, counts.sum_p)
    return best_f(counts.thresholds, r, p)


def summarize(counts: Sequence[BoundaryCounts]) -> BoundaryScores:
    """ODS, OIS, AP and R50 of a dataset from its images' counts (see the module docstring)."""
    curve = dataset_curve(counts)
    ods_t, ods_r, ods_p, ods_f = best_f(curve.thresholds, curve.recall, curve.precision)
    totals = np.zeros(4)
    for c in counts:
        f = f_measure(_ratio(c.cnt_r, c.sum_r), _ratio(c.cnt_p, c.sum_p))
        i = int(np.argmax(f))
        totals += (c.cnt_r[i], c.sum_r[i], c.cnt_p[i], c.sum_p[i])
    ois_r = float(_ratio(totals[0], totals[1]))
    ois_p = float(_ratio(totals[2], totals[3]))
    return BoundaryScores(
        ods_threshold=ods_t,
        ods_recall=ods_r,
        ods_precision=ods_p,
        ods_f=ods_f,
        ois_recall=ois_r,
        ois_precision=ois_p,
        ois_f=float(f_measure(ois_r, ois_p)),
        ap=average_precision(curve.recall, curve.precision),
        r50=recall_at_precision(curve.thresholds, curve.recall, curve.precision),
        n_images=len(counts),
    )
