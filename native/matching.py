"""Matching statistics: for every start of a query, the longest prefix that
occurs in the shard (conventions in :mod:`.search`)."""
import numpy as np

from . import jit
from .keys import byte_key, packing, width_of
from .search import search_span, suffix
from .tally import next_group


@jit
def matching_lengths(s, ids):
    """int64 array: entry i is the length of the longest prefix of ids[i:]
    that occurs in the shard.

    One pass: the suffix-array range of the current match ids[i:i+m] is
    extended a token at a time (the group of the next token inside it, or,
    while the key sample covers the query, a sampled search); when it cannot
    grow, the first token is dropped. The match at i+1 is at least m - 1
    long, so the one search of ids[i+1:i+m] starts the next extension:
    about N extensions and N searches in all."""
    n = s.tokens.shape[0]
    width = width_of(s.tokens)
    _, c = packing(width)
    N = len(ids)
    out = np.zeros(N, dtype=np.int64)
    m = 0
    lo, hi = 0, n
    for i in range(N):
        if m > 1:
            m -= 1
            lo, hi = search_span(s, ids, i, i + m)
        else:
            m, lo, hi = 0, 0, n
        while i + m < N:
            if m < c:
                a, b = search_span(s, ids, i, i + m + 1)
            else:
                a, b = next_group(s, m, lo, hi, byte_key(ids[i + m], width))
            if b <= a:
                break
            lo, hi = a, b
            m += 1
        out[i] = m
    return out


@jit
def locate(s, lo, hi, starts, first, shift):
    """(local document, token offset in it) of the suffixes of entries
    [lo, hi): ``starts`` holds each document's separator index (ascending),
    first[b] the document holding token index b << shift."""
    docs = np.empty(hi - lo, dtype=np.int64)
    offsets = np.empty(hi - lo, dtype=np.int64)
    last = starts.shape[0] - 1
    for i in range(lo, hi):
        p = suffix(s, i)
        d = first[p >> shift]
        while d < last and starts[d + 1] <= p:
            d += 1
        docs[i - lo] = d
        offsets[i - lo] = p - starts[d] - 1
    return docs, offsets
