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


@jit(inline="always")
def _doc_of(starts, first, shift, p):
    """The document holding token index p (see ``locate``)."""
    d = first[p >> shift]
    while d < starts.shape[0] - 1 and starts[d + 1] <= p:
        d += 1
    return d


@jit
def locate(s, lo, hi, starts, first, shift):
    """(local document, token offset in it) of the suffixes of entries
    [lo, hi): ``starts`` holds each document's separator index (ascending),
    first[b] the document holding token index b << shift."""
    docs = np.empty(hi - lo, dtype=np.int64)
    offsets = np.empty(hi - lo, dtype=np.int64)
    for i in range(lo, hi):
        p = suffix(s, i)
        d = _doc_of(starts, first, shift, p)
        docs[i - lo] = d
        offsets[i - lo] = p - starts[d] - 1
    return docs, offsets


@jit
def first_docs(s, lo, hi, starts, first, shift, limit):
    """(number of distinct documents holding a suffix of entries [lo, hi);
    the first ``limit`` of them, ascending; the smallest token offset of
    such a suffix in each), as ``locate`` finds documents. Two passes over
    the entries and one byte per document: memory does not grow with hi - lo."""
    seen = np.zeros(starts.shape[0], dtype=np.uint8)
    n_docs = 0
    for i in range(lo, hi):
        d = _doc_of(starts, first, shift, suffix(s, i))
        n_docs += 1 - seen[d]
        seen[d] = 1
    docs = np.empty(min(limit, n_docs), dtype=np.int64)
    k = d = 0
    while k < docs.shape[0]:
        if seen[d]:
            docs[k] = d
            k += 1
        d += 1
    offsets = np.full(docs.shape[0], np.iinfo(np.int64).max, dtype=np.int64)
    if docs.shape[0]:
        for i in range(lo, hi):
            p = suffix(s, i)
            d = _doc_of(starts, first, shift, p)
            j = np.searchsorted(docs, d)
            if d <= docs[-1] and docs[j] == d:
                offsets[j] = min(offsets[j], p - starts[d] - 1)
    return n_docs, docs, offsets
