"""Suffix-array search kernels: ranges, counts, next-token tallies, scoring.

All kernels work on ONE shard: ``tokens`` is the token array (uint8/16/32,
separators included), ``table`` the suffix array as raw bytes, ``pointer``
bytes per entry, each entry a byte offset into the token file (token index =
offset // width), ``bucket`` the shard's first-token bucket table from
:func:`buckets` (empty for width 4: searches then start from the whole
table). Queries come in as int64 token ids (an ndarray or any int64
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
import numpy as np
from numba import prange

from . import jit, lean, pjit
from .keys import (bucket_bounds, byte_key, gallop, gallop_back, lower_bound, pack_suffix,
                   packing, width_of)
from .memory import prefetch
from .ptrs import pointer_at, prefetch_entry


@jit(inline="always")
def _suffix(tokens, table, pointer, i):
    """Token index where the suffix of table entry ``i`` starts."""
    return pointer_at(table, i, pointer) // width_of(tokens)


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
"""Phases of a search (see :func:`_advance`)."""


@jit(inline="always")
def _probes(phase, x0, x1, y0, y1):
    """The entries the next ``_advance`` step compares (-1: none)."""
    if phase == RANGE:
        return ((x0 + y1) >> 1 if x0 < y1 else -1), -1
    if phase == ENDS:
        return ((x0 + x1) >> 1 if x0 < x1 else -1), ((y0 + y1) >> 1 if y0 < y1 else -1)
    return -1, -1


@jit(inline="always")
def _advance(tokens, table, pointer, q, q0, q1, depth, phase, x0, x1, y0, y1):
    """One bisection step of a search for q[q0:q1] among entries that share
    its first ``depth`` tokens; returns the next (phase, x0, x1, y0, y1).
    RANGE: bisect [x0, y1) until an entry matches; ENDS: the first match
    lies in [x0, x1] and the first entry after the matches in [y0, y1],
    both ends halved in the same step (their reads overlap); DONE: the
    matches are [x0, y0)."""
    q0 += depth
    a, b = _probes(phase, x0, x1, y0, y1)
    if phase == RANGE:
        if a < 0:
            return DONE, x0, x1, x0, y1
        c = _cmp(tokens, _suffix(tokens, table, pointer, a) + depth, q, q0, q1)
        if c < 0:
            return RANGE, a + 1, x1, y0, y1
        if c > 0:
            return RANGE, x0, x1, y0, a
        return ENDS, x0, a, a + 1, y1
    if a >= 0:
        if _cmp(tokens, _suffix(tokens, table, pointer, a) + depth, q, q0, q1) < 0:
            x0 = a + 1
        else:
            x1 = a
    if b >= 0:
        if _cmp(tokens, _suffix(tokens, table, pointer, b) + depth, q, q0, q1) > 0:
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
def _pack_query(q, q0, q1, width, c, fill):
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


@pjit
def sample_keys(tokens, table, pointer, step, out):
    """Fill int64 ``out`` (``sample_size`` long) with the packed keys (see
    ``keys.pack_suffix``) of every ``step``-th suffix-array entry, then every
    TOP-th of those again: an in-memory sample that answers the top levels
    of every search without touching the table or the tokens."""
    bits, c = packing(width_of(tokens))
    ns = _sample_len(tokens.shape[0], step)
    for j in prange(ns):
        out[j] = pack_suffix(tokens, _suffix(tokens, table, pointer, j * step), c, bits)
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
def _narrow(tokens, bucket, sample, step, q, q0, q1):
    """(phase, x0, x1, y0, y1, depth) to start a search for q[q0:q1] from
    (see :func:`_advance`): the first-token bucket and the key sample narrow
    it to at most ``step`` entries around each end, without reading the
    table; ENDS when the sample's keys cover the whole query."""
    lo, hi, depth = _start(tokens, bucket, q, q0, q1)
    m = q1 - q0
    if m == depth:
        return DONE, lo, lo, hi, hi, depth
    if hi - lo <= 2 * step:
        return RANGE, lo, lo, hi, hi, depth
    width = width_of(tokens)
    bits, c = packing(width)
    ns = _sample_len(tokens.shape[0], step)
    ja, jb = (lo + step - 1) // step, (hi + step - 1) // step  # samples inside [lo, hi)
    a = _bisect_sample(sample, ns, ja, jb, _pack_query(q, q0, q1, width, c, 0), False)
    b = _bisect_sample(sample, ns, a, jb, _pack_query(q, q0, q1, width, c, (1 << bits) - 1), True)
    x0 = (a - 1) * step + 1 if a > ja else lo  # the start lies in [x0, x1]
    x1 = a * step if a < jb else hi
    y0 = (b - 1) * step + 1 if b > ja else lo  # the end lies in [y0, y1]
    y1 = b * step if b < jb else hi
    return (RANGE if m > c else ENDS), x0, x1, y0, y1, depth


