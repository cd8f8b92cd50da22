"""Suffix sorting in parts: sort parts of a shard exactly (in bounded memory,
several at once), then merge them (in independent output ranges, several
at once).

The suffixes of a shard are split by start position into parts
``[lo, hi)`` (:func:`plan_parts`). Both steps compare suffixes through a
ranked difference-cover sample of the shard (:mod:`native.cover`), so no
comparison reads more than D tokens, however long the repeats:
:func:`sort_part` sorts one part's suffixes in full-suffix order with one
SA-IS run (each token marked by whether its suffix sorts after the next
part's first suffix); :func:`merge_parts` merges the sorted parts (one
array, each part at its own positions) k-way straight into the packed
table, so parts and table can be memmaps on disk. To merge on several
threads, the output is cut into ranges at splitter suffixes taken from
the sample: each part's share of a range is found by bisection and each
range merged on its own into its own slice of the table. The merged order
is identical to :func:`native.sort.suffix_array`.
"""
import numpy as np

from . import cover, jit, lean, pool
from .keys import key, prefix_key, width_of
from .ptrs import put_pointer
from .sort import INT32_MAX, alphabet, check_tokens, sa_dtype, sort_string

_BYTES_PER_TOKEN = 4 + 1  # in memory: suffix array (int32) + type bits and slack
_FIXED = 8 * (1 << 16) + (2 << 20)  # bucket array and overheads


def _part_buckets(width: int) -> int:
    """Bytes of the bucket array of each further part sorted at once: 2 * 256**width
    + 1 marked symbols (int32); for 4-byte tokens the part's alphabet is at
    most its length (per token)."""
    return 4 * (2 * 256 ** width + 1) if width <= 2 else 0
MIN_PART = 1 << 12
"""Fewest tokens a part may hold."""


PARALLEL_TOKENS = 1 << 25
"""Fewest tokens for which several threads sort a shard in parallel (by
output ranges, :mod:`native.ranges`, or in parts) rather than with one
SA-IS run (measured: below it the one run is faster)."""
PARALLEL_THREADS = 4
"""Fewest threads that sort in parts (without a memory budget: where the
sort by ranges gives up) rather than with one SA-IS run (on fewer, one run
is faster: benchmarks/RESULTS.md)."""
PART_TOKENS = 1 << 24
"""Most tokens of a part sorted on a thread when memory allows more (a
part's working set then stays small enough to sort fast)."""


