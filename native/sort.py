"""Suffix-array construction by induced sorting (SA-IS), linear time.

Suffixes are ordered by their little-endian bytes, a shorter suffix before
its extensions (docs/FORMAT.md, "Suffix order"). For 2-byte tokens that is
the order of the byte-swapped token values, which the kernels read on the
fly; 4-byte tokens are first replaced by the rank of their byte-swapped
value among the distinct ones (compacting the alphabet): through a table
indexed by id when the ids are below max(2**22, n) (the vocabulary of a
u32 tokenizer), by sorting the distinct values otherwise.

The recursion of SA-IS runs as an explicit loop over levels: level ``L + 1``
sorts the reduced string of level ``L``, which lives at the end of level
``L``'s part of the one suffix-array buffer, exactly as in the recursive
algorithm. Extra memory beyond the output: one type bit per symbol per
level (n/4 bytes in all) and a bucket array per level, placed in unused
suffix-array space when it fits.

Speed: the induce scans prefetch the symbols of the entries SCAN_AHEAD
places on, LMS substrings are named by comparing lengths and symbols (no type
bits) in parallel slices, and the index permutations between levels run
in parallel; the two induce scans themselves stay sequential.
"""
import numba
import numpy as np
from numba import prange

from . import jit, twin
from .keys import bucket_bounds, key
from .memory import prefetch

INT32_MAX = 2**31 - 1


def sa_dtype(n: int) -> np.dtype:
    """Suffix-array dtype for ``n`` tokens: int32 when n < 2**31 - 1, else int64."""
    return np.dtype(np.int32) if n < INT32_MAX else np.dtype(np.int64)


SCAN_AHEAD = 32
"""How many suffix-array entries ahead the scans over SA prefetch what they read."""


@jit
def _is_s(t, i):
    return (t[i >> 3] >> (i & 7)) & 1


@jit
def _is_lms(t, i):
    return i > 0 and _is_s(t, i) == 1 and _is_s(t, i - 1) == 0


@jit
def _classify_place(s, SA, t, B):
    """Type bits of ``s`` (1 = S, smaller than the next suffix; the last symbol
    is L) and each LMS position put at the tail of its bucket in SA (all -1
    before), ``B`` holding one-past-tails."""
    n = SA.shape[0]
    t[:] = 0
    nxt = key(s, n - 1)
    nxt_s = 0
    for i in range(n - 2, -1, -1):
        c = key(s, i)
        if c < nxt or (c == nxt and nxt_s == 1):
            t[i >> 3] |= np.uint8(1 << (i & 7))
            nxt_s = 1
        else:
            if nxt_s == 1:
                B[nxt] -= 1
                SA[B[nxt]] = i + 1
            nxt_s = 0
        nxt = c


@jit
def _induce(s, SA, n, B, K, mark):
    """Induce L-type then S-type suffixes from the LMS entries already in SA.

    Types come from the keys, not the type bits (fewer cache misses): in the
    L pass the predecessor of p is L-type iff its key >= key(p); in the S
    pass it is S-type iff its key < key(p), or equal and p is S-type, which
    holds iff p sits at or past its bucket's S fill pointer. With ``mark``,
    LMS entries (S-type p after an L-type p - 1) are stored as ~p.
    """
    bucket_bounds(s, n, B, K, False)
    c = key(s, n - 1)  # the virtual sentinel induces the last suffix (L-type)
    SA[B[c]] = n - 1
    B[c] += 1
    for i in range(n):
        if i + SCAN_AHEAD < n:
            q = SA[i + SCAN_AHEAD]
            if q > 0:
                prefetch(s, q - 1)
        p = SA[i]
        if p > 0:
            c = key(s, p - 1)
            if c >= key(s, p):
                SA[B[c]] = p - 1
                B[c] += 1
    bucket_bounds(s, n, B, K, True)
    for i in range(n - 1, -1, -1):
        if i >= SCAN_AHEAD:
            q = SA[i - SCAN_AHEAD]
            if q > 0:
                prefetch(s, q - 1)
        p = SA[i]
        if p > 0:
            c = key(s, p - 1)
            cp = key(s, p)
            if c < cp or (c == cp and i >= B[cp]):
                B[c] -= 1
                SA[B[c]] = p - 1
            elif mark and c > cp and i >= B[cp]:
                SA[i] = ~p


