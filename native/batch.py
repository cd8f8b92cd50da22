"""Batch counting: many searches advanced in lockstep so their memory reads
overlap (conventions in :mod:`.search`)."""
import numpy as np
from numba import prange

from . import jit, lean, pjit
from .keys import packing
from .memory import prefetch
from .ptrs import prefetch_entry
from .search import DONE, advance, narrow, pack_query, probes, suffix


@jit
def visit_order(flat, bounds, width):
    """A visiting order for ``count_many``: the queries grouped by the top
    bits of the packed key of their first tokens (a counting sort; about as
    many groups as queries), i.e. roughly in suffix order, so that
    neighbouring searches share their first reads."""
    bits, c = packing(width)
    nq = bounds.shape[0] - 1
    b = 1
    while b < 16 and (1 << b) < nq:
        b += 1
    group = np.empty(nq, dtype=np.int64)
    starts = np.zeros((1 << b) + 1, dtype=np.int64)
    for j in range(nq):
        group[j] = pack_query(flat, bounds[j], bounds[j + 1], width, c, 0) >> (bits * c - b)
        starts[group[j] + 1] += 1
    for k in range(1 << b):
        starts[k + 1] += starts[k]
    order = np.empty(nq, dtype=np.int64)
    for j in range(nq):
        order[starts[group[j]]] = j
        starts[group[j]] += 1
    return order


@jit(inline="always")
def _put(state, t, j, phase, x0, x1, y0, y1, depth):
    """Store search t of a lockstep batch: query j and its ``advance`` state."""
    state[t, 0], state[t, 1], state[t, 2], state[t, 3] = j, phase, x0, x1
    state[t, 4], state[t, 5], state[t, 6] = y0, y1, depth


@jit(inline="always")
def _get(state, t):
    """(j, phase, x0, x1, y0, y1, depth) of search t (see ``_put``)."""
    return (state[t, 0], state[t, 1], state[t, 2], state[t, 3], state[t, 4], state[t, 5],
            state[t, 6])


@jit(inline="always")
def _prefetch_step(s, state, t, token):
    """Prefetch what search t's next ``advance`` reads: its probes' table
    entries, or (``token``) the first token each of them compares."""
    _, phase, x0, x1, y0, y1, depth = _get(state, t)
    for p in probes(phase, x0, x1, y0, y1):
        if p >= 0:
            if token:
                prefetch(s.tokens, suffix(s, p) + depth)
            else:
                prefetch_entry(s.table, p, s.pointer)


LOCKSTEP = 32
"""Searches ``count_many`` advances together, one bisection step each in
turn, so that their memory reads overlap."""


@lean
def _count_run(s, flat, bounds, order, i0, i1, state, out):
    """``count_many`` for the queries order[i0:i1], LOCKSTEP at a time
    (``state``: LOCKSTEP x 7 scratch): each step prefetches every search's
    table entries, then their tokens, then compares."""
    for i in range(i0, i1, LOCKSTEP):
        g = min(LOCKSTEP, i1 - i)
        for t in range(g):
            j = order[i + t]
            phase, x0, x1, y0, y1, depth = narrow(s, flat, bounds[j], bounds[j + 1])
            _put(state, t, j, phase, x0, x1, y0, y1, depth)
        busy = g
        while busy:
            busy = 0
            for t in range(g):
                _prefetch_step(s, state, t, False)
            for t in range(g):
                _prefetch_step(s, state, t, True)
            for t in range(g):
                j, phase, x0, x1, y0, y1, depth = _get(state, t)
                if phase != DONE:
                    phase, x0, x1, y0, y1 = advance(s, flat, bounds[j], bounds[j + 1], depth,
                                                     phase, x0, x1, y0, y1)
                    _put(state, t, j, phase, x0, x1, y0, y1, depth)
                    busy += phase != DONE
        for t in range(g):
            j, _, x0, _, y0, _, _ = _get(state, t)
            out[j] = y0 - x0


@pjit
def count_many(s, flat, bounds, order):
    """Occurrences of each query ``flat[bounds[j]:bounds[j + 1]]``.

    Queries are visited in ``order`` (best: sorted in suffix order, so that
    neighbouring searches read the same sample keys and entries; any order
    is correct), split into contiguous chunks spread over all cores, each
    run by ``_count_run`` (the parallel loop stays small: inlined, the
    searches made it compile much slower).
    """
    nq = bounds.shape[0] - 1
    out = np.empty(nq, dtype=np.int64)
    chunks = min(nq, 64)
    for k in prange(chunks):
        state = np.empty((LOCKSTEP, 7), dtype=np.int64)
        _count_run(s, flat, bounds, order, k * nq // chunks, (k + 1) * nq // chunks, state, out)
    return out
