"""Suffix sorting by prefix doubling, on all cores: for strings whose
characters are mostly distinct already (the named blocks of a
difference-cover sample), where a few rounds over the few tied suffixes
beat one SA-IS run on one core."""
import numpy as np
from numba import prange

from . import jit, pjit


@jit
def _buckets(s, K, SA, rank):
    """SA: the positions of ``s`` (alphabet [0, K)) by their first
    character; rank[i]: the first entry of s[i]'s bucket. Returns the
    (starts, ends) of the buckets of two or more positions."""
    counts = np.zeros(K + 1, SA.dtype)
    for i in range(s.shape[0]):
        counts[s[i] + 1] += 1
    tied = 0
    for c in range(K):
        tied += counts[c + 1] > 1
        counts[c + 1] += counts[c]
    starts = np.empty(tied, np.int64)
    ends = np.empty(tied, np.int64)
    k = 0
    for c in range(K):
        if counts[c + 1] - counts[c] > 1:
            starts[k], ends[k] = counts[c], counts[c + 1]
            k += 1
    fill = counts[:K].copy()  # counts[c]: the first entry of bucket c
    for i in range(s.shape[0]):
        c = s[i]
        rank[i] = counts[c]
        SA[fill[c]] = i
        fill[c] += 1
    return starts, ends


@jit
def _groups(SA, rank, lo, hi):
    """(starts, ends) of the runs of two or more entries of SA[lo[g]:hi[g]]
    (each g) that share a rank."""
    count = 0
    for g in range(lo.shape[0]):
        a = lo[g]
        for j in range(lo[g] + 1, hi[g] + 1):
            if j == hi[g] or rank[SA[j]] != rank[SA[a]]:
                count += j - a > 1
                a = j
    starts = np.empty(count, np.int64)
    ends = np.empty(count, np.int64)
    k = 0
    for g in range(lo.shape[0]):
        a = lo[g]
        for j in range(lo[g] + 1, hi[g] + 1):
            if j == hi[g] or rank[SA[j]] != rank[SA[a]]:
                if j - a > 1:
                    starts[k], ends[k] = a, j
                    k += 1
                a = j
    return starts, ends


@pjit
def _refine(SA, rank, lo, hi, h):
    """Sort each tied group SA[lo[g]:hi[g]] by the rank of the suffix h
    further on (-1 past the end: a shorter suffix sorts first), and give
    each entry the first entry of its refined group as its rank. Every
    key is read before any rank changes (two passes)."""
    n = SA.shape[0]
    at = np.zeros(lo.shape[0] + 1, np.int64)  # group g's keys: keys[at[g]:at[g + 1]]
    for g in range(lo.shape[0]):
        at[g + 1] = at[g] + hi[g] - lo[g]
    keys = np.empty(at[-1], np.int64)
    for g in prange(lo.shape[0]):
        for j in range(lo[g], hi[g]):
            p = SA[j] + h
            keys[at[g] + j - lo[g]] = rank[p] if p < n else -1
    for g in prange(lo.shape[0]):
        a, b = lo[g], hi[g]
        key = keys[at[g]:at[g + 1]]
        order = np.argsort(key, kind="mergesort")
        part = SA[a:b].copy()
        start = a
        for t in range(b - a):
            if t > 0 and key[order[t]] != key[order[t - 1]]:
                start = a + t
            SA[a + t] = part[order[t]]
            rank[part[order[t]]] = start


def suffix_array(s: np.ndarray, K: int, max_tied: float) -> np.ndarray | None:
    """The int32 suffix array of ``s`` (alphabet [0, K), every suffix
    distinct, e.g. ended by a unique character), or None when more than
    ``max_tied`` of its positions share their first character with another
    (then SA-IS, linear in any case, is the better choice) or when s is too
    long for int32 (its arrays would take 8 bytes an entry: 32 bytes a
    position in all, where SA-IS takes less). Memory: about 16 bytes a
    position, and 10 more per tied one."""
    n = s.shape[0]
    if n >= np.iinfo(np.int32).max or K >= np.iinfo(np.int32).max:
        return None
    SA = np.empty(n, np.int32)
    rank = np.empty(n, np.int32)
    lo, hi = _buckets(s, K, SA, rank)
    if (hi - lo).sum() > max_tied * n:
        return None
    h = 1
    while lo.shape[0]:
        _refine(SA, rank, lo, hi, h)
        lo, hi = _groups(SA, rank, lo, hi)
        h *= 2
    return SA
