"""Difference-cover sample: suffix ranks that bound every suffix comparison.

A difference cover modulo D is a set of residues such that every d in
[0, D) is the difference (mod D) of two of them. The suffixes starting at
the positions whose residue lies in the cover (about 8% of them for
D = 256) are ranked once, exactly. Then for any two suffixes a and b some
delta < D puts both a + delta and b + delta on sampled positions, so a and
b compare by at most delta tokens and then by those two ranks: no
comparison reads D tokens, however long the common prefix (Kärkkäinen's
blockwise suffix sorting).

The sample is ranked by naming each sampled position's block of D tokens
(blocks sorted a few tokens at a time, only where they still tie, in
buckets by their first tokens, the buckets on several threads) and
sorting the suffixes of the string of names: by prefix doubling on all
cores where few names tie (:mod:`.doubling`), else with SA-IS. The string
lists the names of one residue class after another, each class ended by a
unique symbol smaller than every name.
"""
import functools

import numpy as np

from numba import prange

from . import doubling, jit, lean, pjit, pool
from .keys import key, pack_suffix, packing, width_of
from .memory import word
from .sort import INT32_MAX, check_tokens, sa_dtype, sort_string

PERIOD = 256
"""D: comparisons read fewer than D tokens; the sample holds about 21 / 256 of the positions."""

DOUBLING_MAX_TIED = 0.25
"""The sample's names are ranked by prefix doubling on all cores when at most
this share of them is tied with another (the rounds then touch only the
tied few), else by one SA-IS run (linear whatever the repeats)."""


@functools.lru_cache(maxsize=None)
def cover(D: int) -> np.ndarray:
    """A difference cover modulo D (ascending residues, 0 first), built greedily:
    each step adds the residue that covers the most differences still missing."""
    if D < 1:
        raise ValueError(f"period {D} must be at least 1")
    chosen = [0]
    covered = {0}
    while len(covered) < D:
        def gain(x):
            return len(({(x - y) % D for y in chosen} | {(y - x) % D for y in chosen}) - covered)
        best = max((x for x in range(D) if x not in chosen), key=gain)
        covered |= {(best - y) % D for y in chosen} | {(y - best) % D for y in chosen}
        chosen.append(best)
    return np.array(sorted(chosen), dtype=np.int64)


@functools.lru_cache(maxsize=None)
def _steps(D: int) -> np.ndarray:
    """steps[r * D + d]: the smallest t >= 0 that puts both r + t and r + d + t
    (mod D) in the cover (uint16, D * D entries)."""
    res = cover(D)
    inside = np.zeros(D, bool)
    inside[res] = True
    r = np.arange(D)
    out = np.empty((D, D), np.uint16)
    for d in range(D):
        firsts = res[inside[(res + d) % D]]  # residues i with i + d in the cover too
        out[:, d] = ((firsts[None, :] - r[:, None]) % D).min(axis=1)
    return out.ravel()


