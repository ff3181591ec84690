"""One-to-one correspondence between the pixels of two boundary maps (the BSDS benchmark's matching).

Two boundary pixels may be matched when they lie within ``max_dist * diagonal`` of each other (Euclidean
distance in pixels, ``diagonal = sqrt(H^2 + W^2)``). Among all one-to-one matchings we take the one of least
cost, where a matched pair costs its distance and every pixel left unmatched costs ``outlier_cost * radius``
(the benchmark's outlier cost, 100 radii by default, makes the matching of maximum cardinality first and of
least total distance second).

The minimum-cost matching is solved exactly as a minimum-weight perfect matching on an augmented bipartite
graph (scipy's sparse LAPJV, C speed): left nodes are the first map's candidate pixels plus one "unmatched"
slot per second-map pixel, right nodes the second map's pixels plus one slot per first-map pixel; every
real edge (i, j) is mirrored by a zero-distance edge between the slots of j and i, so any partial matching
extends to a perfect one and the perfect matching's cost is the partial matching's cost plus the outlier
costs. Pixels with no partner within the radius are left out of the graph (they can only be outliers), and
isolated pairs (a pixel whose only candidate has no other candidate) are matched without the solver.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, min_weight_full_bipartite_matching

DEFAULT_MAX_DIST = 0.0075
"""Maximum matching distance as a fraction of the image diagonal (BSDS benchmark)."""
DEFAULT_OUTLIER_COST = 100.0
"""Cost of leaving a pixel unmatched, in units of the matching radius (BSDS benchmark)."""


@dataclass
class Correspondence:
    """Result of matching a machine boundary map against one human boundary map.

    Attributes:
        machine_matched: ``(n1,)`` int64 flat (row-major) indices of the machine pixels that were matched.
        human_matched: ``(n2m,)`` int64 flat indices of the human pixels that were matched (same count).
        cost: total distance of the matched pairs, in pixels.
    """

    machine_matched: np.ndarray
    human_matched: np.ndarray
    cost: float

    @property
    def count(self) -> int:
        """Number of matched pairs."""
        return int(self.machine_matched.size)


@lru_cache(maxsize=32)
def _offsets(radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer (dy, dx) offsets with ``dy^2 + dx^2 <= radius^2`` and their lengths."""
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dy**2 + dx**2 <= radius * radius
    dy, dx = dy[keep], dx[keep]
    return dy.astype(np.int64), dx.astype(np.int64), np.hypot(dy, dx)


def matching_radius(shape: tuple[int, int], max_dist: float = DEFAULT_MAX_DIST) -> float:
    """The matching radius in pixels for an image of ``shape`` ``(H, W)``: ``max_dist * sqrt(H^2 + W^2)``."""
    return float(max_dist * np.hypot(shape[0], shape[1]))


def candidate_pairs(
    machine: np.ndarray, human: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (machine pixel, human pixel) pairs within ``radius`` pixels.

    Args:
        machine, human: ``(H, W)`` bool boundary maps.
        radius: matching radius in pixels.

    Returns:
        ``(i, j, d)``: flat indices of the machine and human pixels of each pair, and their distance in pixels.
    """
    h, w = machine.shape
    dy, dx, dist = _offsets(radius)
    pad = int(np.ceil(radius))
    flat_m = np.flatnonzero(machine)
    if flat_m.size == 0 or not human.any():
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    # human pixel flat index (or -1), in a frame of `pad` background pixels
    label = np.full((h + 2 * pad, w + 2 * pad), -1, dtype=np.int64)
    flat_h = np.flatnonzero(human)
    label[pad:-pad or None, pad:-pad or None].flat[flat_h] = flat_h
    if pad == 0:
        label = label.reshape(h, w)
    rows, cols = np.divmod(flat_m, w)
    padded_w = w + 2 * pad
    base = (rows + pad) * padded_w + (cols + pad)  # (n1,)
    shift = dy * padded_w + dx  # (K,)
    partner = label.ravel()[base[:, None] + shift[None, :]]  # (n1, K)
    which_m, which_k = np.nonzero(partner >= 0)
    return flat_m[which_m], partner[which_m, which_k], dist[which_k]


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
    radius = matching_radius(machine.shape, max_dist)
    pi, pj, pd = candidate_pairs(machine, human, radius)
    return match_pairs(pi, pj, pd, outlier_cost * radius)


def match_pairs(pi: np.ndarray, pj: np.ndarray, pd: np.ndarray, unmatched_cost: float) -> Correspondence:
    """Minimum-cost matching on given candidate pairs (see the module docstring).

    Args:
        pi, pj: ``(E,)`` ids of the left and right nodes of each candidate edge (any integers).
        pd: ``(E,)`` edge costs (distances, >= 0).
        unmatched_cost: cost of leaving one node unmatched (make it larger than any path of edges to
            maximise the number of matches first).

    Returns:
        The matched left ids, right ids (pairwise aligned) and the total edge cost.
    """
    empty = np.zeros(0, np.int64)
    if pi.size == 0:
        return Correspondence(empty, empty, 0.0)
    left_ids, li = np.unique(pi, return_inverse=True)
    right_ids, rj = np.unique(pj, return_inverse=True)
    a, b = left_ids.size, right_ids.size
    # edges between pixels that have exactly one candidate on both sides are matched outright
    left_degree = np.bincount(li, minlength=a)
    right_degree = np.bincount(rj, minlength=b)
    lone = (left_degree[li] == 1) & (right_degree[rj] == 1)
    out_l = [li[lone]]
    out_r = [rj[lone]]
    cost = float(pd[lone].sum())
    rest = ~lone
    if rest.any():
        l2, r2, d2 = li[rest], rj[rest], pd[rest]
        ml, mr, c = _solve_components(l2, r2, d2, a, b, unmatched_cost)
        out_l.append(ml)
        out_r.append(mr)
        cost += c
    ml = np.concatenate(out_l)
    mr = np.concatenate(out_r)
    return Correspondence(left_ids[ml], right_ids[mr], cost)


def _solve_components(
    li: np.ndarray, rj: np.ndarray, d: np.ndarray, a: int, b: int, unmatched_cost: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Solve the augmented perfect matching on the sub-graph made of the given edges."""
    # compact node ids to the nodes these edges touch
    lu, li = np.unique(li, return_inverse=True)
    ru, rj = np.unique(rj, return_inverse=True)
    na, nb = lu.size, ru.size
    n = na + nb
    # left: [real left 0..na) + [slots of right nodes na..n); right: [real right 0..nb) + [slots of left nb..n)
    ones_a = np.arange(na)
    ones_b = np.arange(nb)
    rows = np.concatenate([li, ones_a, na + ones_b, na + rj])
    cols = np.concatenate([rj, nb + ones_a, ones_b, nb + li])
    # costs shifted by +1 (every perfect matching has n edges, so the optimum is unchanged) to keep them > 0
    weights = np.concatenate(
        [d + 1.0, np.full(na, unmatched_cost + 1.0), np.full(nb, unmatched_cost + 1.0), np.ones(li.size)]
    )
    graph = csr_matrix(coo_matrix((weights, (rows, cols)), shape=(n, n)))
    match = min_weight_full_bipartite_matching(graph)  # column of each row
    real = np.flatnonzero(match[:na] < nb)
    ml, mr = real, match[real]
    edge_lookup = csr_matrix((d, (li, rj)), shape=(na, nb))
    cost = float(np.asarray(edge_lookup[ml, mr]).sum())
    return lu[ml], ru[mr], cost
