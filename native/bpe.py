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
import numpy as np

from . import jit, lean

SPACE = 0x2581
"""Sentencepiece's escaped space, U+2581 LOWER ONE EIGHTH BLOCK."""

MULT = 0x9E3779B97F4A7C15
"""Hash tables (built by the caller): key k sits in slot (k * MULT mod 2^64) >> shift,
or the next free one (linear probing); empty slots hold -1."""
_MULT = np.uint64(MULT)


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
def _unknown(cp, byte_id, unk, first, out, at):
    """Write the byte pieces of unknown character cp's UTF-8 bytes to out[at:]
    or, with ``unk`` >= 0 (no byte pieces), the unknown id, once for a run of
    unknown characters as sentencepiece merges them (the document's ids
    start at out[first]); returns the new at."""
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
def _joined(a, b, frozen, inner_keys, inner_shift):
    """Whether neighbours a, b may end up in one piece (the same word)."""
    if _lookup(frozen, a) > 0 or _lookup(frozen, b) > 0:
        return False
    return _find(inner_keys, inner_shift, a * 0x110000 + b) >= 0


@lean
def _room(cps, bounds, dummy, char_id, frozen, inner_keys, inner_shift, starts):
    """Fill starts[1:] with where each document's room in the output ends
    (an id per character that is a piece, one per byte of the others);
    returns the longest word's length."""
    longest = 0
    for d in range(bounds.shape[0] - 1):
        room = word = prev = 0
        for i in range(_length(bounds, d, dummy)):
            cp = _char(cps, bounds[d], dummy, i)
            room += 1 if _lookup(char_id, cp) >= 0 else _utf8_len(cp)
            word = word + 1 if i and _joined(prev, cp, frozen, inner_keys, inner_shift) else 1
            longest = max(longest, word)
            prev = cp
        starts[d + 1] = starts[d] + room
    return longest


@jit(inline="always")
def _better(hs, hl, a, b):
    """Whether heap entry a pops before b: higher score, then leftmost."""
    return hs[a] > hs[b] or (hs[a] == hs[b] and hl[a] < hl[b])


@jit(inline="always")
def _swap(hs, hl, hr, hz, hm, a, b):
    hs[a], hs[b] = hs[b], hs[a]
    hl[a], hl[b] = hl[b], hl[a]
    hr[a], hr[b] = hr[b], hr[a]
    hz[a], hz[b] = hz[b], hz[a]
    hm[a], hm[b] = hm[b], hm[a]


@jit(inline="always")
def _push(hs, hl, hr, hz, hm, n, score, left, right, size, merged):
    hs[n], hl[n], hr[n], hz[n], hm[n] = score, left, right, size, merged
    i = n
    while i > 0:
        p = (i - 1) >> 1
        if not _better(hs, hl, i, p):
            break
        _swap(hs, hl, hr, hz, hm, i, p)
        i = p
    return n + 1


@jit(inline="always")
def _pop(hs, hl, hr, hz, hm, n):
    """Move the best entry to slot n - 1 (read it there); returns n - 1."""
    n -= 1
    _swap(hs, hl, hr, hz, hm, 0, n)
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _better(hs, hl, c + 1, c):
            c += 1
        if not _better(hs, hl, c, i):
            break
        _swap(hs, hl, hr, hz, hm, i, c)
        i = c
    return n


@jit(inline="always")
def _pair(sid, frz, pkeys, pvals, pshift, nv, left, right):
    """Merged piece id of symbols left and right, -1 if they cannot merge."""
    if left < 0 or right < 0 or frz[left] or frz[right] or sid[left] < 0 or sid[right] < 0:
        return -1
    h = _find(pkeys, pshift, np.int64(sid[left]) * nv + sid[right])
    return pvals[h] if h >= 0 else -1


