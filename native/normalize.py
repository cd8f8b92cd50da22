"""Sentencepiece's normalizer (its normalizer.cc), exact, on UTF-8 bytes.

:func:`normalize` turns each document into the code points sentencepiece
encodes. At each position a user-defined symbol is kept as is; else the
longest key of the model's charsmap trie that prefixes the rest of the
document is replaced by its string from the pool; else one UTF-8 character
is copied (a malformed byte becomes U+FFFD and consumes one byte). With
``squeeze`` (remove_extra_whitespaces) a piece's leading spaces are dropped
while the text so far ends with a space (and at the start), and trailing
ones at the end. ``dummy`` prepends a space to a non-empty document. Spaces
are written as U+2581 (sentencepiece's BPE trainer requires escaping).

The trie is Darts-clone's double array, as int64 units: a unit's label is
``unit & 0x800000FF`` (a leaf's has the top bit, so never matches a byte),
bit 8 says a key ends here (its value in the unit at the children's base),
and the children's base is ``node ^ offset(unit)``.
"""
import numpy as np

from . import jit, lean
from .bpe import SPACE

REPLACEMENT = 0xFFFD


@jit(inline="always")
def _valid(cp):
    return cp < 0xD800 or 0xE000 <= cp <= 0x10FFFF


@jit(inline="always")
def _trail(b):
    return (b & 0xC0) == 0x80


@jit(inline="always")
def _decode(data, i, end):
    """(code point, bytes) of the UTF-8 character at data[i:end]:
    (U+FFFD, 1) when malformed, as sentencepiece's DecodeUTF8."""
    b0 = np.int64(data[i])
    if b0 < 0x80:
        return b0, 1
    left = end - i
    if left >= 2 and (b0 & 0xE0) == 0xC0:
        b1 = np.int64(data[i + 1])
        cp = ((b0 & 0x1F) << 6) | (b1 & 0x3F)
        if _trail(b1) and cp >= 0x80:
            return cp, 2
    elif left >= 3 and (b0 & 0xF0) == 0xE0:
        b1, b2 = np.int64(data[i + 1]), np.int64(data[i + 2])
        cp = ((b0 & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F)
        if _trail(b1) and _trail(b2) and cp >= 0x800 and _valid(cp):
            return cp, 3
    elif left >= 4 and (b0 & 0xF8) == 0xF0:
        b1, b2, b3 = np.int64(data[i + 1]), np.int64(data[i + 2]), np.int64(data[i + 3])
        cp = ((b0 & 0x07) << 18) | ((b1 & 0x3F) << 12) | ((b2 & 0x3F) << 6) | (b3 & 0x3F)
        if _trail(b1) and _trail(b2) and _trail(b3) and cp >= 0x10000 and _valid(cp):
            return cp, 4
    return np.int64(REPLACEMENT), 1


@jit(inline="always")
def _offset(unit):
    return (unit >> 10) << ((unit & 0x200) >> 6)


@jit(inline="always")
def _longest(units, data, i, end):
    """(length, value) of the longest trie key that prefixes data[i:end],
    (0, 0) if none (Darts-clone's commonPrefixSearch, its last result)."""
    size = units.shape[0]
    length = value = 0
    if size == 0:
        return length, value
    node = _offset(units[0])
    for k in range(i, end):
        c = np.int64(data[k])
        node ^= c
        if node >= size or (units[node] & 0x800000FF) != c:
            break
        unit = units[node]
        node ^= _offset(unit)
        if (unit >> 8) & 1 and node < size:
            length, value = k - i + 1, units[node] & 0x7FFFFFFF
    return length, value


@jit
def normalize(data, bounds, units, pool, starts, widest, frozen, dummy, squeeze):
    """Normalized code points of documents data[bounds[d]:bounds[d+1]]
    (UTF-8): (cps, cbounds), document d's being cps[cbounds[d]:cbounds[d+1]].
    ``units``: the charsmap trie (empty: none); a key's value v is a byte
    offset into the model's pool, whose string is ``pool[starts[v]:]`` up
    to a 0 (code points), at most ``widest`` long. ``frozen``: per code
    point, whether it is a user-defined symbol."""
    cbounds = np.zeros(bounds.shape[0], dtype=np.int64)
    out = np.empty(data.shape[0] + bounds.shape[0] + widest + 16, dtype=np.uint32)
    state = np.array([0, bounds[0], 0, 0, -1], dtype=np.int64)
    while not _fill(data, bounds, units, pool, starts, widest, frozen, dummy, squeeze, out,
                    cbounds, state):
        grown = np.empty(2 * out.shape[0], dtype=np.uint32)
        grown[:out.shape[0]] = out
        out = grown
    return out[:state[2]], cbounds


@lean
def _fill(data, bounds, units, pool, starts, widest, frozen, dummy, squeeze, out, cbounds,
          state):
    """Normalize from ``state`` (document, byte, length of out, after a space,
    where the document's output starts or -1 before it) on; False when out
    is too short to go on (``state`` then says where it stopped)."""
    d, i, n, after_space, first = state[0], state[1], state[2], state[3] > 0, state[4]
    while d < bounds.shape[0] - 1:
        end = bounds[d + 1]
        if n + widest + 2 > out.shape[0]:
            state[0], state[1], state[2], state[3], state[4] = d, i, n, after_space, first
            return False
        if first < 0:
            first, i, after_space = n, bounds[d], squeeze
            if dummy and i < end:
                out[n] = SPACE
                n += 1
        if i < end:
            cp, size = np.int64(data[i]), 1
            if cp >= 0x80:
                cp, size = _decode(data, i, end)
            length = value = 0
            if (cp == REPLACEMENT and size == 1) or cp >= frozen.shape[0] or not frozen[cp]:
                length, value = _longest(units, data, i, end)  # else a user-defined symbol
            if length:
                j = starts[value]
                while after_space and pool[j] == 0x20:
                    j += 1
                if pool[j]:
                    while pool[j]:
                        c = pool[j]
                        out[n] = SPACE if c == 0x20 else c
                        n += 1
                        j += 1
                    after_space = squeeze and pool[j - 1] == 0x20
                i += length
            else:
                if not (after_space and cp == 0x20):
                    out[n] = SPACE if cp == 0x20 else cp
                    n += 1
                    after_space = squeeze and cp == 0x20
                i += size
        else:
            if squeeze:
                while n > first and out[n - 1] == SPACE:
                    n -= 1
            cbounds[d + 1] = n
            d += 1
            first = -1
    state[2] = n
    return True


@jit
def utf8_bounds(data, chars):
    """Byte bounds in UTF-8 ``data`` (valid) of the character bounds ``chars``."""
    bounds = np.zeros(chars.shape[0], dtype=np.int64)
    i = 0
    for d in range(1, chars.shape[0]):
        for _ in range(chars[d] - chars[d - 1]):
            b = data[i]
            i += 1 if b < 0x80 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4
        bounds[d] = i
    return bounds
