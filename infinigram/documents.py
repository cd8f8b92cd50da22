"""Document queries, apart from counting: which documents hold an n-gram
(``search_docs``), one document's tokens, text and metadata (``get_doc``)
and CNF queries over match positions (``count_cnf``).

:class:`ShardDocuments` answers them in one shard (a
:class:`~infinigram.shard.ShardSearcher` is one); :class:`DocumentQueries`
validates them and combines the shards' answers for
:class:`~infinigram.engine.Engine`, through its ``_fan`` / ``_on``.
"""
from __future__ import annotations

import dataclasses
import json
from functools import cached_property
from pathlib import Path

import numpy as np

from . import args, corpus, format as fmt
from .errors import IndexFormatError, QueryError
from .results import CnfMatches, Document, DocHit, SearchResult

INT64_MAX_HALF = 1 << 62
"""Bound of positions and windows: sums of two stay inside int64."""

DOC_SHIFT = 10
"""Tokens per block (log2) of the table that starts a document lookup."""


def parse_cnf(text: str) -> list[list[str]]:
    """The CNF of a query text: ' AND ' separates clauses, ' OR ' the
    n-grams of a clause (OR binds tighter, as in infini-gram's web UI):
    'a AND b OR c' is [['a'], ['b', 'c']]; text without either is [[text]]."""
    return [clause.split(" OR ") for clause in text.split(" AND ")]


