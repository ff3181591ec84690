"""One-to-one correspondence between the pixels of two boundary maps (the BSDS benchmark's matching).

Two boundary pixels may be matched when they lie within ``max_dist * diagonal`` of each other (Euclidean
distance in pixels, ``diagonal = sqrt(H^2 + W^2)``). Among all one-to-one matchings we take the one of least
cost, where a matched pair costs its distance and every pixel left unmatched costs ``outlier_cost * radius``
(the benchmark's outlier cost, 100 radii, makes the matching of maximum cardinality first and of least total
distance second). The matching is solved exactly by :func:`fastsam.evaluation.assignment.min_cost_matching`
on the candidate pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .assignment import min_cost_matching

DEFAULT_MAX_DIST = 0.0075
"""Maximum matching distance as a fraction of the image diagonal (BSDS benchmark)."""
DEFAULT_OUTLIER_COST = 100.0
"""Cost of leaving a pixel unmatched, in units of the matching radius (BSDS benchmark)."""


@dataclass
class Correspondence:
    """Result of matching a machine boundary map against one human boundary map.

    Attributes:
        machine_matched: ``(M,)`` int64 flat (row-major) indices of the matched machine pixels.
        human_matched: ``(M,)`` int64 flat indices of their human partners (pairwise aligned).
        cost: total distance of the matched pairs, in pixels.
    """

    machine_matched: np.ndarray
    human_matched: np.ndarray
    cost: float

    @property
    def count(self) -> int:
        """Number of matched pairs."""
        return int(self.machine_matched.size)


def matching_radius(shape: tuple[int, int], max_dist: float = DEFAULT_MAX_DIST) -> float:
    """The matching radius in pixels for an image of ``shape`` ``(H, W)``: ``max_dist * sqrt(H^2 + W^2)``."""
    return float(max_dist * np.hypot(shape[0], shape[1]))


@lru_cache(maxsize=32)
def _offsets(radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer (dy, dx) offsets with ``dy^2 + dx^2 <= radius^2`` and their lengths."""
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dy**2 + dx**2 <= radius * radius
    dy, dx = dy[keep], dx[keep]
    return dy.astype(np.int64), dx.astype(np.int64), np.hypot(dy, dx)


class HumanBoundary:
    """A human boundary map prepared for repeated matching (one per annotator, reused across thresholds).

    Args:
        human: ``(H, W)`` 0/1 boundary map.
        radius: matching radius in pixels.
    """

    def __init__(self, human: np.ndarray, radius: float) -> None:
        human = np.asarray(human) != 0
        if human.ndim != 2:
            raise ValueError(f"a boundary map must be 2-D, got shape {human.shape}")
        self.shape = human.shape
        self.radius = float(radius)
        self.flat = np.flatnonzero(human)  # flat index of each human pixel (its ordinal is its node id)
        self.count = int(self.flat.size)
        h, w = self.shape
        self.pad = int(np.ceil(radius))
        self.padded_w = w + 2 * self.pad
        label = np.full((h + 2 * self.pad, self.padded_w), -1, dtype=np.int64)
        rows, cols = np.divmod(self.flat, w)
        label[rows + self.pad, cols + self.pad] = np.arange(self.count)
        self._label = label.ravel()
        dy, dx, self._dist = _offsets(self.radius)
        self._shift = dy * self.padded_w + dx

    def candidates(self, machine_flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate pairs for machine pixels given by flat index.

        Returns:
            ``(i, j, d)``: ordinal of the machine pixel (into ``machine_flat``), ordinal of the human pixel
            (into :attr:`flat`) and distance in pixels, grouped by increasing ``i``.
        """
        if machine_flat.size == 0 or self.count == 0:
            empty = np.zeros(0, np.int64)
            return empty, empty, np.zeros(0)
        rows, cols = np.divmod(machine_flat, self.shape[1])
        base = (rows + self.pad) * self.padded_w + (cols + self.pad)
        partner = self._label[base[:, None] + self._shift[None, :]]  # (n1, K)
        which_m, which_k = np.nonzero(partner >= 0)
        return which_m, partner[which_m, which_k], self._dist[which_k]

    def match(self, machine_flat: np.ndarray, outlier_cost: float = DEFAULT_OUTLIER_COST) -> Correspondence:
        """Minimum-cost matching of machine pixels (flat indices, row-major) to this map's pixels."""
        i, j, d = self.candidates(machine_flat)
        if i.size == 0:
            empty = np.zeros(0, np.int64)
            return Correspondence(empty, empty, 0.0)
        # an unmatched pixel costs outlier_cost * radius on either side: twice that per row when only rows pay
        match = min_cost_matching(i, j, d, machine_flat.size, self.count, 2.0 * outlier_cost * self.radius)
        rows = np.flatnonzero(match >= 0)
        cost = float(d[match[i] == j].sum())
        return Correspondence(machine_flat[rows], self.flat[match[rows]], cost)


def correspond_pixels(
    machine: np.ndarray,
    human: np.ndarray,
    max_dist: float = DEFAULT_MAX_DIST,
    outlier_cost: float = DEFAULT_OUTLIER_COST,
) -> Correspondence:
    """Minimum-cost one-to-one matching between machine and human boundary pixels.

    Args:
        machine: ``(H, W)`` bool (or 0/1) machine boundary map (already thinned).
        human: ``(H, W)`` bool (or 0/1) human boundary map, same shape.
        max_dist: matching radius as a fraction of the image diagonal.
        outlier_cost: cost of an unmatched pixel, in radii.

    Returns:
        A :class:`Correspondence` (flat pixel indices of the matched pixels on both sides).
    """
    machine = np.asarray(machine) != 0
    human = np.asarray(human) != 0
    if machine.shape != human.shape or machine.ndim != 2:
        raise ValueError(f"boundary maps must be 2-D and of one shape, got {machine.shape} and {human.shape}")
    prepared = HumanBoundary(human, matching_radius(machine.shape, max_dist))
    return prepared.match(np.flatnonzero(machine), outlier_cost)
