"""Next-token tallies: the continuations of a prompt's range, grouped by
the key of their next token (conventions in :mod:`.search`)."""
import numpy as np

from . import jit, lean
from .keys import byte_key, gallop, gallop_back, lower_bound, packing, width_of
from .memory import prefetch
from .ptrs import prefetch_entry
from .search import suffix


@jit(inline="always")
def _next_key(s, i, m):
    """Key of the token after the first ``m`` tokens of entry ``i``'s suffix;
    -1 where the suffix ends there (the end of the shard)."""
    p = suffix(s, i) + m
    if p >= s.tokens.shape[0]:
        return np.int64(-1)
    return byte_key(s.tokens[p], width_of(s.tokens))


@jit(inline="always")
def _next_below(ctx, i):
    s, m, key = ctx
    return _next_key(s, i, m) < key


@lean
def _bisect_next(s, m, lo, hi, key):
    """First entry in [lo, hi) whose next key is >= key (binary search)."""
    return lower_bound(_next_below, (s, m, key), lo, hi)


@lean
def _gallop_next(s, m, lo, hi, key):
    """First entry in [lo, hi) whose next key is >= key, galloping from lo."""
    return gallop(_next_below, (s, m, key), lo, hi)


@lean
def _gallop_next_back(s, m, lo, hi, key):
    """First entry in [lo, hi) whose next key is >= key, galloping from hi."""
    return gallop_back(_next_below, (s, m, key), lo, hi)


@lean
def continuing(s, m, lo, hi):
    """Sub-range of a prompt's range [lo, hi) whose suffixes continue with a
    real token: drop the one ending the shard and those followed by the separator."""
    if lo < hi and _next_key(s, lo, m) < 0:
        lo += 1
    sep = (np.int64(1) << (8 * width_of(s.tokens))) - 1
    return lo, _gallop_next_back(s, m, lo, hi, sep)


@lean
def next_group(s, m, a, b, key):
    """Sub-range of [a, b) (a continuation range) whose next key equals key."""
    start = _bisect_next(s, m, a, b, key)
    return start, _gallop_next(s, m, start, b, key + 1)


@lean
def continuation(s, m, lo, hi, next_id):
    """(total, count) in the range [lo, hi) of an m-token prompt: occurrences
    followed by a real token, and those followed by ``next_id``."""
    a, b = continuing(s, m, lo, hi)
    c, d = next_group(s, m, a, b, byte_key(next_id, width_of(s.tokens)))
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
def _next_key_ahead(s, m, a, b, h, I, n, k):
    """Next key of the midpoint I[k] + h, after prefetching the entry of
    midpoint k + PROBES_AHEAD and the token of midpoint k + PROBES_AHEAD / 2."""
    if k + PROBES_AHEAD < n:
        prefetch_entry(s.table, _at(a, b, I[k + PROBES_AHEAD] + h), s.pointer)
    if k + PROBES_AHEAD // 2 < n:
        p = _at(a, b, I[k + PROBES_AHEAD // 2] + h)
        prefetch(s.tokens, suffix(s, p) + m)
    return _next_key(s, _at(a, b, I[k] + h), m)


@lean
def _level(s, m, a, b, h, cur, n, halves, groups, ns):
    """One bisection level over the n open intervals [I, I + 2h] (``cur``:
    I and their end keys KI, KJ, which differ): probe each midpoint
    (prefetched ahead, so the reads overlap in memory) and file both
    halves, without branches: into ``halves`` (I2/KI2/KJ2) while h > 1 (kept
    where their end keys differ), else as the groups starting at I + 1 and
    I + 2 into ``groups`` (starts/skeys) from ns on.
    Returns the new (open intervals, groups found)."""
    I, KI, KJ = cur
    I2, KI2, KJ2 = halves
    starts, skeys = groups
    for k in range(min(n, PROBES_AHEAD)):
        prefetch_entry(s.table, _at(a, b, I[k] + h), s.pointer)
    nxt = 0
    if h > 1:
        for k in range(n):
            km = _next_key_ahead(s, m, a, b, h, I, n, k)
            i, ki, kj = I[k], KI[k], KJ[k]
            I2[nxt], KI2[nxt], KJ2[nxt] = i, ki, km
            nxt += ki != km
            I2[nxt], KI2[nxt], KJ2[nxt] = i + h, km, kj
            nxt += km != kj
        return nxt, ns
    for k in range(n):
        km = _next_key_ahead(s, m, a, b, h, I, n, k)
        i, ki, kj = I[k], KI[k], KJ[k]
        starts[ns], skeys[ns] = i + 1, km
        ns += ki != km
        starts[ns], skeys[ns] = i + 2, kj
        ns += km != kj
    return nxt, ns


@jit
def next_tokens(s, m, lo, hi, work):
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
    halves run on two cores slowed each other down, measured on 2 cores):
    about
    d * log2(gap / d) reads for d distinct next tokens, never a scan.
    """
    a, b = continuing(s, m, lo, hi)
    if b <= a:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0
    sample, step = s.sample, s.step
    width = width_of(s.tokens)
    bits, c = packing(width)
    shift = bits * (c - 1 - m)
    mask = (np.int64(1) << bits) - 1
    sampled = m < c and step & (step - 1) == 0  # sample keys reach token m, aligned
    w = max(step, 2)
    if not sampled:
        w = 2
        while w < b - a:
            w *= 2
    ka, kb = _next_key(s, a, m), _next_key(s, b - 1, m)
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
            k = _next_key(s, p, m)
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
        n, ns = _level(s, m, a, b, w, (I, KI, KJ), n, (I2, KI2, KJ2), (starts, skeys), ns)
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
