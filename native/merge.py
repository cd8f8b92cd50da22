"""Bounded-memory suffix sorting: sort parts of a shard exactly, then merge them.

The suffixes of a shard are split by start position into parts
``[lo, hi)`` (:func:`plan_parts`). :func:`sort_part` sorts one part's
suffixes in full-suffix order (comparisons may read past ``hi``);
:func:`merge_parts` merges the sorted parts (one array, each part at its own
positions) k-way straight into the packed table, so parts and table can be
memmaps on disk. The merged order is identical to
:func:`native.sort.suffix_array`.

Cost on long repeats: both steps compare suffixes token by token, so a
comparison costs O(L) for suffixes sharing a prefix of L tokens. On natural
text L is small and both steps run in O(n log k) comparisons of a few
tokens; a shard made of one token repeated R times (or a long block
repeated) costs up to O(R) per comparison, i.e. O(R * n log k) in the
merge and O(m log m * R) to repair a part of m such suffixes. Use
:func:`native.sort.suffix_array` (linear on any input) when the shard fits.
"""
import numpy as np

from . import jit, lean
from .keys import width_of
from .ptrs import put_pointer
from .sort import alphabet, check_tokens, key, sa_dtype, sort_string

EXTRA = 4096
"""Tokens past a part's end that its window includes: part suffixes whose first
EXTRA tokens tie are re-sorted by full comparison."""

_BYTES_PER_TOKEN = 4 + 1  # window suffix array (int32) + type bits and slack


def plan_parts(n_tokens: int, width: int, max_memory_bytes: int) -> list[tuple[int, int]]:
    """Split ``n_tokens`` suffixes by start position into parts [lo, hi) whose
    sorting stays within ``max_memory_bytes`` (token pages and the part's
    suffix array included)."""
    per_token = width + _BYTES_PER_TOKEN + (8 if width == 4 else 0)
    fixed = 8 * (1 << 16) + (2 << 20)  # bucket array and overheads
    if n_tokens == 0:
        return []
    if n_tokens * per_token + fixed <= max_memory_bytes:
        return [(0, n_tokens)]
    size = (max_memory_bytes - fixed) // per_token - EXTRA
    if size < EXTRA:
        need = (2 * EXTRA) * per_token + fixed
        raise ValueError(
            f"max memory {max_memory_bytes} bytes is too small to sort {n_tokens} tokens of "
            f"width {width} in parts; allow at least {need} bytes")
    return [(lo, min(lo + size, n_tokens)) for lo in range(0, n_tokens, size)]


@lean
def compare(tokens, a, b, skip):
    """Sign of suffix a vs suffix b (a != b), whose first ``skip`` tokens are equal."""
    n = tokens.shape[0]
    i = a + skip
    j = b + skip
    while i < n and j < n:
        if tokens[i] != tokens[j]:
            return -1 if key(tokens, i) < key(tokens, j) else 1
        i += 1
        j += 1
    return -1 if a > b else 1  # one is a prefix of the other: the shorter first


@jit
def _common(tokens, a, b, cap):
    """Length of the common prefix of suffixes a and b, at most ``cap``."""
    n = tokens.shape[0]
    d = 0
    while d < cap and a + d < n and b + d < n and tokens[a + d] == tokens[b + d]:
        d += 1
    return d


@jit
def _merge_sort(tokens, idx, tmp, skip):
    """Stable bottom-up merge sort of suffix positions ``idx`` (ties on the first
    ``skip`` tokens are known), ``tmp`` a buffer of the same length."""
    m = idx.shape[0]
    src, dst = idx, tmp
    width = 1
    while width < m:
        for lo in range(0, m, 2 * width):
            mid = min(lo + width, m)
            hi = min(lo + 2 * width, m)
            i, j, k = lo, mid, lo
            while i < mid and j < hi:
                if compare(tokens, src[j], src[i], skip) < 0:
                    dst[k] = src[j]
                    j += 1
                else:
                    dst[k] = src[i]
                    i += 1
                k += 1
            while i < mid:
                dst[k] = src[i]
                i += 1
                k += 1
            while j < hi:
                dst[k] = src[j]
                j += 1
                k += 1
        src, dst = dst, src
        width *= 2
    if src is not idx:
        idx[:] = src


@jit
def _select_part(wsa, lo, m, out):
    """Keep the window entries that start inside the part, as global positions."""
    k = 0
    for i in range(wsa.shape[0]):
        if wsa[i] < m:
            out[k] = wsa[i] + lo
            k += 1


@jit
def _repair(tokens, pos, extra):
    """Re-sort each run of part suffixes whose first ``extra`` tokens agree."""
    m = pos.shape[0]
    start = 0
    for i in range(1, m + 1):
        if i == m or _common(tokens, pos[i - 1], pos[i], extra) < extra:
            if i - start > 1:
                _merge_sort(tokens, pos[start:i], np.empty(i - start, pos.dtype), extra)
            start = i


