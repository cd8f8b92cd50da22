"""One shard's answers: :class:`ShardSearcher`, the unit a distributed
worker runs (ranges, counts, next-token tallies and per-position scores of
that shard alone; its document queries come from
:class:`~infinigram.documents.ShardDocuments`)."""
from __future__ import annotations

import atexit
import queue
import threading
from array import array
import numpy as np

from . import format as fmt
from .dedup import ShardDedup
from .documents import ShardDocuments
from .native import batch, direct, infgram, matching, search as ks, smoothing, tally
from .native.search import Shard

_EMPTY = np.zeros(0, dtype=np.int64)
SCRATCH_MAX = 64 << 20
"""Largest scratch (bytes) a searcher keeps per thread for next-token tallies."""
SAMPLE_CHUNK = 1 << 16
"""Sample keys built per kernel call (about 10 ms of a background thread)."""


class ShardSearcher(ShardDocuments, ShardDedup):
    """Answers of one shard: suffix-array ranges, counts, continuation
    totals, next-token tallies, per-position scores and documents.
    Token ids in, numbers out; no validation and no combining."""

    def __init__(self, shard: fmt.Shard):
        self.shard = shard
        self.n = shard.n_tokens
        self._tokens = np.asarray(shard.tokens)
        self._table = np.asarray(shard.table)
        if shard.pointer == 4:  # the kernels read 4-byte entries as uint32: one load each
            self._table = self._table.view(np.uint32)
        self._pointer = shard.pointer
        self.step = _sample_step(self.n)
        """Stride of the key sample; may be changed before it is built
        (next-token tallies read it at powers of 2 only)."""
        self.bucket_min = 1 << (8 * self._tokens.itemsize)
        """Fewest tokens for which the sample comes with a bucket table: none
        larger than the shard (2^16 entries at width 2), where bisecting the
        whole table is as quick (1,000 small shards would hold 512 MiB)."""
        self._plain = Shard(self._tokens, self._table, self._pointer, _EMPTY, _EMPTY, 1 << 40)
        """The shard as the kernels take it, unsampled: ``bucket`` (widths 1
        and 2, shards of at least ``bucket_min`` tokens) and ``sample`` (see
        ``native.search.sample_keys``) empty."""
        self._search: Shard | None = None
        self._lock = threading.Lock()
        self._queued = False
        self._unigram = None
        self._direct = {}
        self._scratch = threading.local()

    def search_args(self) -> Shard:
        """The shard for one search: with its key sample and bucket table
        once they are built, else without (every search then bisects the
        whole table). The first call queues their building on a background
        thread, so that no query waits for it."""
        s = self._search
        if s is None:
            if not self._queued:
                self._queued = True
                _BACKGROUND.put(self)
            return self._plain
        return s

    def sampled_args(self) -> Shard:
        """The shard with its sample, built now on all cores if need be (or
        awaited, if the background thread is building it): batches and
        tallies use it a lot."""
        if self._search is None:
            self.prepare(parallel=True)
        return self._search

    def prepare(self, parallel: bool = True, stop: threading.Event | None = None) -> None:
        """Build the key sample (about n / step random reads) and from it
        the bucket table (a few reads per distinct first token), unless
        built; with ``stop`` set, give up between chunks of the sample."""
        with self._lock:
            if self._search is not None:
                return
            step = self.step
            sample = np.empty(ks.sample_size(self.n, step), dtype=np.int64)  # numpy: huge pages
            s = self._plain._replace(sample=sample, step=step)
            ns = -(-self.n // step)
            for j0 in range(0, ns, SAMPLE_CHUNK):
                if stop is not None and stop.is_set():
                    return
                ks.sample_keys[parallel](s, sample, j0, min(ns, j0 + SAMPLE_CHUNK))
            ks.index_sample(sample, ns)
            if self.n >= self.bucket_min:
                s = s._replace(bucket=ks.buckets[parallel](s))
            self._search = s

    def _call(self, kernel, *args):
        """``kernel(*args)`` through its code compiled for these argument
        types (``native.direct``, no per-call type dispatch): every caller
        passes the same types, query ids as C-contiguous int64 arrays."""
        fn = self._direct.get(kernel)
        if fn is None:
            fn = self._direct[kernel] = direct(kernel, *args)
        return fn(*args)

    def _search_call(self, kernel, ids, *args):
        """``kernel(shard, ids, *args)`` through its compiled code (as
        ``_call``), kept per type of ``ids``: an int64 array, or the
        ``array('q')`` of a list."""
        key, shard = (kernel, type(ids)), self._search or self.search_args()
        fn = self._direct.get(key)
        if fn is None:
            fn = self._direct[key] = direct(kernel, shard, ids, *args)
        return fn(shard, ids, *args)

    def range(self, ids: np.ndarray) -> tuple[int, int]:
        """[start, end) of the suffix-array entries starting with ``ids``."""
        lo, hi = self._search_call(ks.find_range, ids)
        return int(lo), int(hi)

    def count(self, ids: np.ndarray | array, low: int, vocab: int) -> int:
        """Occurrences of ``ids``; -1 when some id is outside [low, vocab)."""
        return self._search_call(ks.count, ids, low, vocab)

    def count_many(self, flat: np.ndarray, bounds: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Count of each query ``flat[bounds[j]:bounds[j+1]]``, visited in
        ``order`` (a permutation; ``native.search.visit_order`` is fastest)."""
        return batch.count_many(self.sampled_args(), flat, bounds, order)

    def continuation(self, m: int, lo: int, hi: int, next_id: int) -> tuple[int, int]:
        """(total, count) in the range [lo, hi) of an m-token prompt:
        occurrences followed by a real token, and by ``next_id``."""
        total, count = self._call(tally.continuation, self._plain, m, lo, hi, next_id)
        return int(total), int(count)

    def next_tokens(self, m: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact (ids, counts) of the tokens following the m-token prompt
        whose range is [lo, hi); cached for the empty prompt. Scratch memory
        is kept per thread (up to ``SCRATCH_MAX`` bytes) and reused."""
        if m == 0 and self._unigram is not None:
            return self._unigram
        work = getattr(self._scratch, "work", _EMPTY)
        ids, counts, wanted = self._call(tally.next_tokens, self.sampled_args(), m, lo, hi, work)
        if work.shape[0] < wanted <= SCRATCH_MAX // 8:
            self._scratch.work = np.empty(wanted, dtype=np.int64)
        if m == 0:
            for a in (ids, counts):
                a.setflags(write=False)
            self._unigram = ids, counts
        return ids, counts

    def longest_usable(self, ids: np.ndarray) -> tuple[int, int, int]:
        """(L, lo, hi): longest suffix of ``ids`` followed by a real token
        somewhere in this shard, and its range; L = -1 if the shard has none."""
        L, lo, hi = self._search_call(infgram.longest_usable, ids)
        return int(L), int(lo), int(hi)

    def infgram_counts(self, ids: np.ndarray | array, next_id: int, low: int,
                       vocab: int) -> tuple[int, int, int]:
        """(L, total, count): ``longest_usable`` length and the continuation
        counts of ``next_id`` there; L = -2 when some id is outside [low, vocab)."""
        return self._search_call(infgram.infgram_counts, ids, next_id, low, vocab)

    def score(self, ids: np.ndarray, max_context: int):
        """Per position: (L, total, count, first, last); see native.search.score."""
        return infgram.score(self.sampled_args(), ids, max_context)

    def matching_lengths(self, ids: np.ndarray) -> np.ndarray:
        """Per start i: length of the longest prefix of ids[i:] in this shard."""
        return matching.matching_lengths(self.sampled_args(), ids)

    def locate(self, lo: int, hi: int, *index) -> tuple[np.ndarray, np.ndarray]:
        """(local document, token offset) of the suffixes of entries [lo, hi),
        in table order, through the document ``index`` of ``native.matching.locate``."""
        return self._call(matching.locate, self._plain, lo, hi, *index)

    def first_docs(self, lo: int, hi: int, limit: int, *index) -> tuple[int, np.ndarray, np.ndarray]:
        """(distinct local documents holding a suffix of entries [lo, hi),
        the first ``limit`` of them, the smallest token offset in each), in
        memory that does not grow with hi - lo (``native.matching.first_docs``)."""
        limit = min(limit, len(index[0]))  # no more than the documents (and within int64)
        n_docs, docs, offsets = self._call(matching.first_docs, self._plain, lo, hi, *index, limit)
        return int(n_docs), docs, offsets

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Sorted token indexes of every occurrence of ``ids``."""
        lo, hi = self.range(ids)
        return np.sort(ks.positions(self._plain, lo, hi))

    def rank_position(self, rank: int) -> int:
        """Token index where the suffix of entry ``rank`` starts."""
        return int(ks.positions(self._plain, rank, rank + 1)[0])

    def kgram_counts(self, n: int, collect: bool):
        """Count-of-counts of this shard's k-grams, k = 1..n (see
        ``native.smoothing.kgram_counts``)."""
        return smoothing.kgram_counts(self._plain, n, collect)

    # ---- whole per-shard answers: what an engine fans out to every shard --
    def prompt_range(self, ids: np.ndarray) -> tuple[int, int]:
        """``range(ids)``, or every entry for the empty prompt."""
        return self.range(ids) if len(ids) else (0, self.n)

    def prob_counts(self, ids: np.ndarray, next_id: int) -> tuple[int, int]:
        """``continuation`` of the prompt ``ids``: (total, count of next_id)."""
        return self.continuation(len(ids), *self.prompt_range(ids), next_id)

    def prompt_next_tokens(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``next_tokens`` of the prompt ``ids`` (empty: every real token)."""
        return self.next_tokens(len(ids), *self.prompt_range(ids))


def _sample_step(n: int) -> int:
    """Sample stride of a shard of n tokens: 16, doubled until the sample
    has at most 2^20 keys (8 MiB)."""
    step = 16
    while n > step << 20:
        step *= 2
    return step


class _Background:
    """One daemon thread that builds the samples of the shards queued to it,
    in turn, on its own core; stopped (between chunks) at exit."""

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def put(self, searcher: ShardSearcher) -> None:
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="infinigram-sample",
                                                daemon=True)
                self._thread.start()
                atexit.register(self._close)
        self._queue.put(searcher)

    def _run(self) -> None:
        while (searcher := self._queue.get()) is not None:
            searcher.prepare(parallel=False, stop=self._stop)

    def _close(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=5)


_BACKGROUND = _Background()
