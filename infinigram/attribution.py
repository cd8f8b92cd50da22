"""Which parts of a text occur verbatim in the corpus: ``creativity`` (the
longest match at every start), ``attribute`` (the maximal matching spans,
with their counts and documents) and ``overlap`` (the share of a test
set's n-grams found, as contamination reports give it).

:class:`AttributionQueries` validates them and combines the shards'
answers for :class:`~infinigram.engine.Engine`, through its ``_fan``.
"""
from __future__ import annotations

import numpy as np

from . import args
from .errors import QueryError
from .results import Attribution, AttributionSpan, Overlap

OVERLAP_BATCH = 1 << 16
"""n-grams counted per ``count_many`` call (13 int64 ids each: 6.5 MiB;
2^14 to 2^20 measured on zipf-15M, this one fastest)."""


class AttributionQueries:
    """The attribution queries of an engine. Needs ``_ids``, ``_fan``,
    ``_doc_base``, ``_vocab``, ``separator``, ``tokenizer`` and ``count_many``."""

    def creativity(self, q) -> np.ndarray:
        """int64 array, one entry per token of ``q``: entry i is the length
        of the longest prefix of q[i:] that occurs in the corpus (0 when
        q[i] does not occur). infini-gram's ``creativity`` returns
        ``rs[i] = i + creativity[i]`` (see the README for where it differs)."""
        return self._matching(self._ids(q))

    def _matching(self, ids: np.ndarray) -> np.ndarray:
        """``creativity`` of validated ids: the longest match over all shards."""
        parts = self._fan("matching_lengths", ids)
        return np.max(parts, axis=0) if parts else np.zeros(len(ids), dtype=np.int64)

    def attribute(self, q, min_len: int = 1, max_count: int | None = None,
                  delimiters=(), whole_words: bool = False, docs: int = 10) -> Attribution:
        """The maximal spans of ``q`` that occur verbatim in the corpus.

        The span at start i is the longest match there (``creativity``),
        cut after the first of ``delimiters`` (token ids) that it holds
        before its last token; with ``whole_words`` (a sentencepiece
        index), only spans that start at a word's first token (a piece
        beginning with '▁'), shortened until the next token begins a word
        or the text ends. A span contained in an earlier one is dropped;
        the rest are kept when at least ``min_len`` tokens long and
        occurring at most ``max_count`` times (None: no bound). Each comes
        with its count and the documents (global index, token offset) of
        its first ``docs`` occurrences in suffix-array order, shard by
        shard. infini-gram's ``attribute(ids, delim_ids, min_len, max_cnt,
        enforce_bow)`` finds the same spans (see the README for where it
        differs)."""
        ids = self._ids(q)
        min_len = args.integer("min_len", min_len, low=1)
        if not isinstance(whole_words, bool):
            raise QueryError(f"whole_words={whole_words!r:.40} must be True or False")
        max_count = args.optional_integer("max_count", max_count, low=1)
        limit = args.integer("docs", docs)
        delims = args.ids(delimiters, self._vocab, separator=self.separator, what="delimiters")
        n = len(ids)
        starts = np.arange(n, dtype=np.int64)
        ends = starts + self._matching(ids)
        if len(delims):
            at = np.flatnonzero(np.isin(ids, delims))
            after = np.append(at, n)[np.searchsorted(at, starts)]  # first delimiter at or after i
            ends = np.minimum(ends, after + 1)
        long_enough = np.ones(n, dtype=bool)
        if whole_words:
            word = self._word_starts()[ids]
            can_end = np.where(np.append(word, True), np.arange(n + 1), -1)
            ends = np.maximum.accumulate(can_end)[ends]  # the last word start (or end) <= end
            long_enough = word
        long_enough &= ends - starts >= min_len
        starts, ends = starts[long_enough], ends[long_enough]
        before = np.maximum.accumulate(np.concatenate([[0], ends]))[:-1]
        fresh = ends > before  # not contained in an earlier span
        starts, ends = starts[fresh], ends[fresh]
        counts = np.zeros(len(starts), dtype=np.int64)
        doc_parts: list[list[np.ndarray]] = [[] for _ in starts]
        offset_parts: list[list[np.ndarray]] = [[] for _ in starts]
        for (c, local, off), base in zip(self._fan("span_hits", ids, starts, ends, limit),
                                         self._doc_base):
            counts += c
            for j in range(len(starts)):
                doc_parts[j].append(local[j] + base)
                offset_parts[j].append(off[j])
        keep = counts <= (max_count if max_count is not None else args.INT64_MAX)
        spans = tuple(AttributionSpan(int(starts[j]), int(ends[j]), int(counts[j]),
                                      _first(doc_parts[j], limit),
                                      _first(offset_parts[j], limit))
                      for j in np.flatnonzero(keep))
        return Attribution(ids, spans)

    def _word_starts(self) -> np.ndarray:
        """``Tokenizer.word_starts`` of the index's sentencepiece tokenizer."""
        tok = self.tokenizer
        if tok is None or tok.kind != "sentencepiece":
            raise QueryError(
                f"whole_words=True needs a sentencepiece tokenizer (its pieces mark word "
                f"starts with '▁'); this index's is {tok.kind if tok else 'none'!r}: "
                "pass whole_words=False")
        if getattr(self, "_words", None) is None:
            self._words = tok.word_starts()
        return self._words

    def overlap(self, docs, n: int = 13) -> Overlap:
        """For each test document of ``docs`` (queries: text or token ids;
        an empty one has no n-grams): how many of its ``n``-grams (one per
        start, repeats included) occur in the corpus, counted in batches of
        ``count_many`` over 2-D arrays of n-grams."""
        n = args.integer("n", n, low=1)
        seqs = [self._ids(d, empty_ok=True) for d in docs]
        sizes = np.array([max(0, len(s) - n + 1) for s in seqs], dtype=np.int64)
        hit = np.zeros(int(sizes.sum()), dtype=bool)
        at = 0
        for rows in _batches((np.lib.stride_tricks.sliding_window_view(s, n)
                              for s in seqs if len(s) >= n), OVERLAP_BATCH):
            hit[at:at + len(rows)] = self.count_many(rows) > 0
            at += len(rows)
        ends = np.concatenate([[0], np.cumsum(hit, dtype=np.int64)])[np.cumsum(sizes)]
        return Overlap(n, sizes, np.diff(ends, prepend=0))


def _first(parts: list[np.ndarray], limit: int) -> np.ndarray:
    """The first ``limit`` entries of the concatenated ``parts`` (int64)."""
    out = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return out[:limit].astype(np.int64, copy=False)


def _batches(arrays, rows: int):
    """The rows of the 2-D ``arrays``, in order, as C-contiguous arrays of
    about ``rows`` rows (more when one array alone holds more)."""
    pending, size = [], 0
    for a in arrays:
        pending.append(a)
        size += len(a)
        if size >= rows:
            yield np.concatenate(pending)
            pending, size = [], 0
    if pending:
        yield np.concatenate(pending)
