"""Suffix sorting by output ranges: no merge.

Splitter suffixes taken from the ranked difference-cover sample
(:mod:`native.cover`) cut the suffix order into ranges. One pass over the
shard finds each suffix's range (by its first 8 bytes, and a sample
comparison where they equal a splitter's); then each range, on its own
and on any thread, gathers its suffixes (ascending, so their keys are read
in one forward sweep), radix-sorts them by their first 8 bytes, sorts each
run of equal keys by the next 8 bytes, and so on for ``ROUNDS`` rounds, and
finishes what still ties by comparisons through the sample (at most D
tokens each). The result is :func:`native.sort.suffix_array`'s order,
packed into the range's slice of the table and handed to the caller to
write. Scratch: one byte a suffix (its range) and, per thread, 24 bytes a
suffix of the largest range (32 from 2^32 tokens on) and its packed slice.

Long repeats tie round after round; :func:`sort_range` gives up (returns
False) when more than ``MAX_DEEP`` of a range's suffixes reach the
comparisons, and the caller sorts the shard another way.
"""
import threading

import numpy as np

from . import aligned, cover, jit, pool
from .keys import prefix_key, width_of
from .merge import splitters
from .ptrs import put_pointer

ROUNDS = 6
"""Rounds of 8-byte keys before ties are compared through the sample."""
MAX_DEEP = 0.1
"""Largest share of a range's suffixes that may still tie after ROUNDS rounds."""
SMALL = 16
"""Runs this short are sorted by insertion (on their keys; past ROUNDS, by
comparisons, which then do not count towards MAX_DEEP)."""
RANGES_PER_THREAD = 8
MIN_RANGES = 32
"""Ranges: RANGES_PER_THREAD a thread, at least MIN_RANGES (each thread's
scratch grows with the largest range)."""
CLASSIFY_CHUNK = 1 << 22
"""Suffixes a thread classifies between two progress reports."""


@jit(inline="always")
def _key_width(tokens):
    """Tokens a key holds."""
    return 8 // width_of(tokens)


@jit
def classify(tokens, sample, spl, lo, hi, out):
    """out[i - lo] = the range of suffix i (the number of splitters ``spl``,
    ascending sampled positions, whose suffix is not after it), i in [lo, hi)."""
    kt = _key_width(tokens)
    R = spl.shape[0]
    keys = np.empty(R, np.uint64)
    below = np.zeros((1 << 16) + 1, np.int64)  # below[v]: splitters whose key's top 16 bits < v
    for r in range(R):
        keys[r] = prefix_key(tokens, spl[r])
        below[np.int64(keys[r] >> np.uint64(48)) + 1] += 1
    for v in range(1 << 16):
        below[v + 1] += below[v]
    for i in range(lo, hi):
        k = prefix_key(tokens, i)
        top = np.int64(k >> np.uint64(48))
        a, b = below[top], below[top + 1]  # only splitters with the same top bits can tie
        while a < b:
            m = (a + b) >> 1
            s = spl[m]
            if keys[m] < k or (keys[m] == k and (s == i or
                                                 cover.compare(tokens, sample, s, i, kt) < 0)):
                a = m + 1
            else:
                b = m
        out[i - lo] = a


@jit
def tally(ranges, bins):
    """How many of ``ranges`` hold each value below ``bins`` (int64)."""
    counts = np.zeros(bins, np.int64)
    for i in range(ranges.shape[0]):
        counts[ranges[i]] += 1
    return counts


_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)


@jit
def gather(ranges, r, out):
    """Positions i with ranges[i] == r, ascending, into out; returns how
    many. Eight bytes at a time: a word holding no r is skipped whole."""
    n = ranges.shape[0]
    words = ranges[:n - n % 8].view(np.uint64)
    pattern = np.uint64(r) * _ONES
    k = 0
    for w in range(words.shape[0]):
        x = words[w] ^ pattern
        if (x - _ONES) & ~x & _HIGHS:  # some byte of the word is r
            for i in range(8 * w, 8 * w + 8):
                if ranges[i] == r:
                    out[k] = i
                    k += 1
    for i in range(n - n % 8, n):
        if ranges[i] == r:
            out[k] = i
            k += 1
    return k


@jit
def prefix_keys(tokens, pos, depth, out):
    for j in range(pos.shape[0]):
        out[j] = prefix_key(tokens, pos[j] + depth)  # 0 past the end