def plan_parts(n_tokens: int, width: int, max_memory_bytes: int | None = None,
               threads: int = 1) -> list[tuple[int, int]]:
    """Split ``n_tokens`` suffixes by start position into parts [lo, hi).

    One part (one SA-IS run) unless there are PARALLEL_THREADS ``threads``
    or more and the shard holds at least PARALLEL_TOKENS tokens (then at
    least ``threads`` parts of at
    most PART_TOKENS), or the whole shard does not fit in
    ``max_memory_bytes``. Parts fit it with ``threads`` of them sorted at
    once: the whole token file's pages (comparisons read it anywhere, in
    every phase), each part's marked string and suffix arrays, and the
    shard's ranked sample (built first, with its naming's peak)."""
    if n_tokens == 0:
        return []
    wide = n_tokens >= INT32_MAX
    whole = width + _BYTES_PER_TOKEN + (8 if width == 4 else 0) + (4 if wide else 0)
    parallel = threads >= PARALLEL_THREADS and n_tokens >= PARALLEL_TOKENS
    if not parallel and (max_memory_bytes is None
                         or n_tokens * whole + _FIXED <= max_memory_bytes):
        return [(0, n_tokens)]
    size = -(-n_tokens // max(threads, -(-n_tokens // PART_TOKENS))) if parallel else n_tokens
    if max_memory_bytes is not None:
        naming, kept = cover.sample_bytes(n_tokens)
        per_token = width + 8 + (4 if wide else 0) + (12 if width == 4 else 0)
        pages = _FIXED + n_tokens * width
        fixed = pages + (threads - 1) * _part_buckets(width)
        fit = (max_memory_bytes - fixed - kept) // (threads * per_token)
        if fit < MIN_PART or naming + pages > max_memory_bytes:
            need = max(naming + pages, kept + fixed + threads * MIN_PART * per_token)
            raise ValueError(
                f"max memory {max_memory_bytes} bytes is too small to sort {n_tokens} tokens of "
                f"width {width} in parts on {threads} thread(s); allow at least {need} bytes")
        size = min(size, fit)
    return [(lo, min(lo + size, n_tokens)) for lo in range(0, n_tokens, size)]


@lean
def _mark(tokens, s, lo, hi, sample, K, sigma):
    """sigma[i] = key of s[i] (the part's token lo + i), plus K + 1 when the
    suffix at lo + i sorts after the suffix at hi; sigma[hi - lo] = K.

    Sorting sigma's suffixes sorts the part's suffixes in full: where one
    part suffix is a prefix of the other within the part, the terminator
    K meets a marked token, and the mark says how the rest compares."""
    n = tokens.shape[0]
    m = hi - lo
    for i in range(m):
        after = hi == n or cover.compare(tokens, sample, lo + i, hi, 0) > 0
        sigma[i] = key(s, i) + (K + 1 if after else 0)
    sigma[m] = K


@jit
def _select_part(sa, lo, out):
    """The part's positions in sorted order: sa without the terminator's entry
    (the last position), shifted by lo."""
    m = out.shape[0]
    k = 0
    for i in range(sa.shape[0]):
        if sa[i] < m:
            out[k] = sa[i] + lo
            k += 1


def sort_part(tokens, lo: int, hi: int, sample, parallel: bool = True) -> np.ndarray:
    """Positions lo..hi-1 of ``tokens``, sorted by their full suffixes
    (``sample``: :func:`native.cover.rank_sample` of the same tokens).
    ``parallel=False`` keeps to the calling thread, as worker threads that
    each sort a part must."""
    tokens = check_tokens(tokens)
    n = tokens.shape[0]
    if not 0 <= lo <= hi <= n:
        raise ValueError(f"part [{lo}, {hi}) is outside the token array 0..{n}")
    s, K = alphabet(tokens[lo:hi], parallel)
    m = hi - lo
    sigma = np.empty(m + 1, np.int32 if 2 * K + 1 < INT32_MAX else np.int64)
    _mark(tokens, s, lo, hi, sample, K, sigma)
    del s
    sa = np.empty(m + 1, sa_dtype(m + 1))
    sort_string(sigma, 2 * K + 1, sa, parallel)
    del sigma
    pos = np.empty(m, sa_dtype(n))
    _select_part(sa, lo, pos)
    return pos


@jit(inline="always")
def _first(tokens, sample, heads, prefix, a, b):
    """Whether part a's head suffix sorts before part b's; a part whose head
    is -1 (exhausted) never does."""
    if heads[a] < 0:
        return False
    if heads[b] < 0:
        return True
    if prefix[a] != prefix[b]:
        return prefix[a] < prefix[b]
    return cover.compare(tokens, sample, heads[a], heads[b], 64 // (width_of(tokens) * 8)) < 0


@jit
def _merge_start(tokens, flat, starts, ends, sample):
    """The k-way merge's tree of losers over K (a power of 2 >= k) leaves,
    part j's entries being flat[starts[j]:ends[j]]: (tree, heads, cursors,
    prefix). tree[p] holds the part that lost the match at node p, tree[0]
    the winner; heads[j] is part j's next suffix (-1 once exhausted),
    prefix[j] its first 8 bytes."""
    k = starts.shape[0]
    K = 1
    while K < k:
        K *= 2
    tree = np.zeros(K, np.int64)
    heads = np.full(K, -1, np.int64)
    cursors = np.zeros(K, np.int64)
    prefix = np.zeros(K, np.uint64)
    win = np.empty(2 * K, np.int64)
    for j in range(k):
        cursors[j] = starts[j]
        if ends[j] > starts[j]:
            heads[j] = flat[starts[j]]
            prefix[j] = prefix_key(tokens, heads[j])
    for j in range(K):
        win[K + j] = j
    for p in range(K - 1, 0, -1):
        a, b = win[2 * p], win[2 * p + 1]
        if _first(tokens, sample, heads, prefix, b, a):
            a, b = b, a
        win[p], tree[p] = a, b
    tree[0] = win[1]
    return tree, heads, cursors, prefix


@lean
def _merge_steps(tokens, flat, ends, sample, pointer, out, tree, heads, cursors, prefix,
                 w, stop):
    """Write merged entries w.. until ``stop`` (or the parts run out); returns
    the next w. Each output replays the matches on its part's path: log2(K)
    comparisons, no allocation and no reference counting."""
    K = prefix.shape[0]
    width = width_of(tokens)
    while w < stop and heads[tree[0]] >= 0:
        j = tree[0]
        put_pointer(out, w, pointer, heads[j] * width)
        w += 1
        cursors[j] += 1
        if cursors[j] < ends[j]:
            heads[j] = flat[cursors[j]]
            prefix[j] = prefix_key(tokens, heads[j])
        else:
            heads[j] = -1
        p = (K + j) >> 1
        while p >= 1:
            if _first(tokens, sample, heads, prefix, tree[p], j):
                tree[p], j = j, tree[p]
            p >>= 1
        tree[0] = j
    return w


@jit
def _part_cuts(tokens, flat, lo, hi, sample, splitters, out):
    """out[r]: the first entry of the sorted part flat[lo:hi] whose suffix
    does not sort before splitter r, by bisection, each search starting at
    the previous one's cut."""
    for r in range(splitters.shape[0]):
        x = splitters[r]
        top = hi
        while lo < top:
            mid = (lo + top) >> 1
            p = flat[mid]
            if p != x and cover.compare(tokens, sample, p, x, 0) < 0:
                lo = mid + 1
            else:
                top = mid
        out[r] = lo


def splitters(sample, ranges: int) -> np.ndarray:
    """Up to ``ranges`` - 1 sampled positions whose suffixes cut the suffix
    order into ranges of about equal size (ascending): rank quantiles of an
    evenly spaced subset of the sample."""
    ranks, slot, _, C, shift = sample
    valid = np.flatnonzero(ranks >= 0)
    if ranges <= 1 or not len(valid):
        return np.zeros(0, np.int64)
    ks = valid[::max(1, len(valid) // (64 * ranges))]
    ks = ks[np.argsort(ranks[ks])]
    ks = ks[np.unique(len(ks) * np.arange(1, ranges) // ranges)]
    res = np.flatnonzero(slot >= 0)
    return (ks // C << shift) + res[ks % C]


CHUNK = 1 << 22
"""Entries merged between two progress reports."""
RANGES_PER_THREAD = 4
"""Output ranges merged per merging thread (ranges differ in size, so a few
per thread keep the threads busy)."""


def merge_parts(tokens, flat, bounds, sample, pointer: int, out: np.ndarray,
                report=None, threads: int = 1, done=None, cut=None) -> None:
    """Merge the sorted parts ``flat[bounds[p]:bounds[p+1]]`` (each from
    :func:`sort_part` with the same ``sample``; the parts' bounds from
    :func:`plan_parts` do, and a memmap is fine) and write the result as the
    packed table: entry i = byte offset (position * token width) in
    ``pointer`` little-endian bytes of uint8 ``out`` (a memmap is fine).
    With ``threads`` > 1, output ranges are merged on that many threads.
    ``report(entries_done)`` is called from this thread every CHUNK entries
    or so and at the end; ``done`` is :func:`merge_range`'s, ``cut``
    :func:`merge_ranges`'.

    Memory: ``flat`` and ``out`` are streamed through, O(len(bounds)) else.
    """
    cuts = merge_ranges(tokens, flat, bounds, sample, pointer, out,
                        RANGES_PER_THREAD * threads if threads > 1 else 1, cut)
    jobs = [lambda tick, r=r: merge_range(tokens, flat, cuts, r, sample, pointer, out, tick,
                                          done)
            for r in range(cuts.shape[1] - 1)]
    pool.run(jobs, threads, report)


def merge_ranges(tokens, flat, bounds, sample, pointer: int, out: np.ndarray,
                 ranges: int, cut=None) -> np.ndarray:
    """Check the arguments of :func:`merge_parts` and cut the merge into up
    to ``ranges`` output ranges that :func:`merge_range` merges independently
    (in any order, on any thread or machine): ``cuts[j, r]`` is the first
    entry of part j in range r, ``cuts[j, R]`` its end. Part by part, by
    bisections that read ``flat[lo:hi]`` anywhere, then ``cut(lo, hi)`` (a
    caller reading ``flat`` from a map may let go of those pages)."""
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
    if not n:
        return np.zeros((len(bounds) - 1, 1), np.int64)
    spl = splitters(sample, ranges)
    cuts = np.empty((len(bounds) - 1, len(spl) + 2), np.int64)
    cuts[:, 0], cuts[:, -1] = bounds[:-1], bounds[1:]
    for j, (lo, hi) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        _part_cuts(tokens, flat, lo, hi, sample, spl, cuts[j, 1:-1])
        if cut is not None:
            cut(lo, hi)
    return cuts


def merge_range(tokens, flat, cuts, r: int, sample, pointer: int, out: np.ndarray,
                tick=None, done=None) -> None:
    """Merge output range ``r`` of :func:`merge_ranges`' ``cuts`` into its
    entries of ``out``; ``tick(k)`` after each k entries written, and
    ``done(w, nxt, read, cursors)`` after each chunk: entries [w, nxt) of
    ``out`` are written and flat[read[j]:cursors[j]] read for good (so a
    caller may let go of those pages)."""
    tokens = check_tokens(tokens)
    w, stop = (cuts[:, r:r + 2] - cuts[:, :1]).sum(axis=0)  # the range's output entries
    ends = cuts[:, r + 1].copy()
    state = _merge_start(tokens, flat, cuts[:, r].copy(), ends, sample)
    cursors = state[2][:len(ends)]
    while w < stop:
        read = cursors.copy()
        nxt = _merge_steps(tokens, flat, ends, sample, pointer, out, *state, w,
                           min(stop, w + CHUNK))
        if tick is not None:
            tick(nxt - w)
        if done is not None:
            done(w, nxt, read, cursors)
        w = nxt
