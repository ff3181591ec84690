"""Sparse minimum-cost matching where every node may stay unmatched at a fixed price.

Problem: a bipartite graph of ``n_rows`` x ``n_cols`` nodes with non-negative edge costs; find the matching
that minimises ``sum(matched edge costs) + unmatched_cost * (number of unmatched rows)``. (Leaving a
column unmatched has no cost of its own here; for a per-node outlier price ``c`` on both sides, pass
``unmatched_cost = 2 c``: the two objectives differ by a constant.)

Method: each row gets a private "unmatched" column of cost ``unmatched_cost``, which makes it a rectangular
assignment problem, solved exactly by successive shortest augmenting paths (Jonker-Volgenant style): rows
are inserted one at a time (by increasing cheapest edge, then degree), each by a Dijkstra search over the
alternating graph with reduced costs ``cost(i, j) - v[j]`` (column prices ``v``; a row's matched edge is
always its cheapest reduced edge), then the prices of the scanned columns are lowered by ``mu - dist[j]``.
Searches stop at the first free column, so on local geometric graphs most touch only a few nodes. Ties are
broken by column index, so the result is deterministic.

The kernel is compiled with numba when it is installed (``pip install numba``; set the environment variable
``FASTSAM_NO_NUMBA=1`` to disable it); otherwise it runs as plain Python on lists (same results, tens of times slower).
"""

from __future__ import annotations

import os

import numpy as np


def _solve(indptr, cols, costs, row_order, n_rows, n_cols, unmatched_cost, price, col_row, row_col, row_cost, dist,
           pred_row, pred_cost, scanned, touched, done, heap_key, heap_val):  # fmt: skip
    """Row -> column assignment into ``row_col`` (columns >= n_cols: unmatched).

    Rows are inserted in ``row_order``. Works on numpy arrays (numba) or on Python lists (plain Python).
    Work arrays have ``n_cols + n_rows`` entries (``row_col``, ``row_cost``: ``n_rows``; the binary heap
    ``heap_key``/``heap_val``: number of edges + ``n_rows`` + 1), initialised to: price 0, col_row -1,
    dist inf, scanned False.
    """
    for t_row in range(n_rows):
        k = row_order[t_row]
        size = 0  # heap of (tentative distance, column), lazy deletion
        n_touched = 0
        n_done = 0
        m = k  # the row being expanded
        base = 0.0  # its distance minus the reduced cost of its matched edge
        end = -1
        mu = 0.0
        while True:
            # relax the edges of row m, then its private "unmatched" column
            for e in range(indptr[m], indptr[m + 1] + 1):
                if e < indptr[m + 1]:
                    j = cols[e]
                    c = costs[e]
                else:
                    j = n_cols + m
                    c = unmatched_cost
                if scanned[j]:
                    continue
                d = base + c - price[j]
                if d < dist[j]:
                    if dist[j] == np.inf:
                        touched[n_touched] = j
                        n_touched += 1
                    dist[j] = d
                    pred_row[j] = m
                    pred_cost[j] = c
                    # heap push (sift up); ties pop the smaller column first
                    pos = size
                    size += 1
                    while pos > 0:
                        parent = (pos - 1) >> 1
                        pk = heap_key[parent]
                        if pk < d or (pk == d and heap_val[parent] <= j):
                            break
                        heap_key[pos] = pk
                        heap_val[pos] = heap_val[parent]
                        pos = parent
                    heap_key[pos] = d
                    heap_val[pos] = j
            # pop the nearest column not yet scanned
            j = -1
            dj = 0.0
            while size > 0:
                dj = heap_key[0]
                j = heap_val[0]
                size -= 1
                last_k = heap_key[size]
                last_v = heap_val[size]
                pos = 0
                while True:  # sift down
                    child = 2 * pos + 1
                    if child >= size:
                        break
                    if child + 1 < size and (
                        heap_key[child + 1] < heap_key[child]
                        or (heap_key[child + 1] == heap_key[child] and heap_val[child + 1] < heap_val[child])
                    ):
                        child += 1
                    if last_k < heap_key[child] or (last_k == heap_key[child] and last_v <= heap_val[child]):
                        break
                    heap_key[pos] = heap_key[child]
                    heap_val[pos] = heap_val[child]
                    pos = child
                if size > 0:
                    heap_key[pos] = last_k
                    heap_val[pos] = last_v
                if not scanned[j] and dj <= dist[j]:
                    break
                j = -1
            # (the private column of row k is always reachable, so the heap cannot run dry first)
            scanned[j] = True
            done[n_done] = j
            n_done += 1
            m = col_row[j]
            if m < 0:
                end = j
                mu = dj
                break
            base = dj - (row_cost[m] - price[j])  # the matched edge has reduced cost 0
        # lower the prices of the scanned columns, then augment along the predecessor chain
        for t in range(n_done):
            j = done[t]
            price[j] += dist[j] - mu
        j = end
        while True:
            i = pred_row[j]
            previous = row_col[i]
            row_col[i] = j
            col_row[j] = i
            row_cost[i] = pred_cost[j]
            if i == k:
                break
            j = previous
        for t in range(n_touched):
            j = touched[t]
            dist[j] = np.inf
            scanned[j] = False


