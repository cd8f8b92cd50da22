"""Document queries, apart from counting: which documents hold an n-gram
(``search_docs``), one document's tokens, text and metadata (``get_doc``)
and CNF queries over match positions (``count_cnf``).

:class:`ShardDocuments` answers them in one shard (a
:class:`~infinigram.shard.ShardSearcher` is one); :class:`DocumentQueries`
validates them and combines the shards' answers for
:class:`~infinigram.engine.Engine`, through its ``_fan`` / ``_on``.
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np

from . import args, corpus, format as fmt
from .errors import IndexFormatError, QueryError
from .results import Document, DocHit, SearchResult

DOC_SHIFT = 10
"""Tokens per block (log2) of the table that starts a document lookup."""


class ShardDocuments:
    """The document answers of one shard. Needs ``shard``, ``n``,
    ``range(ids)`` (its suffix-array range), ``locate`` (the kernel
    ``native.matching.locate`` on the shard) and ``positions(ids)`` (sorted
    token indexes of every occurrence)."""

    @cached_property
    def doc_starts(self) -> np.ndarray:
        """Token index of each document's separator (int64, ascending)."""
        return np.asarray(self.shard.offsets, dtype=np.int64) // self.shard.width

    def doc_starts_of(self, docs: np.ndarray) -> np.ndarray:
        """Token index of the separator of each local document in ``docs``."""
        return self.doc_starts[docs]

    def doc_of(self, pos: np.ndarray) -> np.ndarray:
        """Local document index of each token index."""
        return np.searchsorted(self.doc_starts, pos, side="right") - 1

    def doc_hits(self, ids: np.ndarray, limit: int) -> tuple[int, int, np.ndarray, np.ndarray]:
        """(occurrences, documents holding ``ids``, the first ``limit`` of
        those documents (local numbers, ascending), the token offset of the
        first match in each)."""
        pos = self.positions(ids)
        docs, first = np.unique(self.doc_of(pos), return_index=True)
        take = docs[:limit]
        return len(pos), len(docs), take, pos[first[:limit]] - self.doc_starts[take] - 1

    @cached_property
    def _doc_index(self) -> np.ndarray:
        """The document holding token index b << DOC_SHIFT, for every b."""
        blocks = np.arange(0, self.n + 1, 1 << DOC_SHIFT, dtype=np.int64)
        return np.maximum(self.doc_of(blocks), 0)

    def span_hits(self, ids: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                  limit: int) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """For the spans ids[starts[j]:ends[j]]: their occurrences here, and
        the local documents and token offsets in them of the first ``limit``
        suffix-array entries of each, in table order."""
        counts = np.zeros(len(starts), dtype=np.int64)
        docs, offsets = [], []
        for j, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
            lo, hi = self.range(ids[a:b])
            d, o = self.locate(lo, min(hi, lo + limit), self.doc_starts, self._doc_index,
                               DOC_SHIFT)
            counts[j] = hi - lo
            docs.append(d)
            offsets.append(o)
        return counts, docs, offsets

    def cnf_count(self, clauses: list, window: int) -> int:
        """``Engine.count_cnf`` over this shard (clauses of int64 id arrays)."""
        return len(self.cnf_positions(clauses, window))

    def cnf_positions(self, clauses: list, window: int) -> np.ndarray:
        """Token indexes (ascending) of the matches ``cnf_count`` counts."""
        pos = [np.unique(np.concatenate([self.positions(q) for q in c])) for c in clauses]
        p = pos[0]
        doc = self.doc_of(p)
        begin = self.doc_starts[doc] + 1
        end = np.append(self.doc_starts[1:], self.n)[doc]
        window = min(window, self.n)  # a wider window changes nothing and could overflow
        lo = np.maximum(p - window, begin)
        hi = np.minimum(p + window, end - 1)
        keep = np.ones(len(p), dtype=bool)
        for other in pos[1:]:
            keep &= np.searchsorted(other, hi, "right") > np.searchsorted(other, lo, "left")
        return p[keep]

    def doc_length(self, d: int) -> int:
        """Tokens in local document ``d`` (its separator excluded)."""
        starts = self.doc_starts
        end = int(starts[d + 1]) if d + 1 < len(starts) else self.n
        return end - int(starts[d]) - 1

    def document(self, d: int, begin: int, end: int) -> tuple[np.ndarray, bytes | None]:
        """Tokens [begin, end) of local document ``d`` (int64) and its
        metadata line (None when the shard has none)."""
        start = int(self.doc_starts[d]) + 1
        tokens = np.array(self.shard.tokens[start + begin:start + end], dtype=np.int64)
        shard = self.shard
        if shard.metadata is None:
            return tokens, None
        mo = shard.metaoff
        stop = int(mo[d + 1]) if d + 1 < len(mo) else len(shard.metadata)
        return tokens, bytes(shard.metadata[int(mo[d]):stop])


