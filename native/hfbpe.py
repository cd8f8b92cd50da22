"""Byte-level BPE encoding (GPT-2's kind, Hugging Face ``tokenizers``), exact,
on UTF-8 bytes.

:func:`encode` splits each document into words with GPT-2's pre-tokenizer
pattern ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``
(:func:`_word_end`, a state machine over code points and their classes),
then turns each word into ids: from a cache of words seen before, or by
BPE over its bytes (each byte is one symbol of the byte-level alphabet):
repeatedly merge the adjacent pair of lowest merge rank, the leftmost on
ties, as ``tokenizers`` does (:func:`_bpe`).
"""
from typing import NamedTuple

import numpy as np

from . import jit
from .bpe import _find

OTHER, LETTER, NUMBER, SPACE, UNKNOWN = 0, 1, 2, 3, 4
"""Code point classes: \\p{L}, \\p{N}, \\s, the rest, and unknown (the
caller's table; a document holding an unknown one is not encoded)."""
LONG = 256
"""Words of more bytes are not cached."""
_FNV = np.uint64(0x100000001B3)
_FNV0 = np.uint64(0xCBF29CE484222325)


class Model(NamedTuple):
    """A byte-level BPE model as :func:`encode` reads it (built once)."""

    byte_id: np.ndarray
    """Id of each byte's symbol."""
    pkeys: np.ndarray
    """Merges hash table (see ``native.bpe.MULT``): (left id * nv + right
    id) -> rank << 32 | merged id; its keys,"""
    pvals: np.ndarray
    """values"""
    pshift: int
    """and shift."""
    nv: int
    """Size of the vocabulary."""