@jit
def _sort_lms(s, SA, t, B, K):
    """Classify ``s`` (length len(SA)) and sort its LMS substrings by induction;
    returns their number n1, their start positions in order in SA[:n1] and
    -1 in SA[n1:]."""
    n = SA.shape[0]
    for i in range(n):
        SA[i] = -1
    if n == 0:
        return 0
    bucket_bounds(s, n, B, K, True)
    _classify_place(s, SA, t, B)
    _induce(s, SA, n, B, K, True)
    n1 = 0
    for i in range(n):
        p = SA[i]
        if p < 0:
            SA[n1] = ~p
            n1 += 1
    for i in range(n1, n):
        SA[i] = -1
    return n1


@jit
def _lms_lengths(SA, t, n1):
    """Store the length of each LMS substring (LMS position to the next one, both
    included; to the end plus one for the last) in SA[n1 + pos // 2]."""
    n = SA.shape[0]
    nxt = n + 1
    for i in range(n - 1, 0, -1):
        if _is_lms(t, i):
            SA[n1 + (i >> 1)] = nxt - i
            nxt = i + 1


@jit
def _same_lms(s, SA, n1, a, b):
    """Whether the LMS substrings at a and b are equal: equal lengths and symbols
    imply equal types (the types follow from the symbols back from an LMS end)."""
    n = SA.shape[0]
    m = SA[n1 + (a >> 1)]
    if m != SA[n1 + (b >> 1)] or a + m > n or b + m > n:
        return False
    for d in range(m):
        if s[a + d] != s[b + d]:
            return False
    return True


