"""Suffix-array search kernels: ranges, counts and the key sample.

Batch counting lives in :mod:`.batch`, next-token tallies in :mod:`.tally`,
the ∞-gram and scoring in :mod:`.infgram`; the conventions below hold for all.

All kernels work on ONE shard, passed as one :class:`Shard` tuple ``s``:
``tokens`` is the token array (uint8/16/32, separators included), ``table``
the suffix array as raw bytes, ``pointer`` bytes per entry, each entry a
byte offset into the token file (token index = offset // width), ``bucket``
the shard's first-token bucket table from :func:`buckets` and ``sample`` its
key sample of stride ``step`` (both may be empty, with a ``step`` beyond the
table: searches then bisect the whole table). Queries come in as int64 token ids (an ndarray or any int64
buffer, e.g. ``array('q')``). Suffixes are ordered
by their bytes, i.e. tokens compared by byte-swapped value (``byte_key``),
a shorter suffix before its extensions; the separator (all ones) sorts after
every real token. One generic kernel serves every width (Numba specialises
it per dtype).

Inside the range of suffixes that start with an m-token prompt, the one that
ends the shard (if any) comes first, then the suffixes grouped by the key of
their next token, then those followed by the separator; the kernels below
use "next key" -1 for "no next token" so that this order is plain integer
order.
"""
from typing import NamedTuple

import numpy as np
from numba import prange

from . import jit, lean, twin
from .keys import byte_key, lower_bound, pack_suffix, packing, width_of
from .ptrs import pointer_at


class Shard(NamedTuple):
    """One shard as every kernel takes it (one parameter; fields above)."""

    tokens: np.ndarray
    table: np.ndarray
    pointer: int
    bucket: np.ndarray
    sample: np.ndarray
    step: int


@jit(inline="always")
def suffix(s, i):
    """Token index where the suffix of table entry ``i`` starts."""
    return pointer_at(s.table, i, s.pointer) // width_of(s.tokens)


@jit(inline="always")
def _cmp(tokens, s, q, q0, q1):
    """Order of the suffix at token index ``s`` against the ids q[q0:q1]:
    -1 before, 0 if the query is a prefix of the suffix, 1 after."""
    n = tokens.shape[0]
    width = width_of(tokens)
    for j in range(q1 - q0):
        if s + j >= n:
            return -1
        t = tokens[s + j]
        if t != q[q0 + j]:
            return -1 if byte_key(t, width) < byte_key(q[q0 + j], width) else 1
    return 0


DONE, RANGE, ENDS = 0, 1, 2
"""Phases of a search (see :func:`advance`)."""


@jit(inline="always")
def probes(phase, x0, x1, y0, y1):
    """The entries the next ``advance`` step compares (-1: none)."""
    if phase == RANGE:
        return ((x0 + y1) >> 1 if x0 < y1 else -1), -1
    if phase == ENDS:
        return ((x0 + x1) >> 1 if x0 < x1 else -1), ((y0 + y1) >> 1 if y0 < y1 else -1)
    return -1, -1


@jit(inline="always")
def advance(s, q, q0, q1, depth, phase, x0, x1, y0, y1):
    """One bisection step of a search for q[q0:q1] among entries that share
    its first ``depth`` tokens; returns the next (phase, x0, x1, y0, y1).
    RANGE: bisect [x0, y1) until an entry matches; ENDS: the first match
    lies in [x0, x1] and the first entry after the matches in [y0, y1],
    both ends halved in the same step (their reads overlap); DONE: the
    matches are [x0, y0)."""
    tokens = s.tokens
    q0 += depth
    a, b = probes(phase, x0, x1, y0, y1)
    if phase == RANGE:
        if a < 0:
            return DONE, x0, x1, x0, y1
        c = _cmp(tokens, suffix(s, a) + depth, q, q0, q1)
        if c < 0:
            return RANGE, a + 1, x1, y0, y1
        if c > 0:
            return RANGE, x0, x1, y0, a
        return ENDS, x0, a, a + 1, y1
    if a >= 0:
        if _cmp(tokens, suffix(s, a) + depth, q, q0, q1) < 0:
            x0 = a + 1
        else:
            x1 = a
    if b >= 0:
        if _cmp(tokens, suffix(s, b) + depth, q, q0, q1) > 0:
            y1 = b
        else:
            y0 = b + 1
    return (ENDS if x0 < x1 or y0 < y1 else DONE), x0, x1, y0, y1


