"""Sentencepiece BPE encoding, exact, on Unicode code points.

:func:`encode` takes a batch of documents as code points with document
bounds, escapes spaces to U+2581 (and prepends one with ``dummy``), and
writes each document's ids into its own room of one output array.

Sentencepiece splits the normalized text into characters (a user-defined
symbol is one frozen character), then repeatedly merges the adjacent pair
whose concatenation is a piece of highest score, the leftmost on ties, and
emits each final symbol's id, or the byte pieces of an unknown character.
This does exactly that, with integer tables instead of strings: ``pairs``
maps (left id, right id) to the merged piece's id, and ``inner`` holds the
code-point bigrams that occur inside some piece. A merge can only join two
characters that form such a bigram, so the text is cut into words where two
neighbours do not (or one is frozen): the merges of different words are
independent, and each word runs its own small heap.
"""
from typing import NamedTuple

import numpy as np

from . import jit, lean

SPACE = 0x2581
"""Sentencepiece's escaped space, U+2581 LOWER ONE EIGHTH BLOCK."""

MULT = 0x9E3779B97F4A7C15
"""Hash tables (built by the caller): key k sits in slot (k * MULT mod 2^64) >> shift,
or the next free one (linear probing); empty slots hold -1."""
_MULT = np.uint64(MULT)


class Model(NamedTuple):
    """A sentencepiece BPE model as :func:`encode` reads it (built once)."""

    char_id: np.ndarray
    """Per code point, its one-character piece (-1 if none)."""
    frozen: np.ndarray
    """Per code point, whether it is a user-defined symbol (uint8)."""
    pkeys: np.ndarray
    """``pairs`` hash table (left id * nv + right id -> merged id): keys,"""
    pvals: np.ndarray
    """its values"""
    pshift: int
    """and shift."""
    nv: int
    """Pieces in the model."""
    scores: np.ndarray
    """float32 score of each piece."""
    inner_keys: np.ndarray
    """``inner`` hash set (code-point bigrams inside some piece): keys"""
    inner_shift: int
    """and shift."""
    byte_id: np.ndarray
    """Id of each byte's piece, for unknown characters."""
    unk: int
    """Without byte pieces (-1 with), the id written for unknown characters."""


@jit(inline="always")
def _slot(key, shift):
    return np.int64((np.uint64(key) * _MULT) >> np.uint64(shift))


@jit(inline="always")
def _find(keys, shift, key):
    """Slot of ``key`` in a hash table (see MULT), -1 if absent."""
    mask = keys.shape[0] - 1
    h = _slot(key, shift)
    while True:
        k = keys[h]
        if k == key:
            return h
        if k == -1:
            return -1
        h = (h + 1) & mask


@jit(inline="always")
def _lookup(table, cp):
    """Entry of dense per-code-point ``table`` (-1 past its end)."""
    return table[cp] if cp < table.shape[0] else -1


@jit(inline="always")
def _utf8_len(cp):
    return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4


@jit(inline="always")
def _unknown(cp, model, first, out, at):
    """Write the byte pieces of unknown character cp's UTF-8 bytes to out[at:]
    or, with ``unk`` >= 0 (no byte pieces), the unknown id, once for a run of
    unknown characters as sentencepiece merges them (the document's ids
    start at out[first]); returns the new at."""
    byte_id, unk = model.byte_id, model.unk
    if unk >= 0:
        if at > first and out[at - 1] == unk:
            return at
        out[at] = unk
        return at + 1
    size = _utf8_len(cp)
    if size == 1:
        out[at] = byte_id[cp]
    else:  # lead byte 110xxxxx, 1110xxxx or 11110xxx, then 10xxxxxx
        out[at] = byte_id[((0xFF00 >> size) & 0xFF) | (cp >> (6 * (size - 1)))]
        for j in range(1, size):
            out[at + j] = byte_id[0x80 | ((cp >> (6 * (size - 1 - j))) & 0x3F)]
    return at + size


@jit(inline="always")
def _length(bounds, d, dummy):
    """Length of document d once normalized."""
    size = bounds[d + 1] - bounds[d]
    return size + 1 if dummy and size else size


@jit(inline="always")
def _char(cps, b0, dummy, i):
    """Character i of the normalized document that starts at cps[b0]:
    spaces escaped, after a U+2581 with ``dummy``."""
    if dummy:
        if i == 0:
            return np.int64(SPACE)
        i -= 1
    cp = np.int64(cps[b0 + i])
    return np.int64(SPACE) if cp == 0x20 else cp


@jit(inline="always")
def _joined(a, b, model):
    """Whether neighbours a, b may end up in one piece (the same word)."""
    if _lookup(model.frozen, a) > 0 or _lookup(model.frozen, b) > 0:
        return False
    return _find(model.inner_keys, model.inner_shift, a * 0x110000 + b) >= 0


@lean
def _room(cps, bounds, dummy, model, starts):
    """Fill starts[1:] with where each document's room in the output ends
    (an id per character that is a piece, one per byte of the others);
    returns the longest word's length."""
    longest = 0
    for d in range(bounds.shape[0] - 1):
        room = word = prev = 0
        for i in range(_length(bounds, d, dummy)):
            cp = _char(cps, bounds[d], dummy, i)
            room += 1 if _lookup(model.char_id, cp) >= 0 else _utf8_len(cp)
            word = word + 1 if i and _joined(prev, cp, model) else 1
            longest = max(longest, word)
            prev = cp
        starts[d + 1] = starts[d] + room
    return longest


@jit(inline="always")
def _better(hs, hl, a, b):
    """Whether heap entry a pops before b: higher score, then leftmost."""
    return hs[a] > hs[b] or (hs[a] == hs[b] and hl[a] < hl[b])