@jit(inline="always")
def _cp(data, i):
    """(code point, byte length) of the UTF-8 character at data[i] (valid UTF-8)."""
    b = np.int64(data[i])
    if b < 0x80:
        return b, 1
    if b < 0xE0:
        return ((b & 0x1F) << 6) | (data[i + 1] & 0x3F), 2
    if b < 0xF0:
        return ((b & 0x0F) << 12) | ((data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F), 3
    return (((b & 0x07) << 18) | ((data[i + 1] & 0x3F) << 12) | ((data[i + 2] & 0x3F) << 6)
            | (data[i + 3] & 0x3F)), 4


@jit(inline="always")
def _contraction(data, i, end):
    """Length of the contraction ('s 't 'm 'd 're 've 'll) at data[i], 0 if none."""
    if data[i] != 0x27 or i + 1 >= end:
        return 0
    a = data[i + 1]
    if a == 0x73 or a == 0x74 or a == 0x6D or a == 0x64:  # s t m d
        return 2
    if i + 2 < end:
        b = data[i + 2]
        if (a == 0x72 and b == 0x65) or (a == 0x76 and b == 0x65) or (a == 0x6C and b == 0x6C):
            return 3  # re ve ll
    return 0


@jit(inline="always")
def _word_end(data, i, end, cls):
    """End of the pre-tokenizer's match that starts at data[i] (< end), -1
    if it starts with a code point of class UNKNOWN."""
    n = _contraction(data, i, end)
    if n:
        return i + n
    cp, n = _cp(data, i)
    k = cls[cp]
    if cp == 0x20 and i + 1 < end:  # ' ?' before a letter, number or other run
        cp2, n2 = _cp(data, i + 1)
        if cls[cp2] != SPACE:
            i, n, k = i + 1, n2, cls[cp2]
    if k == UNKNOWN:
        return -1
    if k != SPACE:
        i += n
        while i < end:
            cp, n = _cp(data, i)
            if cls[cp] != k:
                break
            i += n
        return i
    last = i  # \s+(?!\S): a run of spaces, less its last if a non-space follows
    j = i + n
    while j < end:
        cp, n = _cp(data, j)
        if cls[cp] != SPACE:
            return last if last > i else j
        last = j
        j += n
    return end


@jit(inline="always")
def _hash(data, i, j):
    h = _FNV0
    for k in range(i, j):
        h = (h ^ np.uint64(data[k])) * _FNV
    return np.int64(h >> np.uint64(1))  # >= 0


@jit(inline="always")
def _cached(data, i, j, h, slots, meta, cbytes):
    """Slot of word data[i:j] (hash h) in the cache, or of the empty slot
    where it would go (slots[s] == -1)."""
    mask = slots.shape[0] - 1
    s = h & mask
    while True:
        e = slots[s]
        if e < 0:
            return s
        if meta[e, 0] == h and meta[e, 2] == j - i:
            off = meta[e, 1]
            k = 0
            while k < j - i and cbytes[off + k] == data[i + k]:
                k += 1
            if k == j - i:
                return s
        s = (s + 1) & mask


@jit(inline="always")
def _rank(model, a, b):
    """Packed (rank << 32 | merged id) of the merge of ids a and b, -1 if none."""
    h = _find(model.pkeys, model.pshift, np.int64(a) * model.nv + b)
    return model.pvals[h] if h >= 0 else -1


@jit(inline="always")
def _heap_push(heap, n, key):
    heap[n] = key
    i = n
    while i > 0:
        p = (i - 1) >> 1
        if heap[p] <= heap[i]:
            break
        heap[p], heap[i] = heap[i], heap[p]
        i = p
    return n + 1


@jit(inline="always")
def _heap_pop(heap, n):
    """Move the smallest key to heap[n - 1] (read it there); returns n - 1."""
    n -= 1
    heap[0], heap[n] = heap[n], heap[0]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and heap[c + 1] < heap[c]:
            c += 1
        if heap[i] <= heap[c]:
            break
        heap[i], heap[c] = heap[c], heap[i]
        i = c
    return n


@jit(inline="always")
def _push_pair(heap, n, sid, model, a, b):
    """Queue the merge of symbols a and b (if any) keyed rank, then position."""
    if a < 0 or b < 0:
        return n
    r = _rank(model, sid[a], sid[b])
    return n if r < 0 else _heap_push(heap, n, ((r >> 32) << 32) | a)


@jit(inline="always")
def _bpe(data, i, j, model, scratch, out, at):
    """BPE of the word data[i:j] (``scratch``: sid, nxt, prv and a heap, at
    least j - i and 3 (j - i) long); ids written to out[at:]; returns the new at."""
    sid, nxt, prv, heap = scratch
    m = j - i
    for k in range(m):
        sid[k] = model.byte_id[data[i + k]]
        prv[k] = k - 1
        nxt[k] = k + 1 if k + 1 < m else -1
    n = 0
    for k in range(m - 1):
        n = _push_pair(heap, n, sid, model, k, k + 1)
    while n > 0:
        n = _heap_pop(heap, n)
        a, rank = heap[n] & 0xFFFFFFFF, heap[n] >> 32
        b = nxt[a] if sid[a] >= 0 else -1
        if b < 0:
            continue  # merged into its left neighbour, or last
        r = _rank(model, sid[a], sid[b])
        if r < 0 or r >> 32 != rank:
            continue  # stale: a side changed since it was queued
        sid[a], sid[b] = r & 0xFFFFFFFF, -1
        nxt[a] = nxt[b]
        if nxt[b] >= 0:
            prv[nxt[b]] = a
        n = _push_pair(heap, n, sid, model, prv[a], a)
        n = _push_pair(heap, n, sid, model, a, nxt[a])
    k = 0
    while k >= 0:
        out[at] = sid[k]
        at += 1
        k = nxt[k]
    return at


@jit
def encode(data, bounds, cls, model, cache):
    """Ids of each document data[bounds[d]:bounds[d+1]] (UTF-8): (ids,
    counts), document d's ids being ids[bounds[d]:bounds[d] + counts[d]],
    by the :class:`Model` ``model``. ``cls``: class per code point. The
    word ``cache``, kept across calls: (slots, meta, cbytes, cids, fill):
    ``slots`` (hash table, -1 empty) -> rows of ``meta`` (hash, byte offset
    in ``cbytes``, length, id offset in ``cids``, id count); ``fill``: rows,
    bytes and ids used. It is emptied when one of them is full."""
    slots, meta, cbytes, cids, fill = cache
    out = np.empty(max(1, bounds[-1]), dtype=np.uint32)
    counts = np.zeros(bounds.shape[0] - 1, dtype=np.int64)
    cap = LONG
    scratch = (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64),
               np.empty(3 * cap, np.int64))
    for d in range(bounds.shape[0] - 1):
        at, end = bounds[d], bounds[d + 1]
        i = at
        while i < end:
            j = _word_end(data, i, end, cls)
            if j < 0:
                at = bounds[d] - 1
                break
            m = j - i
            if m > LONG:
                if m > cap:
                    cap = m
                    scratch = (np.empty(m, np.int64), np.empty(m, np.int64),
                               np.empty(m, np.int64), np.empty(3 * m, np.int64))
                at = _bpe(data, i, j, model, scratch, out, at)
                i = j
                continue
            h = _hash(data, i, j)
            s = _cached(data, i, j, h, slots, meta, cbytes)
            e = slots[s]
            if e >= 0:
                for k in range(meta[e, 4]):
                    out[at + k] = cids[meta[e, 3] + k]
                at += meta[e, 4]
                i = j
                continue
            first = at
            at = _bpe(data, i, j, model, scratch, out, at)
            if (fill[0] + 1 > meta.shape[0] or fill[1] + m > cbytes.shape[0]
                    or fill[2] + at - first > cids.shape[0]):
                slots[:] = -1
                fill[:] = 0
                s = _cached(data, i, j, h, slots, meta, cbytes)
            e = fill[0]
            meta[e, 0], meta[e, 1], meta[e, 2], meta[e, 3], meta[e, 4] = h, fill[1], m, fill[2], at - first
            cbytes[fill[1]:fill[1] + m] = data[i:j]
            cids[fill[2]:fill[2] + at - first] = out[first:at]
            fill[0], fill[1], fill[2] = e + 1, fill[1] + m, fill[2] + at - first
            slots[s] = e
            i = j
        counts[d] = at - bounds[d]
    return out, counts
