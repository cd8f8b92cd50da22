"""Count-of-counts of the k-grams of one shard, for Kneser-Ney discounts."""
import numpy as np

from . import jit
from .search import suffix

MOST = 4
"""Counts of counts are kept for k-grams seen 1..MOST times (modified
Kneser-Ney's discounts need n1..n4)."""


@jit(inline="always")
def _grow(a, size):
    """``a`` with room for at least ``size`` entries (doubled, contents kept)."""
    if size <= a.shape[0]:
        return a
    b = np.empty(max(2 * a.shape[0], size), dtype=a.dtype)
    b[:a.shape[0]] = a
    return b


@jit
def kgram_counts(s, n, collect):
    """For k = 1..n and c = 1..MOST: how many distinct k-grams of real
    tokens (no separator, so none crosses a document) occur exactly c times
    in this shard (``seen[c, k]``), in one pass over the suffix array (the
    entries of one k-gram are adjacent). With ``collect``, also the token
    index and order of one occurrence of every k-gram seen at most MOST
    times here (the only ones that can be seen at most MOST times over
    several shards)."""
    tokens = s.tokens
    size = tokens.shape[0]
    sep = tokens.dtype.type(-1)
    seen = np.zeros((MOST + 1, n + 1), dtype=np.int64)
    run = np.zeros(n + 1, dtype=np.int64)
    start = np.zeros(n + 1, dtype=np.int64)
    where = np.zeros(1024 if collect else 0, dtype=np.int64)
    order = np.zeros(where.shape[0], dtype=np.int64)
    found = 0
    prev_p, prev_len = 0, 0
    for i in range(size + 1):
        p, length, common = 0, 0, 0
        if i < size:
            p = suffix(s, i)
            while length < n and p + length < size and tokens[p + length] != sep:
                length += 1
            m = min(length, prev_len)
            while common < m and tokens[p + common] == tokens[prev_p + common]:
                common += 1
        for k in range(common + 1, n + 1):  # the groups of order k > common end here
            c = run[k]
            if 1 <= c <= MOST:
                seen[c, k] += 1
                if collect:
                    where = _grow(where, found + 1)
                    order = _grow(order, found + 1)
                    where[found], order[found] = start[k], k
                    found += 1
            run[k] = 1 if k <= length else 0
            start[k] = p
        for k in range(1, common + 1):
            run[k] += 1
        prev_p, prev_len = p, length
    return seen, where[:found], order[:found]