def sample_bytes(n: int, D: int = PERIOD) -> tuple[int, int]:
    """(peak while building, kept after) bytes of :func:`rank_sample` for n tokens."""
    C = cover(D).shape[0]
    ns = -(-n // D) * C
    return ns * 27, ns * (8 if ns + C >= INT32_MAX else 4)


def rank_sample(tokens, D: int = PERIOD, threads: int = 1, report=None) -> tuple:
    """The ranked difference-cover sample of ``tokens`` (uint8/16/32), D a
    power of 2: a tuple (ranks, slot, steps, C, log2 D) for :func:`compare`.
    Sample k is the k-th sampled position in ascending order,
    (k // C) * D + res[k % C]. The blocks are named on ``threads`` threads,
    calling ``report(blocks named, blocks)`` from this thread now and then.

    Memory (:func:`sample_bytes`): at most 27 bytes per sampled position
    while naming (19 and a bucket's sort order), less while sorting the
    names, 4 (8 past 2^31 samples) kept.
    """
    if D < 1 or D & (D - 1):
        raise ValueError(f"period {D} must be a power of 2")
    tokens = check_tokens(tokens)
    n = tokens.shape[0]
    res = cover(D)
    C = res.shape[0]
    slot = np.full(D, -1, np.int64)
    slot[res] = np.arange(C)
    lens = np.array([max(0, -(-(n - r) // D)) for r in res], dtype=np.int64)
    ns = int(lens.sum())
    names, K = _name_blocks(tokens, res, slot, D, ns, threads,
                            report and (lambda done: report(done, ns)))
    R = np.empty(ns + C, np.int32 if K + C < INT32_MAX else np.int64)
    _names_string(names, lens, R)
    del names
    SA = doubling.suffix_array(R, K + C, DOUBLING_MAX_TIED)
    if SA is None:
        SA = np.empty(R.shape[0], sa_dtype(R.shape[0]))
        sort_string(R, K + C, SA)
    del R
    ranks = np.full(-(-n // D) * C, -1, SA.dtype)
    _ranks_of(SA, lens, ranks)
    return ranks, slot, _steps(D), C, D.bit_length() - 1


@jit(inline="always")
def _partition(keys, order, i, j, pivot):
    """Reorder keys[i:j] (carrying order along) into those below ``pivot``,
    equal to it, then above it; returns the bounds (e0, e1) of the equal ones.
    A run where a few blocks differ costs one pass, not a sort."""
    lo, t, hi = i, i, j
    while t < hi:
        k = keys[t]
        if k < pivot:
            keys[lo], keys[t] = keys[t], keys[lo]
            order[lo], order[t] = order[t], order[lo]
            lo += 1
            t += 1
        elif k > pivot:
            hi -= 1
            keys[hi], keys[t] = keys[t], keys[hi]
            order[hi], order[t] = order[t], order[hi]
        else:
            t += 1
    return lo, hi


@jit(inline="always")
def _sift_pair(keys, order, base, root, size):
    """Sift keys[base + root] down the max-heap keys[base:base + size], order alongside."""
    while True:
        c = 2 * root + 1
        if c >= size:
            return
        if c + 1 < size and keys[base + c + 1] > keys[base + c]:
            c += 1
        if keys[base + root] >= keys[base + c]:
            return
        a, b = base + root, base + c
        keys[a], keys[b] = keys[b], keys[a]
        order[a], order[b] = order[b], order[a]
        root = c


@jit
def _sort_run(keys, order, i, j):
    """Sort keys[i:j] ascending in place, carrying order[i:j] along (no extra
    memory: insertion sort for short runs, heapsort for long ones)."""
    if j - i <= 32:
        for t in range(i + 1, j):
            k, o = keys[t], order[t]
            u = t
            while u > i and keys[u - 1] > k:
                keys[u], order[u] = keys[u - 1], order[u - 1]
                u -= 1
            keys[u], order[u] = k, o
        return
    m = j - i
    for root in range(m // 2 - 1, -1, -1):
        _sift_pair(keys, order, i, root, m)
    for end in range(m - 1, 0, -1):
        keys[i], keys[i + end] = keys[i + end], keys[i]
        order[i], order[i + end] = order[i + end], order[i]
        _sift_pair(keys, order, i, 0, end)


@jit(inline="always")
def _tie_depth(tokens, order, i, j, depth, D):
    """The first offset in [depth, D) where the blocks at order[i:j] do not all
    agree (D if they do); a block that ends there (the end of the tokens)
    differs from the others. Each block is read from ``depth`` on, in order."""
    n = tokens.shape[0]
    first = D
    for t in range(i, j):
        first = min(first, n - order[t])
    x = order[i]
    for t in range(i + 1, j):
        y = order[t]
        d = depth
        while d < first and tokens[x + d] == tokens[y + d]:
            d += 1
        first = d
    return first


BUCKETS_PER_THREAD = 8
"""Buckets of blocks sorted apart per thread that ranks the sample (they
are of unequal sizes, so a few per thread keep the threads busy)."""


@jit
def _keys_at(tokens, res, D, c, bits, ks):
    """The packed first c tokens of the blocks of samples ``ks``."""
    C = res.shape[0]
    out = np.empty(ks.shape[0], np.int64)
    for i in range(ks.shape[0]):
        out[i] = pack_suffix(tokens, (ks[i] // C) * D + res[ks[i] % C], c, bits)
    return out


@pjit
def _bucket_counts(tokens, res, D, c, bits, splits, ns, counts):
    """counts[h, b]: how many of the samples in slice h (of counts.shape[0]
    equal slices of [0, ns)) have their block's first c tokens in bucket b
    (``splits``: ascending keys; bucket b holds keys in [splits[b-1], splits[b]))."""
    C = res.shape[0]
    H = counts.shape[0]
    size = -(-ns // H)
    for h in prange(H):
        for k in range(h * size, min(ns, (h + 1) * size)):
            b = np.searchsorted(splits, pack_suffix(tokens, (k // C) * D + res[k % C], c, bits),
                                side="right")
            counts[h, b] += 1


@pjit
def _scatter(tokens, res, D, c, bits, splits, ns, starts, order, keys):
    """Place each sample k at the next free slot of its bucket in slice h's
    share (``starts[h, b]``, advanced): order[slot] = k, keys[slot] = its key."""
    C = res.shape[0]
    H = starts.shape[0]
    size = -(-ns // H)
    for h in prange(H):
        for k in range(h * size, min(ns, (h + 1) * size)):
            v = pack_suffix(tokens, (k // C) * D + res[k % C], c, bits)
            b = np.searchsorted(splits, v, side="right")
            t = starts[h, b]
            starts[h, b] = t + 1
            order[t] = k
            keys[t] = v


@jit
def _name_bucket(tokens, res, D, c, bits, order, keys, new, depth, lo, hi):
    """Sort the blocks of one bucket, slots [lo, hi): order holds their
    sample indexes (then, from here on, their positions) and keys their
    first c tokens packed; new[t] = 1 where a new block starts.

    The blocks are sorted by their first few tokens; then each run still
    tied is read on to the first token where its blocks differ (done if
    none does before D) and sorted by the few tokens from there, and so
    on: each token of a block is read about once."""
    C = res.shape[0]
    p = np.argsort(keys[lo:hi])
    for t in range(hi - lo):  # keys is scratch: positions in sorted order, then their keys
        k = order[lo + p[t]]
        keys[lo + t] = (k // C) * D + res[k % C]
    for t in range(lo, hi):
        order[t] = keys[t]
        keys[t] = pack_suffix(tokens, order[t], c, bits)
    new[lo] = 1
    depth[lo] = D  # at each tied run's start: the offset it is tied to
    for t in range(lo + 1, hi):
        new[t] = 1 if keys[t] != keys[t - 1] else 0
        depth[t] = D
    for t in range(lo, hi - 1):
        if new[t] and not new[t + 1]:
            depth[t] = c
    more = True
    while more:
        more = False
        i = lo
        while i < hi:
            j = i + 1
            while j < hi and not new[j]:
                j += 1
            if j - i > 1 and depth[i] < D:
                d = _tie_depth(tokens, order, i, j, depth[i], D)
                depth[i] = D
                if d < D:
                    for t in range(i, j):
                        keys[t] = pack_suffix(tokens, order[t] + d, c, bits)
                    e0, e1 = _partition(keys, order, i, j, keys[i])
                    _sort_run(keys, order, i, e0)
                    _sort_run(keys, order, e1, j)
                    a = i
                    for t in range(i + 1, j + 1):
                        if t == j or keys[t] != keys[t - 1]:
                            if t < j:
                                new[t] = 1
                            if t - a > 1:
                                depth[a] = d + c
                                more = True
                            a = t
            i = j


@jit
def _names_of(order, new, slot, D, C, names):
    """names[k]: the name of sample k's block (the number of new blocks
    before its slot); returns how many names there are."""
    name = -1
    for t in range(order.shape[0]):
        name += new[t]
        x = order[t]
        names[(x // D) * C + slot[x % D]] = name
    return name + 1


def _name_blocks(tokens, res, slot, D, ns, threads, report):
    """Names of the first ``ns`` sampled positions' D-token blocks (int64,
    by sample) and how many names there are.

    Equal names mean equal blocks and names ascend with the blocks: past the
    end a block is padded with a value below every token, so a block that
    runs off the end is unique and sorts before its extensions. The blocks
    go to buckets by their first few tokens (key ranges cut at quantiles of
    a regular sample of keys, so equal blocks share a bucket and buckets
    come in block order) and each bucket is sorted on its own, buckets on
    ``threads`` threads; ``report(blocks named)`` as buckets finish."""
    C = res.shape[0]
    bits, c = packing(width_of(tokens))
    buckets = BUCKETS_PER_THREAD * threads if threads > 1 and ns else 1
    picks = np.sort(_keys_at(tokens, res, D, c, bits, np.arange(0, ns, max(1, ns // (64 * buckets)))))
    splits = np.unique(picks[len(picks) * np.arange(1, buckets) // buckets])
    counts = np.zeros((min(ns, 8 * threads) or 1, len(splits) + 1), np.int64)
    _bucket_counts(tokens, res, D, c, bits, splits, ns, counts)
    sizes = counts.sum(axis=0)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    starts = bounds[:-1] + np.cumsum(counts, axis=0) - counts  # slice h's first slot in bucket b
    order = np.empty(ns, np.int64)
    keys = np.empty(ns, np.int64)
    _scatter(tokens, res, D, c, bits, splits, ns, starts, order, keys)
    new = np.empty(ns, np.uint8)
    depth = np.empty(ns, np.int16)

    def job(lo, hi):
        def name(tick):
            _name_bucket(tokens, res, D, c, bits, order, keys, new, depth, lo, hi)
            tick(hi - lo)
        return name

    big_first = sorted((b for b in range(len(sizes)) if sizes[b]), key=lambda b: -sizes[b])
    pool.run([job(bounds[b], bounds[b + 1]) for b in big_first], threads, report)
    del keys, depth
    names = np.empty(ns, np.int64)
    return names, _names_of(order, new, slot, D, C, names)


@jit
def _names_string(names, lens, R):
    """The string whose suffixes the sample is ranked by: the names (+ C) of
    residue class 0's samples in order, then the class's index, then class 1's..."""
    C = lens.shape[0]
    r = 0
    for ci in range(C):
        for j in range(lens[ci]):
            R[r] = names[j * C + ci] + C
            r += 1
        R[r] = ci
        r += 1


@pjit
def _ranks_of(SA, lens, ranks):
    """ranks[k] = the place of sample k's suffix in SA (the suffix array of
    the names string: class ci's entries, then its end, after those of the
    classes before it)."""
    C = lens.shape[0]
    ends = np.empty(C, np.int64)  # index of each class's end symbol
    total = 0
    for ci in range(C):
        total += lens[ci]
        ends[ci] = total
        total += 1
    for r in prange(SA.shape[0]):
        p = SA[r]
        ci = np.searchsorted(ends, p)
        j = p - (ends[ci] - lens[ci])
        if j < lens[ci]:
            ranks[j * C + ci] = r


@jit(inline="always")
def delta(sample, a, b):
    """Smallest t >= 0 with both a + t and b + t on sampled positions (t < D)."""
    steps, shift = sample[2], sample[4]
    mask = (1 << shift) - 1
    return np.int64(steps[((a & mask) << shift) | ((b - a) & mask)])


@jit(inline="always")
def rank_at(sample, x, n):
    """Rank of the sampled suffix x (-1 for the empty suffix at x = n)."""
    if x >= n:
        return -1
    ranks, slot, C, shift = sample[0], sample[1], sample[3], sample[4]
    return ranks[(x >> shift) * C + slot[x & ((1 << shift) - 1)]]


@jit(inline="always")
def _common_words(tokens, i, j, end):
    """First index in [i, end) from which tokens[i:end] and the tokens from j
    may differ, 8 bytes at a time (the tokens before it are equal)."""
    w = 8 // width_of(tokens)
    while i + w <= end and word(tokens, i) == word(tokens, j):
        i += w
        j += w
    return i


@lean
def compare(tokens, sample, a, b, skip):
    """Sign of suffix a vs suffix b (a != b), whose first ``skip`` tokens are
    equal: at most D - 1 token reads and two rank lookups."""
    n = tokens.shape[0]
    t = delta(sample, a, b)
    i = a + skip
    j = b + skip
    if a + t > n or b + t > n:  # one suffix ends within t tokens
        while i < n and j < n:
            if tokens[i] != tokens[j]:
                return -1 if key(tokens, i) < key(tokens, j) else 1
            i += 1
            j += 1
        return -1 if a > b else 1
    i = _common_words(tokens, i, j, a + t)
    j = b + (i - a)
    while i < a + t:
        if tokens[i] != tokens[j]:
            return -1 if key(tokens, i) < key(tokens, j) else 1
        i += 1
        j += 1
    return -1 if rank_at(sample, a + t, n) < rank_at(sample, b + t, n) else 1