@lean
def _search(tokens, table, pointer, bucket, sample, step, q, q0, q1):
    """[start, end) of the entries whose suffix starts with q[q0:q1]."""
    phase, x0, x1, y0, y1, depth = _narrow(tokens, bucket, sample, step, q, q0, q1)
    while phase != DONE:
        phase, x0, x1, y0, y1 = _advance(tokens, table, pointer, q, q0, q1, depth,
                                         phase, x0, x1, y0, y1)
    return x0, y0


@jit
def buckets(tokens):
    """First-token bucket table for widths 1 and 2: entry k is the first
    suffix-array entry whose first token has key k (length 2^(8W) + 1).
    Empty for width 4, where searches start from the whole table."""
    width = width_of(tokens)
    if width > 2:
        return np.zeros(0, dtype=np.int64)
    out = np.empty((1 << (8 * width)) + 1, dtype=np.int64)
    bucket_bounds(tokens, tokens.shape[0], out, out.shape[0], False)
    return out


@jit(inline="always")
def _next_key(tokens, table, pointer, i, m):
    """Key of the token after the first ``m`` tokens of entry ``i``'s suffix;
    -1 where the suffix ends there (the end of the shard)."""
    s = _suffix(tokens, table, pointer, i) + m
    if s >= tokens.shape[0]:
        return np.int64(-1)
    return byte_key(tokens[s], width_of(tokens))


@jit(inline="always")
def _next_below(ctx, i):
    tokens, table, pointer, m, key = ctx
    return _next_key(tokens, table, pointer, i, m) < key


@lean
def _bisect_next(tokens, table, pointer, m, lo, hi, key):
    """First entry in [lo, hi) whose next key is >= key (binary search)."""
    return lower_bound(_next_below, (tokens, table, pointer, m, key), lo, hi)


@lean
def _gallop_next(tokens, table, pointer, m, lo, hi, key):
    """First entry in [lo, hi) whose next key is >= key, galloping from lo."""
    return gallop(_next_below, (tokens, table, pointer, m, key), lo, hi)


@lean
def _gallop_next_back(tokens, table, pointer, m, lo, hi, key):
    """First entry in [lo, hi) whose next key is >= key, galloping from hi."""
    return gallop_back(_next_below, (tokens, table, pointer, m, key), lo, hi)


@lean
def _cont(tokens, table, pointer, m, lo, hi):
    """Sub-range of a prompt's range [lo, hi) whose suffixes continue with a
    real token: drop the one ending the shard and those followed by the separator."""
    if lo < hi and _next_key(tokens, table, pointer, lo, m) < 0:
        lo += 1
    sep = (np.int64(1) << (8 * width_of(tokens))) - 1
    return lo, _gallop_next_back(tokens, table, pointer, m, lo, hi, sep)


@lean
def _group(tokens, table, pointer, m, a, b, key):
    """Sub-range of [a, b) (a continuation range) whose next key equals key."""
    start = _bisect_next(tokens, table, pointer, m, a, b, key)
    return start, _gallop_next(tokens, table, pointer, m, start, b, key + 1)


@lean
def find_range(tokens, table, pointer, bucket, sample, step, ids):
    """[start, end) of the suffix-array entries whose suffix starts with ``ids``."""
    return _search(tokens, table, pointer, bucket, sample, step, ids, 0, len(ids))


@lean
def count(tokens, table, pointer, bucket, sample, step, ids, low, vocab):
    """Occurrences of ``ids`` in the shard; -1 when some id is outside
    [low, vocab) (the caller then checks it)."""
    for j in range(len(ids)):
        if ids[j] < low or ids[j] >= vocab:
            return np.int64(-1)
    lo, hi = find_range(tokens, table, pointer, bucket, sample, step, ids)
    return hi - lo