@jit
def _insertion(tokens, sample, pos, lo, hi, skip):
    for i in range(lo + 1, hi):
        p = pos[i]
        j = i
        while j > lo and cover.compare(tokens, sample, p, pos[j - 1], skip) < 0:
            pos[j] = pos[j - 1]
            j -= 1
        pos[j] = p


@jit
def _merge_sort(tokens, sample, pos, lo, hi, skip, tmp):
    """pos[lo:hi] sorted by full suffix (first ``skip`` tokens equal), bottom-up."""
    width = SMALL
    for s in range(lo, hi, width):
        _insertion(tokens, sample, pos, s, min(s + width, hi), skip)
    src, dst = pos, tmp
    swapped = False
    while width < hi - lo:
        for s in range(lo, hi, 2 * width):
            m, e = min(s + width, hi), min(s + 2 * width, hi)
            i, j, k = s, m, s
            while i < m and j < e:
                if cover.compare(tokens, sample, src[j], src[i], skip) < 0:
                    dst[k] = src[j]
                    j += 1
                else:
                    dst[k] = src[i]
                    i += 1
                k += 1
            while i < m:
                dst[k] = src[i]
                i += 1
                k += 1
            while j < e:
                dst[k] = src[j]
                j += 1
                k += 1
        src, dst = dst, src
        width *= 2
        swapped = not swapped
    if swapped:
        pos[lo:hi] = tmp[lo:hi]


@jit
def radix_sort(keys, pos, keys2, pos2):
    """Sort ``keys`` (uint64) and ``pos`` alike, ascending, in place: LSD radix
    on 16-bit digits through the same-sized ``keys2``/``pos2``; a digit all
    keys share is skipped."""
    m = keys.shape[0]
    count = np.empty(1 << 16, np.int64)
    src_k, src_p, dst_k, dst_p = keys, pos, keys2, pos2
    moved = False
    for shift in range(0, 64, 16):
        count[:] = 0
        for i in range(m):
            count[(src_k[i] >> np.uint64(shift)) & np.uint64(0xFFFF)] += 1
        if m == 0 or count[(src_k[0] >> np.uint64(shift)) & np.uint64(0xFFFF)] == m:
            continue
        total = 0
        for d in range(1 << 16):
            c = count[d]
            count[d] = total
            total += c
        for i in range(m):
            d = (src_k[i] >> np.uint64(shift)) & np.uint64(0xFFFF)
            j = count[d]
            count[d] = j + 1
            dst_k[j] = src_k[i]
            dst_p[j] = src_p[i]
        src_k, src_p, dst_k, dst_p = dst_k, dst_p, src_k, src_p
        moved = not moved
    if moved:
        keys[:] = keys2
        pos[:] = pos2


@jit
def resolve(tokens, sample, pos, keys, max_deep, tmp):
    """Sort every run of equal ``keys`` (pos sorted by them) by full suffix:
    ROUNDS rounds of the next 8 bytes, then comparisons (``tmp``: scratch as
    long as pos). False, with pos partly sorted, once more than ``max_deep``
    suffixes reach the comparisons."""
    kt = _key_width(tokens)
    n = pos.shape[0]
    stack = [(np.int64(0), np.int64(n), np.int64(kt), np.int64(1))]
    deep = 0
    while len(stack):
        lo, hi, depth, round_ = stack.pop()
        i = lo
        while i < hi:
            j = i + 1
            while j < hi and keys[j] == keys[i]:
                j += 1
            if j - i > 1:
                if round_ < ROUNDS:  # one key load a suffix, then sorts in cache
                    prefix_keys(tokens, pos[i:j], depth, keys[i:j])
                    _sort_pairs(keys[i:j], pos[i:j])
                    stack.append((i, j, depth + kt, round_ + 1))
                elif j - i <= SMALL:
                    _insertion(tokens, sample, pos, i, j, depth)
                else:
                    deep += j - i
                    if deep > max_deep:
                        return False
                    _merge_sort(tokens, sample, pos, i, j, depth, tmp)
            i = j
    return True


