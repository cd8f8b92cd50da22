"""Typed, frozen results of engine queries (numpy arrays inside).

Classes holding arrays compare by identity (``eq=False``): compare their
fields with numpy instead.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class FindResult:
    """Occurrences of an n-gram: total count and, per shard, the suffix-array
    range ``(shard, start, end)`` holding them (``end - start`` of them);
    ``shard`` numbers the engine's shards, across all its index directories."""

    count: int
    ranges: tuple[tuple[int, int, int], ...]


@dataclasses.dataclass(frozen=True)
class ProbResult:
    """P(next | prompt) = cont_count / prompt_count, where prompt_count counts
    the prompt's occurrences followed by a real token; nan when that is 0."""

    prob: float
    prompt_count: int
    cont_count: int


@dataclasses.dataclass(frozen=True)
class InfGramProb:
    """∞-gram probability: ProbResult on the longest usable suffix of the
    prompt, ``effective_n - 1`` tokens long (an ``effective_n``-gram)."""

    prob: float
    prompt_count: int
    cont_count: int
    effective_n: int


@dataclasses.dataclass(frozen=True, eq=False)
class NextTokenDist:
    """Exact next-token distribution: every distinct next token ``ids``
    (ascending) with its ``counts``; ``prompt_count`` = counts.sum() (the
    prompt's occurrences followed by a real token); the prompt suffix used
    was ``effective_n - 1`` tokens long."""

    ids: np.ndarray
    counts: np.ndarray
    prompt_count: int
    effective_n: int

    @property
    def probs(self) -> np.ndarray:
        """counts / prompt_count (float64; empty when prompt_count is 0)."""
        if self.prompt_count == 0:
            return np.zeros(0, dtype=np.float64)
        return self.counts / float(self.prompt_count)


@dataclasses.dataclass(frozen=True, eq=False)
class ScoreResult:
    """∞-gram scores of a sequence, one entry per position t: ``probs[t]`` =
    P(ids[t] | ids[:t]) on the longest usable suffix, ``effective_n[t]`` =
    its length + 1, the counts behind it, and ``sparse[t]`` = that suffix
    has exactly one distinct next token."""

    probs: np.ndarray
    effective_n: np.ndarray
    prompt_counts: np.ndarray
    cont_counts: np.ndarray
    sparse: np.ndarray


@dataclasses.dataclass(frozen=True)
class DocHit:
    """A document holding a match (of an n-gram, or of a CNF query): global
    index, the token offset of its first match inside it and, when asked
    for, ``context``: the window of the document around that match."""

    doc_ix: int
    position: int
    context: Document | None = None


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """``count`` matches (occurrences of an n-gram) in ``n_docs`` distinct
    documents; ``docs`` holds the first ones in ascending document order."""

    count: int
    n_docs: int
    docs: tuple[DocHit, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class Document:
    """One document (or a window of it): its tokens, decoded text (None for
    an ids-only index), its own metadata fields exactly as the corpus gave
    them (None when the index has none) and where it came from
    (``{"path", "linenum"}``; None when the index does not record it);
    ``start`` is the token offset in the document of ``tokens[0]``."""

    doc_ix: int
    tokens: np.ndarray
    text: str | None
    metadata: dict | None
    source: dict | None = None
    start: int = 0


@dataclasses.dataclass(frozen=True, eq=False)
class CnfMatches:
    """``Engine.find_cnf``: every match of a CNF query, ascending (shard by
    shard, in index order), as global documents ``doc_ixs`` and token
    offsets in them ``positions`` (pass both on to ``get_docs(doc_ixs,
    around=positions, window=w)``), and per shard the matches' token indexes
    in that shard (``shard_positions``, what ``locate`` takes); int64 arrays."""

    count: int
    doc_ixs: np.ndarray
    positions: np.ndarray
    shard_positions: tuple[np.ndarray, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class AttributionSpan:
    """A maximal span ids[start:end] of an attributed input that occurs
    verbatim in the corpus, ``count`` times; up to the requested number of
    those occurrences (suffix-array order, shard by shard) as global
    document numbers ``doc_ixs`` and token offsets in them ``positions``
    (int64 arrays)."""

    start: int
    end: int
    count: int
    doc_ixs: np.ndarray
    positions: np.ndarray

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclasses.dataclass(frozen=True, eq=False)
class Attribution:
    """``Engine.attribute``'s answer: the input's token ``ids`` and its
    ``spans`` in ascending order of start (and of end)."""

    ids: np.ndarray
    spans: tuple[AttributionSpan, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class Dedup:
    """``Engine.dedup``: the maximal spans of later copies of repeated
    ``min_len``-grams, in corpus order. Span j is tokens
    [starts[j], ends[j]) of global document ``doc_ixs[j]`` and, for a text
    index, bytes [byte_starts[j], byte_ends[j]) of that document's decoded
    text (None for an ids-only index); int64 arrays. ``n_tokens``: the
    corpus's real tokens."""

    min_len: int
    doc_ixs: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    byte_starts: np.ndarray | None
    byte_ends: np.ndarray | None
    n_tokens: int

    @property
    def removed(self) -> int:
        """Tokens inside the spans."""
        return int((self.ends - self.starts).sum())

    @property
    def docs_touched(self) -> int:
        """Documents holding a span."""
        return len(np.unique(self.doc_ixs))


@dataclasses.dataclass(frozen=True, eq=False)
class Overlap:
    """``Engine.overlap``: per test document, its ``ngrams`` (n-grams,
    max(0, tokens - n + 1)) and how many of them occur in the corpus
    (``found``); int64 arrays."""

    n: int
    ngrams: np.ndarray
    found: np.ndarray

    @property
    def fractions(self) -> np.ndarray:
        """found / ngrams per document (nan for a document under n tokens)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.found / self.ngrams

    @property
    def contaminated(self) -> np.ndarray:
        """Per document: whether any of its n-grams occurs in the corpus."""
        return self.found > 0

    @property
    def fraction(self) -> float:
        """Share of all the test set's n-grams found (nan when it has none)."""
        total = int(self.ngrams.sum())
        return int(self.found.sum()) / total if total else float("nan")


def jsonable(x):
    """JSON-ready data: dataclasses as objects, arrays as lists, NaN and ±inf as null."""
    if dataclasses.is_dataclass(x):
        return {f.name: jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, (np.ndarray, np.generic)):
        return jsonable(x.tolist())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    return x