@twin
def _name_lms(s, SA, n1, chunks):
    """Name the sorted LMS substrings in SA[:n1] (equal substrings, equal names)
    into SA[n1 + pos // 2], which holds their lengths; returns the number of
    distinct names.

    Two parallel passes over ``chunks`` slices of SA[:n1]: the first compares
    neighbours and flags each new name by complementing its entry, the second
    writes the names from per-slice prefix counts.
    """
    size = -(-n1 // chunks)
    before = np.empty(chunks, SA.dtype)  # the entry before each slice, read before any flagging
    for c in range(chunks):
        before[c] = SA[c * size - 1] if 0 < c * size <= n1 else -1
    counts = np.zeros(chunks + 1, np.int64)
    for c in prange(chunks):
        prev = before[c]
        new = 0
        hi = min(n1, (c + 1) * size)
        for k in range(c * size, hi):
            if k + SCAN_AHEAD < hi:
                q = SA[k + SCAN_AHEAD]
                prefetch(s, q)
                prefetch(SA, n1 + (q >> 1))
            pos = SA[k]
            if prev < 0 or not _same_lms(s, SA, n1, pos, prev):
                SA[k] = ~pos
                new += 1
            prev = pos
        counts[c + 1] = new
    for c in range(chunks):
        counts[c + 1] += counts[c]
    for c in prange(chunks):
        name = counts[c] - 1
        hi = min(n1, (c + 1) * size)
        for k in range(c * size, hi):
            if k + SCAN_AHEAD < hi:
                prefetch(SA, n1 + (max(SA[k + SCAN_AHEAD], ~SA[k + SCAN_AHEAD]) >> 1))
            pos = SA[k]
            if pos < 0:
                pos = ~pos
                SA[k] = pos
                name += 1
            SA[n1 + (pos >> 1)] = name
    return counts[chunks]


@jit
def _gather_names(SA, n1):
    """Move the names in SA[n1:] (in text order) to SA[n - n1:]."""
    n = SA.shape[0]
    j = n - 1
    for i in range(n - 1, n1 - 1, -1):
        if SA[i] >= 0:
            SA[j] = SA[i]
            j -= 1


@twin
def _invert_names(SA, n1):
    """Unique names: the reduced suffix array is the inverse of the reduced string."""
    n = SA.shape[0]
    for k in prange(n1):
        SA[SA[n - n1 + k]] = k


def _down(s, SA, t, B, K, parallel):
    """Sort and name the LMS substrings of ``s`` (length len(SA)).

    Leaves the reduced string in SA[n - n1:] and returns (n1, names). When
    the names are unique, also writes the reduced suffix array in SA[:n1].
    """
    n1 = _sort_lms(s, SA, t, B, K)
    if n1 == 0:
        return 0, 0
    _lms_lengths(SA, t, n1)
    chunks = 8 * numba.get_num_threads() if parallel else 1
    names = int(_name_lms[parallel](s, SA, n1, chunks))
    _gather_names(SA, n1)
    if names == n1:
        _invert_names[parallel](SA, n1)
    return n1, names


@twin
def _lms_from_names(SA, n1):
    """Replace the reduced suffix array in SA[:n1] by the LMS positions it
    ranks, listed in SA[n - n1:]."""
    n = SA.shape[0]
    for k in prange(n1):
        SA[k] = SA[n - n1 + SA[k]]


@jit
def _list_lms(SA, t, n1):
    """List the LMS positions in text order in SA[n - n1:]."""
    n = SA.shape[0]
    j = n - n1
    for i in range(1, n):
        if _is_lms(t, i):
            SA[j] = i
            j += 1


@jit
def _place_sorted_lms(s, SA, B, K, n1):
    """Move the sorted LMS positions in SA[:n1] to the tails of their buckets,
    then induce the full order from them."""
    n = SA.shape[0]
    for k in range(n1, n):
        SA[k] = -1
    bucket_bounds(s, n, B, K, True)
    for k in range(n1 - 1, -1, -1):
        if k >= SCAN_AHEAD:
            prefetch(s, SA[k - SCAN_AHEAD])
        p = SA[k]
        SA[k] = -1
        c = key(s, p)
        B[c] -= 1
        SA[B[c]] = p
    _induce(s, SA, n, B, K, False)


def _up(s, SA, t, B, K, n1, parallel):
    """Given the sorted reduced suffixes in SA[:n1], induce the full order."""
    if SA.shape[0] == 0:
        return
    _list_lms(SA, t, n1)
    _lms_from_names[parallel](SA, n1)
    _place_sorted_lms(s, SA, B, K, n1)


@twin
def _rank_inplace(keys, distinct):
    """Replace each key by its index in the sorted array ``distinct``."""
    for i in prange(keys.shape[0]):
        keys[i] = np.searchsorted(distinct, keys[i])


def alphabet(tokens: np.ndarray, parallel: bool = True) -> tuple[np.ndarray, int]:
    """The level-0 string the kernels sort and its alphabet size.

    uint8 and uint16 arrays are used as they are (uint16 keys are byte-swapped
    on the fly); uint32 tokens become (signed) ranks of their byte-swapped values.
    ``parallel=False`` keeps to the calling thread (as in :func:`sort_string`).
    """
    if tokens.dtype.itemsize == 1:
        return tokens, 256
    if tokens.dtype.itemsize == 2:
        return tokens, 1 << 16
    top, has_sep = _top_id(tokens) if tokens.shape[0] else (-1, False)
    if 0 <= top < max(_LUT_MIN, tokens.shape[0]):
        return _ranked_by_table(tokens, top, has_sep, parallel)
    return _ranked_by_sort(tokens, parallel)


def _ranked_by_sort(tokens, parallel: bool):
    """:func:`alphabet` of any 4-byte tokens: each byte-swapped value
    replaced by its index among the sorted distinct values."""
    keys = tokens.byteswap().astype(np.uint32, copy=False)
    distinct = np.unique(keys)
    _rank_inplace[parallel](keys, distinct)
    K = int(distinct.shape[0])
    return (keys.view(np.int32) if K <= INT32_MAX else keys.astype(np.int64)), K


_LUT_MIN = 1 << 22
"""Ids below this (or below the token count) are ranked through a table."""
_SEP4 = 2**32 - 1


@jit
def _top_id(tokens):
    """(largest id that is not the separator, -1 if none; whether the separator occurs)."""
    top, has_sep = -1, False
    for i in range(tokens.shape[0]):
        v = np.int64(tokens[i])
        if v == _SEP4:
            has_sep = True
        elif v > top:
            top = v
    return top, has_sep


@twin
def _mark_ids(tokens, seen):
    for i in prange(tokens.shape[0]):
        v = tokens[i]
        if v != _SEP4:
            seen[v] = 1


@twin
def _look_up(tokens, table, sep_rank, out):
    for i in prange(tokens.shape[0]):
        v = tokens[i]
        out[i] = sep_rank if v == _SEP4 else table[v]


def _ranked_by_table(tokens, top: int, has_sep: bool, parallel: bool):
    """:func:`alphabet` of 4-byte tokens whose ids (the separator aside) are
    below ``top + 1``: the ids present, ranked by their byte-swapped value,
    through a table of ``top + 1`` entries (O(n + top), no sort of n keys).
    The separator's byte-swapped value is the largest of all: it ranks last."""
    seen = np.zeros(top + 1, np.uint8)
    _mark_ids[parallel](tokens, seen)
    present = np.flatnonzero(seen).astype(np.uint32)
    table = np.empty(top + 1, np.int32)
    table[present[np.argsort(present.byteswap(), kind="stable")]] = np.arange(
        present.shape[0], dtype=np.int32)
    out = np.empty(tokens.shape[0], np.int32)
    _look_up[parallel](tokens, table, present.shape[0], out)
    return out, present.shape[0] + int(has_sep)


def check_tokens(tokens) -> np.ndarray:
    """A 1-D little-endian uint8/16/32 array view of ``tokens``; ValueError otherwise."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.dtype.kind != "u" or tokens.dtype.itemsize not in (1, 2, 4):
        raise ValueError(
            f"tokens must be a 1-D uint8, uint16 or uint32 array, got {tokens.ndim}-D "
            f"{tokens.dtype}; convert with np.asarray(tokens, dtype='<u2') (or '<u1', '<u4')")
    if not tokens.dtype.isnative:
        tokens = tokens.astype(tokens.dtype.newbyteorder("="))
    return tokens


def sort_string(s: np.ndarray, K: int, SA: np.ndarray, parallel: bool = True) -> None:
    """SA-IS of the string ``s`` over alphabet [0, K) into ``SA`` (len(s) entries).
    ``parallel=False`` runs every step on the calling thread: the form for
    worker threads that each sort their own string."""
    n = s.shape[0]
    sizes = [n]          # level L sorts SA[:sizes[L]]; its string is s or,
    alphabets = [K]      # for L > 0, SA[sizes[L-1] - sizes[L]:sizes[L-1]]
    bits = []
    while True:
        level = len(bits)
        bits.append(np.empty((sizes[level] + 7) // 8, np.uint8))
        n1, names = _down(_level_string(s, SA, sizes, level), SA[:sizes[level]], bits[level],
                          _bucket_space(SA, sizes, level, alphabets[level]), alphabets[level],
                          parallel)
        sizes.append(n1)
        if names == n1:
            break
        alphabets.append(names)
    for level in range(len(bits) - 1, -1, -1):
        _up(_level_string(s, SA, sizes, level), SA[:sizes[level]], bits.pop(),
            _bucket_space(SA, sizes, level, alphabets[level]), alphabets[level], sizes[level + 1],
            parallel)


def _level_string(s, SA, sizes, level):
    return s if level == 0 else SA[sizes[level - 1] - sizes[level]:sizes[level - 1]]


def _bucket_space(SA, sizes, level, K):
    """A bucket array of K entries: free suffix-array space between this level's
    part and its string when it fits, else a new array."""
    if level > 0:
        lo, hi = sizes[level], sizes[level - 1] - sizes[level]
        if hi - lo >= K:
            return SA[lo:lo + K]
    return np.empty(K, SA.dtype)


def suffix_array(tokens) -> np.ndarray:
    """Token indexes of all suffixes of ``tokens`` in the format's suffix order.

    ``tokens``: 1-D uint8/uint16/uint32 array (an np.memmap is fine). Returns
    int32 when len(tokens) < 2**31 - 1, else int64.
    """
    tokens = check_tokens(tokens)
    s, K = alphabet(tokens)
    SA = np.empty(s.shape[0], sa_dtype(s.shape[0]))
    sort_string(s, K, SA)
    return SA