@jit
def visit_order(flat, bounds, width):
    """A visiting order for ``count_many``: the queries grouped by the top
    bits of the packed key of their first tokens (a counting sort; about as
    many groups as queries), i.e. roughly in suffix order, so that
    neighbouring searches share their first reads."""
    bits, c = packing(width)
    nq = bounds.shape[0] - 1
    b = 1
    while b < 16 and (1 << b) < nq:
        b += 1
    group = np.empty(nq, dtype=np.int64)
    starts = np.zeros((1 << b) + 1, dtype=np.int64)
    for j in range(nq):
        group[j] = _pack_query(flat, bounds[j], bounds[j + 1], width, c, 0) >> (bits * c - b)
        starts[group[j] + 1] += 1
    for k in range(1 << b):
        starts[k + 1] += starts[k]
    order = np.empty(nq, dtype=np.int64)
    for j in range(nq):
        order[starts[group[j]]] = j
        starts[group[j]] += 1
    return order


@jit(inline="always")
def _put(state, t, j, phase, x0, x1, y0, y1, depth):
    """Store search t of a lockstep batch: query j and its ``_advance`` state."""
    state[t, 0], state[t, 1], state[t, 2], state[t, 3] = j, phase, x0, x1
    state[t, 4], state[t, 5], state[t, 6] = y0, y1, depth


@jit(inline="always")
def _get(state, t):
    """(j, phase, x0, x1, y0, y1, depth) of search t (see ``_put``)."""
    return (state[t, 0], state[t, 1], state[t, 2], state[t, 3], state[t, 4], state[t, 5],
            state[t, 6])


@jit(inline="always")
def _prefetch_step(tokens, table, pointer, state, t, token):
    """Prefetch what search t's next ``_advance`` reads: its probes' table
    entries, or (``token``) the first token each of them compares."""
    _, phase, x0, x1, y0, y1, depth = _get(state, t)
    for p in _probes(phase, x0, x1, y0, y1):
        if p >= 0:
            if token:
                prefetch(tokens, _suffix(tokens, table, pointer, p) + depth)
            else:
                prefetch_entry(table, p, pointer)


LOCKSTEP = 32
"""Searches ``count_many`` advances together, one bisection step each in
turn, so that their memory reads overlap."""


@lean
def _count_run(tokens, table, pointer, bucket, sample, step, flat, bounds, order, i0, i1,
               state, out):
    """``count_many`` for the queries order[i0:i1], LOCKSTEP at a time
    (``state``: LOCKSTEP x 7 scratch): each step prefetches every search's
    table entries, then their tokens, then compares."""
    for i in range(i0, i1, LOCKSTEP):
        g = min(LOCKSTEP, i1 - i)
        for t in range(g):
            j = order[i + t]
            phase, x0, x1, y0, y1, depth = _narrow(tokens, bucket, sample, step, flat,
                                                   bounds[j], bounds[j + 1])
            _put(state, t, j, phase, x0, x1, y0, y1, depth)
        busy = g
        while busy:
            busy = 0
            for t in range(g):
                _prefetch_step(tokens, table, pointer, state, t, False)
            for t in range(g):
                _prefetch_step(tokens, table, pointer, state, t, True)
            for t in range(g):
                j, phase, x0, x1, y0, y1, depth = _get(state, t)
                if phase != DONE:
                    phase, x0, x1, y0, y1 = _advance(tokens, table, pointer, flat, bounds[j],
                                                     bounds[j + 1], depth, phase, x0, x1, y0, y1)
                    _put(state, t, j, phase, x0, x1, y0, y1, depth)
                    busy += phase != DONE
        for t in range(g):
            j, _, x0, _, y0, _, _ = _get(state, t)
            out[j] = y0 - x0