class DocumentQueries:
    """The document queries of an engine. Needs ``_ids``, ``_fan``, ``_on``,
    ``_doc_base`` (first global document number of each shard), ``n_docs``,
    ``tokenizer``, ``decode``, ``shard_dirs`` and ``_shards``."""

    def search_docs(self, q, limit: int = 10) -> SearchResult:
        """Documents containing the n-gram ``q``, in ascending global document
        order, at most ``limit`` of them, each with the token offset of its
        first match; ``n_docs`` counts all distinct documents."""
        ids = self._ids(q)
        limit = args.integer("limit", limit)
        count = n_docs = 0
        hits: list[DocHit] = []
        for (c, n, docs, offsets), base in zip(self._fan("doc_hits", ids, int(limit)), self._doc_base):
            count += c
            n_docs += n
            take = max(0, limit - len(hits))
            hits += (DocHit(int(base + d), int(o)) for d, o in zip(docs[:take], offsets[:take]))
        return SearchResult(count, n_docs, tuple(hits))

    def _doc_shard(self, doc_ix) -> tuple[int, int]:
        """(shard, local document number) of global document ``doc_ix``."""
        doc_ix = args.integer("doc_ix", doc_ix, high=self.n_docs - 1)
        k = int(np.searchsorted(self._doc_base, doc_ix, side="right") - 1)
        return k, doc_ix - int(self._doc_base[k])

    def get_doc(self, doc_ix: int, window: int | None = None, around: int | None = None) -> Document:
        """Document ``doc_ix`` (global index): tokens, text (None for an
        ids-only index), its own metadata fields and its source file and
        line (see :class:`Document`). With
        ``around=position`` and ``window=w``: only tokens [position-w, position+w)."""
        k, d = self._doc_shard(doc_ix)
        begin, end = 0, self._on(k, "doc_length", d)
        if (window is None) != (around is None):
            raise QueryError(f"get_doc got window={window!r:.40}, around={around!r:.40}; pass "
                             "both or neither")
        if window is not None:
            window = args.integer("window", window)
            around = args.integer("around", around)
            if around > end - begin:
                raise QueryError(
                    f"around={around} is past the end of document {doc_ix} ({end - begin} tokens)")
            begin, end = max(0, around - window), min(end, around + window)
        tokens, line = self._on(k, "document", d, begin, end)
        text = self.decode(tokens) if self.tokenizer is not None else None
        meta = source = None
        if line is not None:
            where = fmt.shard_path(self.shard_dirs[k], "metadata", self._shards[k].index)
            meta, source = corpus.split_metadata(_metadata(line, where, d))
        return Document(int(doc_ix), tokens, text, meta, source)

    def doc_length(self, doc_ix: int) -> int:
        """Tokens in document ``doc_ix`` (global index), its separator excluded."""
        k, d = self._doc_shard(doc_ix)
        return self._on(k, "doc_length", d)

    def locate(self, shard: int, positions) -> tuple[np.ndarray, np.ndarray]:
        """(global documents, token offsets inside them) of token indexes
        ``positions`` of shard ``shard`` (from ``rank_position`` or
        ``find_cnf``); a separator's position is a QueryError."""
        shard = args.integer("shard", shard, high=len(self._shards) - 1)
        n = self._shards[shard].n_tokens
        pos = args.ids(positions, n, what="position")
        docs = self._on(shard, "doc_of", pos)
        offsets = pos - self._on(shard, "doc_starts_of", docs) - 1
        if (offsets < 0).any():
            bad = int(pos[np.argmax(offsets < 0)])
            raise QueryError(f"position {bad} of shard {shard} is a document separator; "
                             "pass the position of a real token")
        return docs + int(self._doc_base[shard]), offsets

    def rank_position(self, shard: int, rank: int) -> int:
        """Token index where suffix-array entry ``rank`` of shard ``shard`` starts."""
        shard = args.integer("shard", shard, high=len(self._shards) - 1)
        rank = args.integer("rank", rank, high=self._shards[shard].n_tokens - 1)
        return self._on(shard, "rank_position", rank)

    def find_cnf(self, cnf, window: int = 100) -> tuple[np.ndarray, ...]:
        """Per shard, the token indexes (ascending) of the matches that
        ``count_cnf`` counts."""
        return tuple(self._fan("cnf_positions", *self._cnf_args(cnf, window)))

    def count_cnf(self, cnf, window: int = 100) -> int:
        """Occurrences matching a CNF query (AND of ORs of n-grams).

        ``cnf`` is a list of clauses, each a list of n-gram queries. The
        result counts the distinct start positions p of any n-gram of the
        FIRST clause such that every other clause has an n-gram occurring
        at a start position q in the same document with |q - p| <= window.
        """
        return sum(self._fan("cnf_count", *self._cnf_args(cnf, window)))

    def _cnf_args(self, cnf, window) -> tuple[list, int]:
        """Validated (clauses of id arrays, window) of a CNF query."""
        if not isinstance(cnf, (list, tuple)) or not cnf or not all(
                isinstance(c, (list, tuple)) and c for c in cnf):
            raise QueryError(
                f"cnf {cnf!r:.80} must be a non-empty list of non-empty lists of n-gram queries")
        window = args.integer("window", window)
        return [[self._ids(q) for q in clause] for clause in cnf], window


def _metadata(line: bytes, where: Path, d: int) -> dict:
    """The parsed metadata line of local document ``d`` of the file
    ``where``; a damaged line is an IndexFormatError naming the file and the fix."""
    try:
        meta = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        meta = e
    if not isinstance(meta, dict):
        raise IndexFormatError(
            f"{where}: the line of document {d} is not a JSON object "
            f"({fmt.shorten(meta, 80)}): the file is damaged; rebuild the index "
            f"(`infinigram verify {where.parent}` lists every damaged file)")
    return meta