@jit(inline="always")
def _word(s, m, char_id, frozen, pkeys, pvals, pshift, nv, scores, byte_id, unk, first,
          sid, frz, clen, prv, nxt, hs, hl, hr, hz, hm, out, at):
    """BPE of the word s[:m]; ids written to out[at:]; returns the new at."""
    for k in range(m):
        cp = s[k]
        sid[k] = _lookup(char_id, cp)
        frz[k] = _lookup(frozen, cp) > 0
        clen[k] = 1
        prv[k] = k - 1
        nxt[k] = k + 1 if k + 1 < m else -1
    n = 0
    for k in range(m - 1):
        p = _pair(sid, frz, pkeys, pvals, pshift, nv, k, k + 1)
        if p >= 0:
            n = _push(hs, hl, hr, hz, hm, n, scores[p], k, k + 1, 2, p)
    while n > 0:
        n = _pop(hs, hl, hr, hz, hm, n)
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
            p = _pair(sid, frz, pkeys, pvals, pshift, nv, x, y)
            if p >= 0:
                n = _push(hs, hl, hr, hz, hm, n, scores[p], x, y, clen[x] + clen[y], p)
    k = 0
    while k >= 0:
        if sid[k] >= 0:
            out[at] = sid[k]
            at += 1
        else:
            at = _unknown(s[k], byte_id, unk, first, out, at)
        k = nxt[k]
    return at


@jit
def encode(cps, bounds, dummy, char_id, frozen, pkeys, pvals, pshift, nv, scores,
           inner_keys, inner_shift, byte_id, unk):
    """Ids of each document cps[bounds[d]:bounds[d+1]]: (ids, starts,
    counts), document d's ids being ids[starts[d]:starts[d] + counts[d]].
    ``char_id``/``frozen``: per code point, its one-character piece (-1 if
    none) and whether it is a user-defined symbol; ``pairs`` (``pkeys``,
    ``pvals``, ``pshift``) and ``inner`` hash tables as described above;
    an unknown character is written as byte pieces (``byte_id``) or, if
    ``unk`` >= 0, as that id.
    Scratch memory is sized by the longest word, not document."""
    nd = bounds.shape[0] - 1
    starts = np.zeros(nd + 1, dtype=np.int64)
    n = _room(cps, bounds, dummy, char_id, frozen, inner_keys, inner_shift, starts) + 1
    out = np.empty(starts[nd], dtype=np.uint32)
    counts = np.zeros(nd, dtype=np.int64)
    ints = np.empty((5, n), dtype=np.int64)  # the word, sid, clen, prv, nxt
    frz = np.empty(n, dtype=np.bool_)
    hs = np.empty(3 * n, dtype=np.float32)  # the heap: score, left, right, size, merged id
    heap = np.empty((4, 3 * n), dtype=np.int64)
    _encode(cps, bounds, dummy, frozen, char_id, pkeys, pvals, pshift, nv, scores, inner_keys,
            inner_shift, byte_id, unk, starts, out, counts, ints[0], ints[1], frz, ints[2],
            ints[3], ints[4], hs, heap[0], heap[1], heap[2], heap[3])
    return out, starts, counts


@lean
def _encode(cps, bounds, dummy, frozen, char_id, pkeys, pvals, pshift, nv, scores, inner_keys,
            inner_shift, byte_id, unk, starts, out, counts, s, sid, frz, clen, prv, nxt,
            hs, hl, hr, hz, hm):
    for d in range(bounds.shape[0] - 1):
        at = starts[d]
        m = 0  # the word so far: s[:m]
        for i in range(_length(bounds, d, dummy)):
            cp = _char(cps, bounds[d], dummy, i)
            if m and not _joined(s[m - 1], cp, frozen, inner_keys, inner_shift):
                at = _word(s, m, char_id, frozen, pkeys, pvals, pshift, nv, scores, byte_id,
                           unk, starts[d], sid, frz, clen, prv, nxt, hs, hl, hr, hz, hm, out, at)
                m = 0
            s[m] = cp
            m += 1
        if m:
            at = _word(s, m, char_id, frozen, pkeys, pvals, pshift, nv, scores, byte_id,
                       unk, starts[d], sid, frz, clen, prv, nxt, hs, hl, hr, hz, hm, out, at)
        counts[d] = at - starts[d]
