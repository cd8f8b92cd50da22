"""Token comparison keys and the primitives built on them.

The suffix order compares little-endian bytes: a token's key is its value
byte-swapped. Here too: suffix keys packed into one int64, the bucket
heads of each key, and the lower-bound bisection every search uses.
"""
import numpy as np
from numba import types
from numba.extending import overload

from . import jit


def width_of(tokens):
    """Bytes per token of a token array; inside kernels a compile-time
    constant (``tokens.itemsize`` is read at run time there, which turns
    every token-index division into a slow integer division)."""
    return tokens.itemsize


@overload(width_of, inline="always")
def _width_of(tokens):
    width = tokens.dtype.bitwidth // 8
    return lambda tokens: width


@jit(inline="always")
def byte_key(token, width):
    """The value whose numeric order is the byte order of ``token`` stored
    little-endian in ``width`` bytes (the token byte-swapped)."""
    t = int(token)
    if width == 1:
        return t
    if width == 2:
        return ((t & 0xFF) << 8) | (t >> 8)
    return (((t & 0xFF) << 24) | ((t & 0xFF00) << 8)
            | ((t >> 8) & 0xFF00) | ((t >> 24) & 0xFF))


def key(s, i):
    """Sort key of symbol ``s[i]``: :func:`byte_key` for unsigned token
    arrays, the value itself for the signed arrays of ranks and names the
    kernels derive."""
    if s.dtype.kind == "u":
        return byte_key(s[i], s.dtype.itemsize)
    return int(s[i])


@overload(key, inline="always")
def _key(s, i):
    if isinstance(s.dtype, types.Integer) and not s.dtype.signed:
        width = s.dtype.bitwidth // 8
        return lambda s, i: np.int64(byte_key(s[i], width))
    return lambda s, i: np.int64(s[i])


@jit(inline="always")
def prefix_key(tokens, p):
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
def packing(width):
    """(bits per token, tokens per int64) of :func:`pack_suffix`."""
    bits = 8 * width + 1
    return bits, 63 // bits


@jit(inline="always")
def pack_suffix(tokens, s, c, bits):
    """The keys + 1 of the ``c`` tokens at token index ``s`` onward, ``bits``
    each, packed into one int64 (0 past the end of ``tokens``): packed
    keys order like the suffixes' first ``c`` tokens."""
    n = tokens.shape[0]
    v = np.int64(0)
    for j in range(c):
        v <<= bits
        if s + j < n:
            v |= key(tokens, s + j) + 1
    return v


@jit
def bucket_bounds(s, n, B, K, end):
    """Into ``B``: where the suffixes of ``s[:n]`` starting with each key in
    [0, K) begin (``end`` False: bucket heads) or end (True: one past the
    tails)."""
    for c in range(K):
        B[c] = 0
    for i in range(n):
        B[key(s, i)] += 1
    total = 0
    for c in range(K):
        total += B[c]
        B[c] = total if end else total - B[c]


@jit(inline="always")
def lower_bound(below, ctx, lo, hi):
    """First i in [lo, hi) with ``below(ctx, i)`` false (hi if none), for a
    ``below`` true up to some i and false from there on."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if below(ctx, mid):
            lo = mid + 1
        else:
            hi = mid
    return lo


@jit(inline="always")
def gallop(below, ctx, lo, hi):
    """:func:`lower_bound` galloping from lo: O(log d) probes for an answer
    d entries away."""
    step = 1
    prev = lo - 1  # every entry <= prev is known to be below
    while True:
        probe = prev + step
        if probe >= hi:
            return lower_bound(below, ctx, prev + 1, hi)
        if not below(ctx, probe):
            return lower_bound(below, ctx, prev + 1, probe)
        prev = probe
        step *= 2


@jit(inline="always")
def gallop_back(below, ctx, lo, hi):
    """:func:`lower_bound` galloping down from hi."""
    step = 1
    prev = hi  # every entry >= prev is known not to be below
    while True:
        probe = prev - step
        if probe < lo:
            return lower_bound(below, ctx, lo, prev)
        if below(ctx, probe):
            return lower_bound(below, ctx, probe + 1, prev)
        prev = probe
        step *= 2


@jit
def narrow_ids(tokens):
    """Whether ``tokens`` are 4 bytes wide with every id but the separator
    below 0xFFFF: their first two bytes (little-endian) then order them, so
    :func:`narrowed` tokens have the same suffix order in half the bytes."""
    if width_of(tokens) != 4:
        return False
    for i in range(tokens.shape[0]):
        t = tokens[i]
        if t >= 0xFFFF and t != 0xFFFFFFFF:
            return False
    return True


@jit
def narrowed(tokens):
    """The first two bytes of each 4-byte token, as uint16 (see :func:`narrow_ids`)."""
    out = np.empty(tokens.shape[0], np.uint16)
    for i in range(tokens.shape[0]):
        out[i] = tokens[i] & 0xFFFF
    return out