@jit
def _sort_pairs(keys, pos):
    """Sort ``keys`` and ``pos`` alike: by insertion when short, else through
    an argsort."""
    m = keys.shape[0]
    if m <= SMALL:
        for i in range(1, m):
            k, p = keys[i], pos[i]
            j = i
            while j > 0 and keys[j - 1] > k:
                keys[j], pos[j] = keys[j - 1], pos[j - 1]
                j -= 1
            keys[j], pos[j] = k, p
        return
    order = np.argsort(keys)
    pos[:] = pos[order]
    keys[:] = keys[order]


@jit
def write(pos, width, pointer, out):
    for j in range(pos.shape[0]):
        put_pointer(out, j, pointer, np.int64(pos[j]) * width)


@jit
def sort_range(tokens, sample, ranges, r, width, pointer, out, pos, keys, pos2, keys2,
               max_deep):
    """Sort range ``r`` (the suffixes i with ranges[i] == r) into ``out`` as
    packed pointers, through scratch at least as long as the range (``pos``,
    ``pos2``: uint32 or int64, ``keys``, ``keys2``: uint64); False when more
    than ``max_deep`` of its suffixes tie after ROUNDS rounds (then ``out``
    is not to be trusted)."""
    m = gather(ranges, r, pos)
    p, k = pos[:m], keys[:m]
    prefix_keys(tokens, p, 0, k)
    radix_sort(k, p, keys2[:m], pos2[:m])
    if not resolve(tokens, sample, p, k, int(max_deep * m), pos2):
        return False
    write(p, width, pointer, out)
    return True


def classify_all(tokens, sample, threads: int = 1, report=None) -> np.ndarray:
    """The range of every suffix of ``tokens`` (uint8; ranges ascend with the
    suffix order), cut at splitters of ``sample`` (:func:`native.cover.rank_sample`'s),
    RANGES_PER_THREAD a thread (at least MIN_RANGES, at most 256), on
    ``threads`` threads; ``report(suffixes classified)`` comes from this thread."""
    n = tokens.shape[0]
    spl = splitters(sample, min(256, max(MIN_RANGES, RANGES_PER_THREAD * threads)))
    which = np.empty(n, np.uint8)

    def classifying(lo):
        def job(tick):
            hi = min(lo + CLASSIFY_CHUNK, n)
            classify(tokens, sample, spl, lo, hi, which[lo:hi])
            tick(hi - lo)
        return job
    pool.run([classifying(lo) for lo in range(0, n, CLASSIFY_CHUNK)], threads, report)
    return which


def sort_ranges(tokens, sample, which, pointer: int, emit, threads: int = 1, report=None,
                width: int | None = None, align: int = 1) -> bool:
    """Sort the suffixes of each range of ``which`` (:func:`classify_all`'s) on
    ``threads`` threads and hand over its slice of the table: packed pointers
    (entry i = byte offset in ``pointer`` little-endian bytes, ``width`` bytes
    a token: default the tokens' own; 4 for :func:`native.keys.narrowed`
    ones), as ``emit(first entry, bytes)`` from the thread that sorted it. The
    bytes, a uint8 view of that thread's scratch valid until ``emit``
    returns, start at an address congruent to their table offset modulo
    ``align``. ``report(suffixes sorted)`` comes from this thread. False,
    with some ranges never emitted, when a range's suffixes tie too deep
    (long repeats)."""
    n = tokens.shape[0]
    width = width or tokens.dtype.itemsize
    counts = tally(which, 256)  # np.bincount would copy it to intp
    starts = np.concatenate([[0], np.cumsum(counts)])
    longest = int(counts.max()) if n else 0
    dtype = np.uint32 if n < 1 << 32 else np.int64
    scratch = threading.local()
    failed = threading.Event()

    def sorting(r):
        def job(tick):
            if failed.is_set():
                return False
            if not hasattr(scratch, "buffers"):
                scratch.buffers = (np.empty(longest, dtype), np.empty(longest, np.uint64),
                                   np.empty(longest, dtype), np.empty(longest, np.uint64))
                scratch.packed = aligned(longest * pointer + align, align)
            lead = int(starts[r]) * pointer % align
            out = scratch.packed[lead:lead + int(counts[r]) * pointer]
            if not sort_range(tokens, sample, which, r, width, pointer, out,
                              *scratch.buffers, MAX_DEEP):
                failed.set()
                return False
            emit(int(starts[r]), out)
            tick(counts[r])
            return True
        return job
    return all(pool.run([sorting(r) for r in np.flatnonzero(counts)], threads, report))