@pjit
def count_many(tokens, table, pointer, bucket, sample, step, flat, bounds, order):
    """Occurrences of each query ``flat[bounds[j]:bounds[j + 1]]``.

    Queries are visited in ``order`` (best: sorted in suffix order, so that
    neighbouring searches read the same sample keys and entries; any order
    is correct), split into contiguous chunks spread over all cores, each
    run by ``_count_run`` (the parallel loop stays small: inlined, the
    searches made it compile 4x slower).
    """
    nq = bounds.shape[0] - 1
    out = np.empty(nq, dtype=np.int64)
    chunks = min(nq, 64)
    for k in prange(chunks):
        state = np.empty((LOCKSTEP, 7), dtype=np.int64)
        _count_run(tokens, table, pointer, bucket, sample, step, flat, bounds, order,
                   k * nq // chunks, (k + 1) * nq // chunks, state, out)
    return out


@lean
def continuation(tokens, table, pointer, m, lo, hi, next_id):
    """(total, count) in the range [lo, hi) of an m-token prompt: occurrences
    followed by a real token, and those followed by ``next_id``."""
    a, b = _cont(tokens, table, pointer, m, lo, hi)
    c, d = _group(tokens, table, pointer, m, a, b, byte_key(next_id, width_of(tokens)))
    return b - a, d - c


@jit(inline="always")
def _take(work, at, size):
    """``size`` int64 entries carved from ``work`` at ``at`` when they fit
    (memory reused from call to call: no page faults), else a new array.
    Returns the array and ``at + size`` (the entries asked for so far)."""
    if at + size <= work.shape[0]:
        return work[at:at + size], at + size
    return np.empty(size, dtype=np.int64), at + size


PROBES_AHEAD = 64
"""How many probes ahead a bisection level prefetches the table entry (and
half as many, the token it points to): the probes are independent, but
each one's token read waits for its entry, so without the hints the CPU
keeps only a few of them in flight."""


@jit(inline="always")
def _at(a, b, p):
    """Entry ``p`` clamped into the continuation range [a, b): its end
    entries stand for those outside, so no group boundary lies there."""
    return min(max(p, a), b - 1)


@jit(inline="always")
def _next_key_ahead(tokens, table, pointer, m, a, b, h, I, n, k):
    """Next key of the midpoint I[k] + h, after prefetching the entry of
    midpoint k + PROBES_AHEAD and the token of midpoint k + PROBES_AHEAD / 2."""
    if k + PROBES_AHEAD < n:
        prefetch_entry(table, _at(a, b, I[k + PROBES_AHEAD] + h), pointer)
    if k + PROBES_AHEAD // 2 < n:
        p = _at(a, b, I[k + PROBES_AHEAD // 2] + h)
        prefetch(tokens, _suffix(tokens, table, pointer, p) + m)
    return _next_key(tokens, table, pointer, _at(a, b, I[k] + h), m)


@lean
def _level(tokens, table, pointer, m, a, b, h, I, KI, KJ, n, I2, KI2, KJ2, starts, skeys, ns):
    """One bisection level over the n open intervals [I, I + 2h] (end keys
    KI, KJ differ): probe each midpoint (prefetched ahead, so the reads
    overlap in memory) and file both halves, without branches: into
    I2/KI2/KJ2 while h > 1 (kept where their end keys differ), else as
    the groups starting at I + 1 and I + 2 into starts/skeys[ns:].
    Returns the new (open intervals, groups found)."""
    for k in range(min(n, PROBES_AHEAD)):
        prefetch_entry(table, _at(a, b, I[k] + h), pointer)
    nxt = 0
    if h > 1:
        for k in range(n):
            km = _next_key_ahead(tokens, table, pointer, m, a, b, h, I, n, k)
            i, ki, kj = I[k], KI[k], KJ[k]
            I2[nxt], KI2[nxt], KJ2[nxt] = i, ki, km
            nxt += ki != km
            I2[nxt], KI2[nxt], KJ2[nxt] = i + h, km, kj
            nxt += km != kj
        return nxt, ns
    for k in range(n):
        km = _next_key_ahead(tokens, table, pointer, m, a, b, h, I, n, k)
        i, ki, kj = I[k], KI[k], KJ[k]
        starts[ns], skeys[ns] = i + 1, km
        ns += ki != km
        starts[ns], skeys[ns] = i + 2, kj
        ns += km != kj
    return nxt, ns


@jit
def next_tokens(tokens, table, pointer, sample, step, m, lo, hi, work):
    """Exact next-token tally of the m-token prompt whose range is [lo, hi):
    (ids ascending, counts, scratch entries wanted). Scratch arrays are
    carved from int64 ``work`` while it lasts (pass the same one again,
    at least that large, and no scratch page is faulted in anew).

    Next keys are sorted inside the range, so a group boundary lies between
    two entries whose next keys differ. The range is cut into aligned
    intervals [g * w, (g + 1) * w] whose end keys are known without reads
    where the sample's packed keys reach token m and ``step`` is a power of
    2 (w = ``step``, at least 2), else w = the range's size rounded up to a
    power of 2. Every interval whose end keys differ is then halved, one
    level at a time for all intervals (the reads of a level are independent,
    so they overlap in memory; the bookkeeping has no branches; one core:
    halves run on two cores slowed each other down, 1.3 and 1.7 ms alone
    against 2.1 and 2.5 ms side by side, on the 2-core test machine): about
    d * log2(gap / d) reads for d distinct next tokens, never a scan.
    """
    a, b = _cont(tokens, table, pointer, m, lo, hi)
    if b <= a:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0
    width = width_of(tokens)
    bits, c = packing(width)
    shift = bits * (c - 1 - m)
    mask = (np.int64(1) << bits) - 1
    sampled = m < c and step & (step - 1) == 0  # sample keys reach token m, aligned
    w = max(step, 2)
    if not sampled:
        w = 2
        while w < b - a:
            w *= 2
    ka, kb = _next_key(tokens, table, pointer, a, m), _next_key(tokens, table, pointer, b - 1, m)
    g0, g1 = a // w, (b - 2) // w + 1  # points g * w for g in (g0, g1] lie in (a, b - 1]
    I, at = _take(work, 0, g1 - g0 + 1)
    KI, at = _take(work, at, I.shape[0])
    KJ, at = _take(work, at, I.shape[0])
    n, prev, stride = 0, ka, w // step
    for g in range(g0 + 1, g1 + 2):
        p = g * w
        if p >= b - 1:
            k = kb
        elif sampled:
            k = ((sample[g * stride] >> shift) & mask) - 1
        else:
            k = _next_key(tokens, table, pointer, p, m)
        I[n], KI[n], KJ[n] = p - w, prev, k
        n += prev != k
        prev = k
    I2, at = _take(work, at, 2 * n)
    KI2, at = _take(work, at, 2 * n)
    KJ2, at = _take(work, at, 2 * n)
    starts, at = _take(work, at, 1)  # room for the groups: at the last level
    skeys, at = _take(work, at, 1)
    starts[0], skeys[0] = a, ka
    ns = 1
    while n:
        if I2.shape[0] < 2 * n:
            I2, at = _take(work, at, 4 * n)
            KI2, at = _take(work, at, 4 * n)
            KJ2, at = _take(work, at, 4 * n)
        if w == 2 and starts.shape[0] < 2 * n + 1:
            starts, at = _take(work, at, 2 * n + 1)
            skeys, at = _take(work, at, 2 * n + 1)
            starts[0], skeys[0] = a, ka
        w >>= 1
        n, ns = _level(tokens, table, pointer, m, a, b, w, I, KI, KJ, n,
                       I2, KI2, KJ2, starts, skeys, ns)
        I, KI, KJ, I2, KI2, KJ2 = I2, KI2, KJ2, I, KI, KJ
    ids, counts = _tally(starts, skeys, ns, b, width)
    return ids, counts, at


@jit
def _tally(starts, skeys, n, end, width):
    """(ids ascending, counts) of the groups that start at starts[:n]
    (ascending, so their next keys skeys[:n] ascend too), the last one
    ending at ``end``. An id is its key with the bytes reversed: for width 2
    one stable counting pass by the key's low byte (the id's high byte) puts
    the ids in order, width 4 sorts them, width 1 keeps key order."""
    ids = np.empty(n, dtype=np.int64)
    counts = np.empty(n, dtype=np.int64)
    head = np.zeros(257, dtype=np.int64)  # width 2: where each high byte's ids begin
    if width == 2:
        for g in range(n):
            head[(skeys[g] & 255) + 1] += 1
        for v in range(256):
            head[v + 1] += head[v]
    for g in range(n):
        t = g
        if width == 2:
            t = head[skeys[g] & 255]
            head[skeys[g] & 255] += 1
        ids[t] = byte_key(skeys[g], width)
        counts[t] = (starts[g + 1] if g + 1 < n else end) - starts[g]
    if width == 4:
        order = np.argsort(ids)
        return ids[order], counts[order]
    return ids, counts


@lean
def _usable(tokens, table, pointer, bucket, sample, step, q, length):
    """Range of the last ``length`` query ids and whether it is usable
    (some occurrence is followed by a real token)."""
    N = len(q)
    lo, hi = _search(tokens, table, pointer, bucket, sample, step, q, N - length, N)
    a, b = _cont(tokens, table, pointer, length, lo, hi)
    return b > a, lo, hi


@lean
def longest_usable(tokens, table, pointer, bucket, sample, step, ids):
    """(L, lo, hi): the longest suffix of ``ids`` (L tokens) that occurs
    followed by a real token, and its range; L = -1 when the shard holds no
    real token. Checks the whole prompt first, then gallops up from short
    lengths and bisects (usable-ness is monotone in the length)."""
    n = tokens.shape[0]
    q, N = ids, len(ids)
    a, b = _cont(tokens, table, pointer, 0, 0, n)
    if b <= a:
        return -1, 0, 0
    if N == 0:
        return 0, 0, n
    ok, lo, hi = _usable(tokens, table, pointer, bucket, sample, step, q, N)
    if ok:
        return N, lo, hi
    good, glo, ghi = 0, 0, n
    bad = N
    length = 1
    while length < bad:
        ok, lo, hi = _usable(tokens, table, pointer, bucket, sample, step, q, length)
        if not ok:
            bad = length
            break
        good, glo, ghi = length, lo, hi
        length *= 2
    while bad - good > 1:
        mid = (good + bad) >> 1
        ok, lo, hi = _usable(tokens, table, pointer, bucket, sample, step, q, mid)
        if ok:
            good, glo, ghi = mid, lo, hi
        else:
            bad = mid
    return good, glo, ghi


@lean
def infgram_counts(tokens, table, pointer, bucket, sample, step, ids, next_id, low, vocab):
    """(L, total, count) on this shard: ``longest_usable`` length of ``ids``
    and the continuation counts of ``next_id`` there; L = -2 when some id
    is outside [low, vocab) (the caller then checks it)."""
    for j in range(len(ids)):
        if ids[j] < low or ids[j] >= vocab:
            return np.int64(-2), np.int64(0), np.int64(0)
    L, lo, hi = longest_usable(tokens, table, pointer, bucket, sample, step, ids)
    if L < 0:
        return L, np.int64(0), np.int64(0)
    total, cnt = continuation(tokens, table, pointer, L, lo, hi, next_id)
    return L, total, cnt


@jit
def score(tokens, table, pointer, bucket, sample, step, ids, max_context):
    """Per position t of ``ids``, on this shard: the longest usable suffix
    length L[t] of ids[:t] (at most ``max_context``; -1 if the shard holds
    no real token), the continuation total there, the count of ids[t], and
    the first/last distinct next token ids (key order; -1 if none).

    One pass with matching statistics: L[t+1] <= L[t] + 1, so the range of
    ids[a:t+1] is the group of ids[t] inside the range of ids[a:t]; leading
    tokens are dropped (a fresh search each) only while that is unusable.
    """
    n = tokens.shape[0]
    width = width_of(tokens)
    N = len(ids)
    L = np.full(N, -1, dtype=np.int64)
    total = np.zeros(N, dtype=np.int64)
    count = np.zeros(N, dtype=np.int64)
    first = np.full(N, -1, dtype=np.int64)
    last = np.full(N, -1, dtype=np.int64)
    a0, b0 = _cont(tokens, table, pointer, 0, 0, n)
    if b0 <= a0:
        return L, total, count, first, last
    start = 0  # the context is ids[start:t]
    lo, hi = 0, n
    a, b = a0, b0
    for t in range(N):
        m = t - start
        L[t] = m
        total[t] = b - a
        first[t] = tokens[_suffix(tokens, table, pointer, a) + m]
        last[t] = tokens[_suffix(tokens, table, pointer, b - 1) + m]
        lo, hi = _group(tokens, table, pointer, m, a, b, byte_key(ids[t], width))
        count[t] = hi - lo
        if t + 1 == N:
            break
        m += 1
        while True:
            if m <= max_context and hi > lo:
                a, b = _cont(tokens, table, pointer, m, lo, hi)
                if b > a:
                    break
            start += 1
            m -= 1
            if m == 0:
                lo, hi, a, b = 0, n, a0, b0
                break
            lo, hi = _search(tokens, table, pointer, bucket, sample, step, ids, start, t + 1)
    return L, total, count, first, last


@jit
def positions(tokens, table, pointer, lo, hi):
    """Token indexes where the suffixes of entries [lo, hi) start."""
    out = np.empty(hi - lo, dtype=np.int64)
    for i in range(lo, hi):
        out[i - lo] = _suffix(tokens, table, pointer, i)
    return out