@jit(inline="always")
def _start(tokens, bucket, q, q0, q1):
    """(lo, hi, depth) to start a search for q[q0:q1] from: the first-token
    bucket when the shard has a bucket table, else the whole table."""
    if bucket.shape[0] and q1 > q0:
        k = byte_key(q[q0], width_of(tokens))
        return bucket[k], bucket[k + 1], 1
    return 0, tokens.shape[0], 0


@jit(inline="always")
def pack_query(q, q0, q1, width, c, fill):
    """Packed key (as ``pack_suffix``) of the ids q[q0:q1] cut or padded to
    ``c`` tokens with ``fill``."""
    bits, _ = packing(width)
    v = np.int64(0)
    for j in range(c):
        v <<= bits
        v |= byte_key(q[q0 + j], width) + 1 if q0 + j < q1 else fill
    return v


TOP = 64
"""Every TOP-th sample key is repeated after the sample, as a small index
(1/TOP of its size, it stays in cache) that each bisection reads first."""


@jit(inline="always")
def _sample_len(n, step):
    return (n + step - 1) // step


def sample_size(n: int, step: int) -> int:
    """Length of the ``out`` array that :func:`sample_keys` fills."""
    ns = _sample_len(n, step)
    return ns + (ns + TOP - 1) // TOP


def _fill_sample(s, out, j0, j1):
    """Into int64 ``out`` (``sample_size`` long): the packed keys (see
    ``keys.pack_suffix``) of every ``s.step``-th suffix-array entry, those
    numbered j0 to j1 - 1; with every one filled, :func:`index_sample`
    completes it. The sample answers the top levels of every search without
    touching the table or the tokens."""
    bits, c = packing(width_of(s.tokens))
    for j in prange(j0, j1):
        out[j] = pack_suffix(s.tokens, suffix(s, j * s.step), c, bits)


sample_keys = twin(_fill_sample)
"""``_fill_sample``: index False runs on the calling thread (a background
thread's), True across all cores."""


@jit
def index_sample(out, ns):
    """Append every TOP-th of the ``ns`` sample keys to the sample again."""
    for t in range(out.shape[0] - ns):
        out[ns + t] = out[t * TOP]


@jit(inline="always")
def _key_below(ctx, j):
    keys, key, right = ctx
    v = keys[j]
    return v < key or (right and v == key)


@jit(inline="always")
def _bisect_keys(keys, lo, hi, key, right):
    """First j in [lo, hi) with keys[j] >= key (> key with ``right``)."""
    return lower_bound(_key_below, (keys, key, right), lo, hi)


@jit(inline="always")
def _bisect_sample(sample, ns, lo, hi, key, right):
    """``_bisect_keys`` over sample[lo:hi] (ns sample keys), narrowed first by
    the cached index of every TOP-th key to one block of TOP keys."""
    tl, th = (lo + TOP - 1) // TOP, (hi + TOP - 1) // TOP  # index keys inside [lo, hi)
    t = _bisect_keys(sample, ns + tl, ns + th, key, right) - ns
    a = (t - 1) * TOP + 1 if t > tl else lo
    b = t * TOP if t < th else hi
    return _bisect_keys(sample, a, b, key, right)


@jit(inline="always")
def narrow(s, q, q0, q1):
    """(phase, x0, x1, y0, y1, depth) to start a search for q[q0:q1] from
    (see :func:`advance`): the first-token bucket and the key sample narrow
    it to at most ``step`` entries around each end, without reading the
    table; ENDS when the sample's keys cover the whole query."""
    tokens, sample, step = s.tokens, s.sample, s.step
    lo, hi, depth = _start(tokens, s.bucket, q, q0, q1)
    m = q1 - q0
    if m == depth:
        return DONE, lo, lo, hi, hi, depth
    if hi - lo <= 2 * step:
        return RANGE, lo, lo, hi, hi, depth
    width = width_of(tokens)
    bits, c = packing(width)
    ns = _sample_len(tokens.shape[0], step)
    ja, jb = (lo + step - 1) // step, (hi + step - 1) // step  # samples inside [lo, hi)
    a = _bisect_sample(sample, ns, ja, jb, pack_query(q, q0, q1, width, c, 0), False)
    b = _bisect_sample(sample, ns, a, jb, pack_query(q, q0, q1, width, c, (1 << bits) - 1), True)
    x0 = (a - 1) * step + 1 if a > ja else lo  # the start lies in [x0, x1]
    x1 = a * step if a < jb else hi
    y0 = (b - 1) * step + 1 if b > ja else lo  # the end lies in [y0, y1]
    y1 = b * step if b < jb else hi
    return (RANGE if m > c else ENDS), x0, x1, y0, y1, depth