@jit(inline="always")
def _swap(heap, a, b):
    hs, hl, hr, hz, hm = heap
    hs[a], hs[b] = hs[b], hs[a]
    hl[a], hl[b] = hl[b], hl[a]
    hr[a], hr[b] = hr[b], hr[a]
    hz[a], hz[b] = hz[b], hz[a]
    hm[a], hm[b] = hm[b], hm[a]


@jit(inline="always")
def _push(heap, n, score, left, right, size, merged):
    """Add an entry to the ``heap`` (hs, hl, hr, hz, hm: score, left, right,
    size, merged id) of n entries; returns n + 1."""
    hs, hl, hr, hz, hm = heap
    hs[n], hl[n], hr[n], hz[n], hm[n] = score, left, right, size, merged
    i = n
    while i > 0:
        p = (i - 1) >> 1
        if not _better(hs, hl, i, p):
            break
        _swap(heap, i, p)
        i = p
    return n + 1


@jit(inline="always")
def _pop(heap, n):
    """Move the best entry to slot n - 1 (read it there); returns n - 1."""
    hs, hl = heap[0], heap[1]
    n -= 1
    _swap(heap, 0, n)
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _better(hs, hl, c + 1, c):
            c += 1
        if not _better(hs, hl, c, i):
            break
        _swap(heap, i, c)
        i = c
    return n


@jit(inline="always")
def _pair(sid, frz, model, left, right):
    """Merged piece id of symbols left and right, -1 if they cannot merge."""
    if left < 0 or right < 0 or frz[left] or frz[right] or sid[left] < 0 or sid[right] < 0:
        return -1
    h = _find(model.pkeys, model.pshift, np.int64(sid[left]) * model.nv + sid[right])
    return model.pvals[h] if h >= 0 else -1


@jit(inline="always")
def _word(model, m, first, word, heap, out, at):
    """BPE of the word s[:m] (``word``: s and the scratch sid, frz, clen,
    prv, nxt, each at least m long; ``heap``: see ``_push``); ids written
    to out[at:] (the document's from out[first]); returns the new at."""
    s, sid, frz, clen, prv, nxt = word
    hl, hr, hz, hm = heap[1], heap[2], heap[3], heap[4]
    scores = model.scores
    for k in range(m):
        cp = s[k]
        sid[k] = _lookup(model.char_id, cp)
        frz[k] = _lookup(model.frozen, cp) > 0
        clen[k] = 1
        prv[k] = k - 1
        nxt[k] = k + 1 if k + 1 < m else -1
    n = 0
    for k in range(m - 1):
        p = _pair(sid, frz, model, k, k + 1)
        if p >= 0:
            n = _push(heap, n, scores[p], k, k + 1, 2, p)
    while n > 0:
        n = _pop(heap, n)
        a, b = hl[n], hr[n]
        if clen[a] == 0 or clen[b] == 0 or clen[a] + clen[b] != hz[n]:
            continue  # stale: one side changed since it was pushed
        sid[a] = hm[n]
        clen[a] += clen[b]
        clen[b] = 0
        nxt[a] = nxt[b]
        if nxt[b] >= 0:
            prv[nxt[b]] = a
        for x in (prv[a], a):  # the pairs (prev, a) and (a, next)
            y = nxt[x] if x >= 0 else -1
            p = _pair(sid, frz, model, x, y)
            if p >= 0:
                n = _push(heap, n, scores[p], x, y, clen[x] + clen[y], p)
    k = 0
    while k >= 0:
        if sid[k] >= 0:
            out[at] = sid[k]
            at += 1
        else:
            at = _unknown(s[k], model, first, out, at)
        k = nxt[k]
    return at


@jit
def encode(cps, bounds, dummy, model):
    """Ids of each document cps[bounds[d]:bounds[d+1]]: (ids, starts,
    counts), document d's ids being ids[starts[d]:starts[d] + counts[d]],
    by the :class:`Model` ``model``; an unknown character is written as
    byte pieces or, if ``model.unk`` >= 0, as that id.
    Scratch memory is sized by the longest word, not document."""
    nd = bounds.shape[0] - 1
    starts = np.zeros(nd + 1, dtype=np.int64)
    n = _room(cps, bounds, dummy, model, starts) + 1
    out = np.empty(starts[nd], dtype=np.uint32)
    counts = np.zeros(nd, dtype=np.int64)
    ints = np.empty((5, n), dtype=np.int64)  # the word, sid, clen, prv, nxt
    frz = np.empty(n, dtype=np.bool_)
    hs = np.empty(3 * n, dtype=np.float32)  # the heap: score, left, right, size, merged id
    heap = np.empty((4, 3 * n), dtype=np.int64)
    _encode(cps, bounds, dummy, model, (starts, out, counts),
            (ints[0], ints[1], frz, ints[2], ints[3], ints[4]),
            (hs, heap[0], heap[1], heap[2], heap[3]))
    return out, starts, counts


@lean
def _encode(cps, bounds, dummy, model, ids, word, heap):
    """The loop of :func:`encode`: ``ids`` its (starts, out, counts),
    ``word`` and ``heap`` scratch as ``_word`` takes them."""
    starts, out, counts = ids
    s = word[0]
    for d in range(bounds.shape[0] - 1):
        at = starts[d]
        m = 0  # the word so far: s[:m]
        for i in range(_length(bounds, d, dummy)):
            cp = _char(cps, bounds[d], dummy, i)
            if m and not _joined(s[m - 1], cp, model):
                at = _word(model, m, starts[d], word, heap, out, at)
                m = 0
            s[m] = cp
            m += 1
        if m:
            at = _word(model, m, starts[d], word, heap, out, at)
        counts[d] = at - starts[d]
