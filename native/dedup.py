"""Repeated-span kernels of ``Engine.dedup`` over one shard.

A token index p *starts a repeat* when the ``L`` tokens from p lie in one
document and also start at a smaller index: in the suffix array the
suffixes sharing those ``L`` tokens are adjacent (a group), and every member
but the smallest index starts a repeat. Each kernel is linear in the shard
for a fixed ``L`` and keeps one byte per token.
"""
import numpy as np
from numba import prange

from . import jit, pjit
from .search import suffix

CHUNK = 1 << 16
"""Tokens (or table entries) per parallel work item."""

HEAD, LINKED, EARLIER = 1, 2, 3
"""Values of ``links``: a group's first entry, an entry that shares its
first L tokens with the one before, a head whose L-gram occurs in an
earlier shard (set by the caller; every member of its group then repeats).
0: the suffix has fewer than L tokens before its document ends."""


@pjit
def links(shard, L, sep):
    """uint8 per table entry of ``shard`` (``search.Shard``): 0, HEAD or
    LINKED (see above)."""
    tokens = shard.tokens
    n = tokens.shape[0]
    nc = (n + CHUNK - 1) // CHUNK
    valid = np.zeros(n, dtype=np.uint8)  # per token index: L real tokens from there
    for c in prange(nc):
        a, b = c * CHUNK, min(n, (c + 1) * CHUNK)
        run = 0
        while run < L and b + run < n and tokens[b + run] != sep:
            run += 1
        for p in range(b - 1, a - 1, -1):
            if tokens[p] == sep:
                run = 0
            elif run < L:
                run += 1
            valid[p] = run >= L
    out = np.zeros(n, dtype=np.uint8)
    for c in prange(nc):
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            s = suffix(shard, i)
            if not valid[s]:
                continue
            out[i] = HEAD
            if i:
                t = suffix(shard, i - 1)
                if valid[t]:
                    j = 0
                    while j < L and tokens[s + j] == tokens[t + j]:
                        j += 1
                    if j == L:
                        out[i] = LINKED
    return out


@pjit
def repeat_starts(shard, link):
    """uint8 per token index: 1 where a repeat starts. A group whose head is
    EARLIER repeats whole; any other keeps its smallest index. A group is
    walked by the chunk holding its head, past the chunk's end if need be."""
    n = shard.tokens.shape[0]
    out = np.zeros(n, dtype=np.uint8)
    for c in prange((n + CHUNK - 1) // CHUNK):
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            if link[i] != HEAD and link[i] != EARLIER:
                continue
            j = i + 1
            while j < n and link[j] == LINKED:
                j += 1
            first = -1
            if link[i] == HEAD:
                first = suffix(shard, i)
                for r in range(i + 1, j):
                    first = min(first, suffix(shard, r))
            for r in range(i, j):
                s = suffix(shard, r)
                if s != first:
                    out[s] = 1
    return out


@jit
def covered_runs(starts, L):
    """(begin, end) token indexes of the maximal runs of the union of
    [p, p + L) over the p flagged in ``starts``."""
    n = starts.shape[0]
    count, reach = 0, -1
    for p in range(n):
        if starts[p]:
            if p > reach:
                count += 1
            reach = p + L
    begin = np.empty(count, dtype=np.int64)
    end = np.empty(count, dtype=np.int64)
    k, reach = -1, -1
    for p in range(n):
        if starts[p]:
            if p > reach:
                k += 1
                begin[k] = p
            reach = p + L
            end[k] = reach
    return begin, end