@lean
def search_span(s, q, q0, q1):
    """[start, end) of the entries whose suffix starts with q[q0:q1]."""
    phase, x0, x1, y0, y1, depth = narrow(s, q, q0, q1)
    while phase != DONE:
        phase, x0, x1, y0, y1 = advance(s, q, q0, q1, depth, phase, x0, x1, y0, y1)
    return x0, y0


@jit(inline="always")
def _first_below(ctx, i):
    s, k = ctx
    return byte_key(s.tokens[suffix(s, i)], width_of(s.tokens)) < k


@jit(inline="always")
def _sample_below(ctx, j):
    sample, shift, k = ctx
    return (sample[j] >> shift) - 1 < k


BUCKET_BLOCKS = 64
"""Blocks of first-token keys whose bucket starts are found independently."""


@jit
def _bucket_block(s, shift, out, k0, k1):
    """Bucket starts of the keys [k0, k1) into ``out`` (see :func:`buckets`)."""
    sample, step = s.sample, s.step
    n = s.tokens.shape[0]
    ns = _sample_len(n, step)
    j = lower_bound(_sample_below, (sample, shift, k0), 0, ns)  # first sample key >= k
    b = lower_bound(_first_below, (s, k0),  # the bucket start of k
                    (j - 1) * step + 1 if j else 0, j * step if j < ns else n)
    out[k0] = b
    for k in range(k0 + 1, k1):
        if b < n and _first_below((s, k), b):  # key k starts after b
            while j < ns and (sample[j] >> shift) - 1 < k:
                j += 1
            hi = j * step if j < ns else n
            b = lower_bound(_first_below, (s, k),
                            max(b + 1, (j - 1) * step + 1), hi)
        out[k] = b


def _buckets(s):
    """First-token bucket table for widths 1 and 2 (entry k: the first
    suffix-array entry whose first token has key k; length 2^(8W) + 1), found
    by bisection from the key sample ``s.sample`` of stride ``s.step``: for each key present,
    about log2(step) probes inside the sample block holding its start;
    absent keys cost one comparison; blocks of keys run in parallel. Empty
    for width 4, where searches start from the whole table."""
    width = width_of(s.tokens)
    if width > 2:
        return np.zeros(0, dtype=np.int64)
    K = 1 << (8 * width)
    out = np.empty(K + 1, dtype=np.int64)
    bits, c = packing(width)
    per = K // BUCKET_BLOCKS
    for blk in prange(BUCKET_BLOCKS):
        _bucket_block(s, bits * (c - 1), out, blk * per, (blk + 1) * per)
    out[K] = s.tokens.shape[0]
    return out


buckets = twin(_buckets)
"""``_buckets`` on the calling thread (index False) or on every core (True)."""


@lean
def find_range(s, ids):
    """[start, end) of the suffix-array entries whose suffix starts with ``ids``."""
    return search_span(s, ids, 0, len(ids))


@lean
def count(s, ids, low, vocab):
    """Occurrences of ``ids`` in the shard; -1 when some id is outside
    [low, vocab) (the caller then checks it)."""
    for j in range(len(ids)):
        if ids[j] < low or ids[j] >= vocab:
            return np.int64(-1)
    lo, hi = find_range(s, ids)
    return hi - lo


@jit
def positions(s, lo, hi):
    """Token indexes where the suffixes of entries [lo, hi) start."""
    out = np.empty(hi - lo, dtype=np.int64)
    for i in range(lo, hi):
        out[i - lo] = suffix(s, i)
    return out