def sort_part(tokens, lo: int, hi: int, extra: int = EXTRA) -> np.ndarray:
    """Positions lo..hi-1 of ``tokens``, sorted by their full suffixes.

    Sorts the window tokens[lo:hi + extra] with SA-IS, keeps the suffixes that
    start in the part, and re-sorts by full comparison the runs whose first
    ``extra`` tokens agree (their order may depend on tokens past the window).
    """
    tokens = check_tokens(tokens)
    n = tokens.shape[0]
    if not 0 <= lo <= hi <= n:
        raise ValueError(f"part [{lo}, {hi}) is outside the token array 0..{n}")
    if extra < 1:
        raise ValueError(f"extra = {extra} must be at least 1 token")
    end = min(n, hi + extra)
    s, K = alphabet(tokens[lo:end])
    wsa = np.empty(end - lo, sa_dtype(end - lo))
    sort_string(s, K, wsa)
    del s
    pos = np.empty(hi - lo, sa_dtype(n))
    _select_part(wsa, lo, hi - lo, pos)
    del wsa
    if end < n:
        _repair(tokens, pos, extra)
    return pos


@jit(inline="always")
def _prefix_key(tokens, p):
    """The first 8 bytes of suffix p as a big-endian number (zero-padded past the
    end); unequal prefix keys order their suffixes, equal ones need compare()."""
    n = tokens.shape[0]
    bits = width_of(tokens) * 8
    v = np.uint64(0)
    for j in range(64 // bits):
        v <<= np.uint64(bits)
        if p + j < n:
            v |= np.uint64(key(tokens, p + j))
    return v


@jit(inline="always")
def _less(tokens, heads, prefix, a, b):
    """Whether part a's head suffix sorts before part b's."""
    if prefix[a] != prefix[b]:
        return prefix[a] < prefix[b]
    return compare(tokens, heads[a], heads[b], 64 // (width_of(tokens) * 8)) < 0


@jit(inline="always")
def _sift(tokens, heap, heads, prefix, size, i):
    while True:
        c = 2 * i + 1
        if c >= size:
            return
        if c + 1 < size and _less(tokens, heads, prefix, heap[c + 1], heap[c]):
            c += 1
        if not _less(tokens, heads, prefix, heap[c], heap[i]):
            return
        heap[i], heap[c] = heap[c], heap[i]
        i = c


@jit
def _merge(tokens, flat, bounds, width, pointer, out):
    k = bounds.shape[0] - 1
    state = np.empty((3, k), np.int64)  # heap, heads, cursors
    _merge_into(tokens, flat, bounds, width, pointer, out, state[0], state[1], state[2],
                np.empty(k, np.uint64))


@lean
def _merge_into(tokens, flat, bounds, width, pointer, out, heap, heads, cursors, prefix):
    """The k-way merge, no allocation and no reference counting in its loop."""
    size = 0
    for j in range(bounds.shape[0] - 1):
        cursors[j] = bounds[j]
        if bounds[j + 1] > bounds[j]:
            heap[size] = j
            heads[j] = flat[bounds[j]]
            prefix[j] = _prefix_key(tokens, heads[j])
            size += 1
    for i in range(size // 2 - 1, -1, -1):
        _sift(tokens, heap, heads, prefix, size, i)
    w = 0
    while size > 0:
        j = heap[0]
        put_pointer(out, w, pointer, heads[j] * width)
        w += 1
        cursors[j] += 1
        if cursors[j] < bounds[j + 1]:
            heads[j] = flat[cursors[j]]
            prefix[j] = _prefix_key(tokens, heads[j])
        else:
            size -= 1
            heap[0] = heap[size]
        _sift(tokens, heap, heads, prefix, size, 0)


def merge_parts(tokens, flat, bounds, width: int, pointer: int, out: np.ndarray) -> None:
    """Merge the sorted parts ``flat[bounds[p]:bounds[p+1]]`` (each from
    :func:`sort_part`; the parts' bounds from :func:`plan_parts` do, and a
    memmap is fine) and write the result as the packed table: entry i = byte
    offset (position * ``width``) in ``pointer`` little-endian bytes of uint8
    ``out`` (a memmap is fine).

    Memory: ``flat`` and ``out`` are only streamed through, O(len(bounds)) else.
    """
    tokens = check_tokens(tokens)
    bounds = np.asarray(bounds, dtype=np.int64)
    n = tokens.shape[0]
    if (len(flat) != n or bounds.ndim != 1 or len(bounds) < 1 or bounds[0] != 0
            or bounds[-1] != n or (np.diff(bounds) < 0).any()):
        raise ValueError(f"the parts hold {len(flat)} entries in bounds {bounds[:4].tolist()}... "
                         f"but there are {n} tokens; pass every part of the shard, "
                         "bounds ascending from 0 to the number of tokens")
    if out.dtype != np.uint8 or out.ndim != 1 or out.shape[0] < n * pointer:
        raise ValueError(f"out must be a 1-D uint8 array of at least {n * pointer} bytes, "
                         f"got {out.dtype} of shape {out.shape}")
    if n:
        _merge(tokens, flat, bounds, width, pointer, out)