class ShardDocuments:
    """The document answers of one shard. Needs ``shard``, ``n``,
    ``range(ids)`` (its suffix-array range), ``locate`` and ``first_docs``
    (the kernels of ``native.matching`` on the shard) and ``positions(ids)`` (sorted
    token indexes of every occurrence)."""

    @cached_property
    def doc_starts(self) -> np.ndarray:
        """Token index of each document's separator (int64, ascending)."""
        return np.asarray(self.shard.offsets, dtype=np.int64) // self.shard.width

    @cached_property
    def doc_ends(self) -> np.ndarray:
        """Token index just past each document (the next separator, or n)."""
        return np.append(self.doc_starts[1:], self.n)

    def doc_starts_of(self, docs: np.ndarray) -> np.ndarray:
        """Token index of the separator of each local document in ``docs``."""
        return self.doc_starts[docs]

    def doc_of(self, pos: np.ndarray) -> np.ndarray:
        """Local document index of each token index."""
        return np.searchsorted(self.doc_starts, pos, side="right") - 1

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

    def _clause(self, clause: list) -> tuple[np.ndarray, np.ndarray]:
        """(distinct token indexes, ascending, where an n-gram of ``clause``
        starts; the length of the longest one starting at each)."""
        found = [self.positions(q) for q in clause]
        if len(found) == 1:
            return found[0], np.full(len(found[0]), len(clause[0]), dtype=np.int64)
        pos = np.concatenate(found)
        lengths = np.repeat(np.array([len(q) for q in clause], dtype=np.int64),
                            [len(f) for f in found])
        order = np.lexsort((-lengths, pos))
        pos, lengths = pos[order], lengths[order]
        first = np.ones(len(pos), dtype=bool)
        first[1:] = pos[1:] != pos[:-1]
        return pos[first], lengths[first]

    def cnf_matches(self, clauses: list, window: int) -> tuple[np.ndarray, np.ndarray]:
        """(token indexes, ascending, of the CNF's matches: the starts p of a
        first-clause n-gram such that every other clause has an n-gram
        starting in the same document within ``window`` tokens of p; the
        length of the longest first-clause n-gram at each)."""
        p, lengths = self._clause(clauses[0])
        if len(clauses) == 1:
            return p, lengths
        doc = self.doc_of(p)
        begin = self.doc_starts[doc] + 1
        end = self.doc_ends[doc]
        window = min(window, self.n)  # a wider window changes nothing and could overflow
        lo = np.maximum(p - window, begin)
        hi = np.minimum(p + window, end - 1)
        keep = np.ones(len(p), dtype=bool)
        for clause in clauses[1:]:
            other = self._clause(clause)[0]
            keep &= np.searchsorted(other, hi, "right") > np.searchsorted(other, lo, "left")
        return p[keep], lengths[keep]

    def cnf_count(self, clauses: list, window: int) -> int:
        """``Engine.count_cnf`` over this shard (clauses of int64 id arrays)."""
        return len(self.cnf_matches(clauses, window)[0])

    def cnf_found(self, clauses: list, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(token indexes, local documents, token offsets in them) of the
        matches ``cnf_count`` counts, ascending."""
        pos = self.cnf_matches(clauses, window)[0]
        docs = self.doc_of(pos)
        return pos, docs, pos - self.doc_starts[docs] - 1

    def cnf_doc_hits(self, clauses: list, window: int, limit: int) -> tuple:
        """(matches, documents holding one, the first ``limit`` of those
        documents (local numbers, ascending), the token offset of the first
        match in each and the length of its longest first-clause n-gram)."""
        if len(clauses) == 1 and len(clauses[0]) == 1:  # one n-gram: no list of matches
            lo, hi = self.range(clauses[0][0])
            n_docs, docs, offsets = self.first_docs(lo, hi, limit, self.doc_starts,
                                                    self._doc_index, DOC_SHIFT)
            return hi - lo, n_docs, docs, offsets, np.full(len(docs), len(clauses[0][0]))
        pos, lengths = self.cnf_matches(clauses, window)
        doc = self.doc_of(pos)  # ascending, as pos is: no sort needed
        first = np.flatnonzero(np.diff(doc, prepend=-1))  # each document's first match
        take = first[:limit]
        docs = doc[take]
        return len(pos), len(first), docs, pos[take] - self.doc_starts[docs] - 1, lengths[take]

    def doc_lengths(self, docs: np.ndarray) -> np.ndarray:
        """Tokens in each local document of ``docs`` (separators excluded)."""
        return self.doc_ends[docs] - self.doc_starts[docs] - 1

    def documents(self, docs: np.ndarray, begins: np.ndarray,
                  ends: np.ndarray) -> list[tuple[np.ndarray, bytes | None]]:
        """Per local document ``docs[j]``: its tokens [begins[j], ends[j])
        (int64; ends clipped to the document's end) and its metadata line
        (None when the shard has none)."""
        starts = self.doc_starts[docs] + 1
        stops = starts + np.minimum(ends, self.doc_lengths(docs))
        tokens = self.shard.tokens
        shard = self.shard
        mo = shard.metaoff
        out = []
        for d, a, b in zip(docs.tolist(), (starts + begins).tolist(), stops.tolist()):
            line = None
            if shard.metadata is not None:
                stop = int(mo[d + 1]) if d + 1 < len(mo) else len(shard.metadata)
                line = bytes(shard.metadata[int(mo[d]):stop])
            out.append((np.array(tokens[a:max(a, b)], dtype=np.int64), line))
        return out


class DocumentQueries:
    """The document queries of an engine. Needs ``_ids``, ``_fan``, ``_on``,
    ``_doc_base`` (first global document number of each shard), ``n_docs``,
    ``tokenizer``, ``decode``, ``shard_dirs`` and ``_shards``."""

    def search_docs(self, q, limit: int = 10, context: int | None = None) -> SearchResult:
        """Documents containing the n-gram ``q``: ``search_docs_cnf`` of the
        one-clause query [[q]]."""
        return self.search_docs_cnf([[q]], limit, 0, context)

    def search_docs_cnf(self, cnf, limit: int = 10, window: int = 100,
                        context: int | None = None) -> SearchResult:
        """Documents holding a match of the CNF query ``cnf`` (see
        ``count_cnf``), in ascending global order, at most ``limit`` of them,
        each with the token offset of its first match; ``count`` counts the
        matches, ``n_docs`` the distinct documents holding one. With
        ``context=c`` each hit also holds the document's tokens from c before
        that match to c after its longest first-clause n-gram (``DocHit.context``)."""
        clauses, window = self._cnf_args(cnf, window)
        limit = args.integer("limit", limit)
        context = args.optional_integer("context", context)
        count = n_docs = 0
        hits, ends = [], []
        for (c, n, docs, offsets, lengths), base in zip(
                self._fan("cnf_doc_hits", clauses, window, limit), self._doc_base):
            count += c
            n_docs += n
            take = max(0, limit - len(hits))
            hits += (DocHit(int(base + d), int(o)) for d, o in zip(docs[:take], offsets[:take]))
            ends += (offsets + lengths)[:take].tolist()
        if context is not None and hits:
            ixs = np.array([h.doc_ix for h in hits], dtype=np.int64)
            at = np.array([h.position for h in hits], dtype=np.int64)
            wide = min(context, INT64_MAX_HALF)
            windows = self._windows(ixs, np.maximum(at - wide, 0), np.array(ends) + wide)
            hits = [dataclasses.replace(h, context=w) for h, w in zip(hits, windows)]
        return SearchResult(count, n_docs, tuple(hits))

    def _doc_shards(self, doc_ixs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(int64 global documents, their shards, their local numbers) of
        ``doc_ixs``: one document index or a sequence of them."""
        ixs = _int_array("doc_ixs", [doc_ixs] if args.is_int(doc_ixs) else doc_ixs)
        bad = np.flatnonzero((ixs < 0) | (ixs >= self.n_docs))
        if bad.size:
            j = int(bad[0])
            raise QueryError(f"document index {ixs[j]} (doc_ixs[{j}]) is out of range; the "
                             f"index holds documents 0 to {self.n_docs - 1}")
        k = np.searchsorted(self._doc_base, ixs, side="right") - 1
        return ixs, k, ixs - self._doc_base[k]

    def _lengths(self, k: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Tokens in local documents ``d`` of shards ``k``: one call per shard."""
        out = np.zeros(len(d), dtype=np.int64)
        for s in np.unique(k).tolist():
            at = k == s
            out[at] = self._on(s, "doc_lengths", d[at])
        return out

    def _windows(self, doc_ixs: np.ndarray, begins: np.ndarray, ends: np.ndarray) -> list:
        """Documents ``doc_ixs`` (validated), tokens [begins, ends) of each
        (ends clipped to the document): one call per shard."""
        ixs, k, d = self._doc_shards(doc_ixs)
        parts = [None] * len(ixs)
        for s in np.unique(k).tolist():
            at = np.flatnonzero(k == s)
            for j, (tokens, line) in zip(at.tolist(), self._on(s, "documents", d[at], begins[at],
                                                                 ends[at])):
                parts[j] = (s, tokens, line)
        out = []
        for j, (s, tokens, line) in enumerate(parts):
            text = self.decode(tokens) if self.tokenizer is not None else None
            meta = source = None
            if line is not None:
                where = fmt.shard_path(self.shard_dirs[s], "metadata", self._shards[s].index)
                meta, source = corpus.split_metadata(_metadata(line, where, int(d[j])))
            out.append(Document(int(ixs[j]), tokens, text, meta, source, int(begins[j])))
        return out

    def get_docs(self, doc_ixs, around=None, window: int | None = None) -> list[Document]:
        """Documents ``doc_ixs`` (global indexes, in the order given), as
        ``get_doc`` returns them; ``around`` is one position for all or one
        per document (e.g. ``find_cnf``'s ``positions``)."""
        ixs, k, d = self._doc_shards(doc_ixs)
        n = len(ixs)
        if (window is None) != (around is None):
            raise QueryError(f"get_docs got window={window!r:.40}, around={around!r:.40}; "
                             "pass both or neither")
        if window is None:
            return self._windows(ixs, np.zeros(n, dtype=np.int64), np.full(n, INT64_MAX_HALF))
        window = min(args.integer("window", window), INT64_MAX_HALF)
        if args.is_int(around):
            at = np.full(n, args.integer("around", around), dtype=np.int64)
        else:
            at = _int_array("around", around)
            if (at < 0).any():
                j = int(np.argmax(at < 0))
                raise QueryError(f"around[{j}]={at[j]} is negative; pass token offsets >= 0")
            if len(at) != n:
                raise QueryError(f"around has {len(at)} positions for {n} documents; pass one "
                                 "position, or one per document")
        past = np.flatnonzero(at > self._lengths(k, d))
        if past.size:
            j = int(past[0])
            raise QueryError(f"around={at[j]} is past the end of document {ixs[j]} "
                             f"({self._lengths(k[j:j + 1], d[j:j + 1])[0]} tokens); pass a "
                             "position within it")
        return self._windows(ixs, np.maximum(at - window, 0), at + window)

    def get_doc(self, doc_ix: int, window: int | None = None, around: int | None = None) -> Document:
        """Document ``doc_ix`` (global index): tokens, text (None for an
        ids-only index), its own metadata fields and its source file and
        line (see :class:`Document`). With
        ``around=position`` and ``window=w``: only tokens [position-w, position+w)."""
        doc_ix = args.integer("doc_ix", doc_ix, high=self.n_docs - 1)
        if around is not None:
            around = args.integer("around", around)
        return self.get_docs([doc_ix], around, window)[0]

    def doc_length(self, doc_ix: int) -> int:
        """Tokens in document ``doc_ix`` (global index), its separator excluded."""
        doc_ix = args.integer("doc_ix", doc_ix, high=self.n_docs - 1)
        return int(self._lengths(*self._doc_shards(doc_ix)[1:])[0])

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

    def find_cnf(self, cnf, window: int = 100) -> CnfMatches:
        """Every match that ``count_cnf`` counts (see :class:`CnfMatches`)."""
        found = self._fan("cnf_found", *self._cnf_args(cnf, window))
        docs = [d + base for (_, d, _), base in zip(found, self._doc_base.tolist())]
        return CnfMatches(sum(len(p) for p, _, _ in found), _cat(docs), _cat([o for *_, o in found]),
                          tuple(p for p, _, _ in found))

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
        if len(cnf) == 1 and len(cnf[0]) == 1:
            return [[self._ids(cnf[0][0])]], window
        clauses = [[self._ids(q, empty_ok=True) for q in clause] for clause in cnf]
        for i, clause in enumerate(clauses):
            for j, ids in enumerate(clause):
                if not len(ids):
                    raise QueryError(f"cnf clause {i}, n-gram {j} is empty; every n-gram "
                                     "between AND / OR needs at least one token")
        return clauses, window


def _int_array(name: str, values) -> np.ndarray:
    """int64 copy of a 1-D integer array or a list/tuple/range of integers;
    anything else is a QueryError naming ``name`` and the first bad element."""
    if isinstance(values, np.ndarray):
        if values.ndim == 1 and (values.dtype.kind in "iu" or not values.size):
            if values.dtype == np.uint64 and values.size and values.max() > INT64_MAX_HALF:
                values = np.minimum(values, INT64_MAX_HALF)
            return values.astype(np.int64)
        raise QueryError(f"{name} is an array of shape {values.shape} and dtype "
                         f"{values.dtype}; pass a 1-D integer array")
    if not isinstance(values, (list, tuple, range)):
        raise QueryError(f"{name}={values!r:.60} is not a sequence; pass a list or a 1-D "
                         "integer array")
    for j, x in enumerate(values):
        if not args.is_int(x):
            raise QueryError(f"{name}[{j}]={x!r:.40} is not an integer; pass integers")
    return np.array([min(max(int(x), -1), INT64_MAX_HALF) for x in values], dtype=np.int64)


def _cat(arrays: list) -> np.ndarray:
    return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, dtype=np.int64)


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