_kernel = None


def _get_kernel():
    """The compiled kernel (numba), or None when numba is unavailable or disabled."""
    global _kernel
    if _kernel is None:
        _kernel = False
        if os.environ.get("FASTSAM_NO_NUMBA", "") in ("", "0"):
            try:
                import numba
            except ImportError:
                pass
            else:
                _kernel = numba.njit(cache=True, nogil=True)(_solve)
    return _kernel or None


def numba_enabled() -> bool:
    """Whether the compiled kernel is used."""
    return _get_kernel() is not None


def min_cost_matching(
    rows: np.ndarray,
    cols: np.ndarray,
    costs: np.ndarray,
    n_rows: int,
    n_cols: int,
    unmatched_cost: float,
) -> np.ndarray:
    """Minimum-cost matching with a price for each unmatched row (see the module docstring).

    Args:
        rows, cols: ``(E,)`` int row and column index of each edge (``0 <= rows < n_rows``, ``0 <= cols < n_cols``).
        costs: ``(E,)`` float edge costs, ``>= 0``.
        n_rows, n_cols: numbers of nodes on each side.
        unmatched_cost: price of an unmatched row (edges dearer than that are never used).

    Returns:
        ``(n_rows,)`` int64: the column matched to each row, -1 where the row stays unmatched.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    costs = np.asarray(costs, dtype=np.float64)
    if n_rows == 0:
        return np.zeros(0, np.int64)
    if rows.size and np.any(rows[1:] < rows[:-1]):  # group the edges by row (CSR)
        order = np.argsort(rows, kind="stable")
        rows, cols, costs = rows[order], cols[order], costs[order]
    degree = np.bincount(rows, minlength=n_rows)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(degree, out=indptr[1:])
    # rows are inserted by increasing cheapest edge, then increasing degree (fewer long augmenting paths)
    cheapest = np.full(n_rows, np.inf)
    has_edges = degree > 0
    if rows.size:
        cheapest[has_edges] = np.minimum.reduceat(costs, indptr[:-1][has_edges])
    row_order = np.lexsort((degree, cheapest)).astype(np.int64)
    n_all = n_cols + n_rows
    n_heap = cols.size + n_rows + 1
    kernel = _get_kernel()
    if kernel is not None:
        row_col = np.full(n_rows, -1, dtype=np.int64)
        work = (
            np.zeros(n_all),  # price
            np.full(n_all, -1, dtype=np.int64),  # col_row
            row_col,
            np.zeros(n_rows),  # row_cost
            np.full(n_all, np.inf),  # dist
            np.full(n_all, -1, dtype=np.int64),  # pred_row
            np.zeros(n_all),  # pred_cost
            np.zeros(n_all, dtype=np.bool_),  # scanned
            np.zeros(n_all, dtype=np.int64),  # touched
            np.zeros(n_all, dtype=np.int64),  # done
            np.zeros(n_heap),  # heap_key
            np.zeros(n_heap, dtype=np.int64),  # heap_val
        )
        kernel(indptr, cols, costs, row_order, int(n_rows), int(n_cols), float(unmatched_cost), *work)
    else:
        lists = ([0.0] * n_all, [-1] * n_all, [-1] * n_rows, [0.0] * n_rows, [np.inf] * n_all, [-1] * n_all,
                 [0.0] * n_all, [False] * n_all, [0] * n_all, [0] * n_all, [0.0] * n_heap, [0] * n_heap)  # fmt: skip
        _solve(
            indptr.tolist(),
            cols.tolist(),
            costs.tolist(),
            row_order.tolist(),
            int(n_rows),
            int(n_cols),
            float(unmatched_cost),
            *lists,
        )
        row_col = np.asarray(lists[2], dtype=np.int64)
    row_col[row_col >= n_cols] = -1
    return row_col
