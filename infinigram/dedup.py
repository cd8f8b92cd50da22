"""``Engine.dedup``: the later copies of repeated n-grams, as spans.

Token index p (global order: shard by shard, then token index) starts a
repeat when its ``min_len`` tokens lie in one document and also start at
an earlier index; the spans are the maximal runs of the union of those
windows. So the first occurrence of every repeated ``min_len``-gram is
kept and the later copies are marked (Google's deduplicate-text-datasets
marks every copy). :class:`ShardDedup` finds them inside one shard
(``native.dedup``); :class:`DedupQueries` adds the n-grams found in earlier
shards (batch counts of one n-gram per group) and the byte ranges.
:func:`write_spans` and :func:`write_deduplicated` write the result.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import args, format as fmt
from .errors import ArgumentError
from .native import batch, dedup as kd, search as ks
from .results import Dedup

GROUP_BATCH = 1 << 16
"""Suffix-array entries whose groups are counted in earlier shards per call."""
DOC_BATCH = 1 << 10
"""Documents read per call when writing or measuring bytes."""
SPAN_SUFFIXES = (".parquet", ".jsonl")


class ShardDedup:
    """The dedup answers of one shard. Needs ``_plain`` (the shard as the
    kernels take it), ``_tokens``, ``shard``, ``doc_of`` and ``doc_starts``."""

    def repeat_links(self, L: int) -> np.ndarray:
        """``native.dedup.links`` of this shard (uint8 per table entry)."""
        return kd.links(self._plain, L, fmt.separator(self.shard.width))

    def group_grams(self, link: np.ndarray, lo: int, hi: int, L: int) -> tuple[np.ndarray, np.ndarray]:
        """(table entries heading a group in [lo, hi), their L-grams flat as int64)."""
        heads = np.flatnonzero(link[lo:hi] == kd.HEAD)
        starts = ks.positions(self._plain, lo, hi)[heads]
        flat = self._tokens[starts[:, None] + np.arange(L)].astype(np.int64).ravel()
        return heads + lo, flat

    def repeat_spans(self, link: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(local documents, token start and end offsets in them) of the spans."""
        begin, end = kd.covered_runs(kd.repeat_starts(self._plain, link), L)
        docs = self.doc_of(begin)
        first = self.doc_starts[docs] + 1
        return docs, begin - first, end - first


class DedupQueries:
    """``dedup`` of an engine. Needs ``_on``, ``_shards``, ``_doc_base``,
    ``_width``, ``n_tokens``, ``tokenizer`` and ``get_docs``."""

    def dedup(self, min_len: int) -> Dedup:
        """The spans of the later copies of every ``min_len``-gram repeated in
        the corpus (see :mod:`infinigram.dedup`), in corpus order. Linear in
        the corpus for a fixed ``min_len``; one byte per token of memory at a
        time (two while a shard is walked), below the index's own size."""
        L = args.integer("min_len", min_len, low=1)
        docs, starts, ends = [], [], []
        for k, shard in enumerate(self._shards):
            link = self._on(k, "repeat_links", L)
            if k:
                if not link.flags.writeable:  # from a Ray actor: a read-only view
                    link = link.copy()
                self._mark_earlier(k, link, L)
            d, a, b = self._on(k, "repeat_spans", link, L)
            docs.append(d + self._doc_base[k])
            starts.append(a)
            ends.append(b)
        docs, starts, ends = (np.concatenate(x) if x else np.zeros(0, np.int64)
                              for x in (docs, starts, ends))
        byte_starts = byte_ends = None
        if self.tokenizer is not None:
            byte_starts, byte_ends = self._byte_ranges(docs, starts, ends)
        return Dedup(L, docs, starts, ends, byte_starts, byte_ends, self.n_tokens)

    def _mark_earlier(self, k: int, link: np.ndarray, L: int) -> None:
        """Set every group head of shard ``k`` whose L-gram occurs in an
        earlier shard to EARLIER (one batch count of one L-gram per group)."""
        for lo in range(0, len(link), GROUP_BATCH):
            heads, flat = self._on(k, "group_grams", link, lo, min(len(link), lo + GROUP_BATCH), L)
            if not len(heads):
                continue
            bounds = np.arange(len(heads) + 1, dtype=np.int64) * L
            order = batch.visit_order(flat, bounds, self._width)
            seen = sum(self._on(j, "count_many", flat, bounds, order) for j in range(k))
            link[heads[seen > 0]] = kd.EARLIER

    def _byte_ranges(self, docs, starts, ends) -> tuple[np.ndarray, np.ndarray]:
        """Byte offsets in each span's decoded document of its token offsets:
        the UTF-8 length of the decoded tokens before each (the token offset
        itself for a bytes index, whose tokens are the document's bytes)."""
        if self.tokenizer.kind == "bytes":
            return starts.copy(), ends.copy()
        out = np.zeros((2, len(docs)), dtype=np.int64)
        touched = np.unique(docs)
        for j0 in range(0, len(touched), DOC_BATCH):
            for doc in self.get_docs(touched[j0:j0 + DOC_BATCH]):
                a, b = np.searchsorted(docs, [doc.doc_ix, doc.doc_ix + 1])
                for j in range(a, b):
                    for row, cut in ((0, starts[j]), (1, ends[j])):
                        out[row, j] = len(self.decode(doc.tokens[:cut]).encode("utf-8"))
        return out[0], out[1]


def spans_table(result: Dedup) -> dict[str, np.ndarray]:
    """The spans as named columns (the byte columns for a text index only)."""
    cols = {"doc_ix": result.doc_ixs, "start": result.starts, "end": result.ends}
    if result.byte_starts is not None:
        cols.update(byte_start=result.byte_starts, byte_end=result.byte_ends)
    return cols


def spans_path(value) -> Path:
    """A spans file path: its suffix picks the format (.parquet or .jsonl)."""
    path = args.path("spans", value)
    if path.suffix not in SPAN_SUFFIXES:
        raise ArgumentError(f"spans file {str(path)!r} has suffix {path.suffix!r}; name it "
                            "*.parquet or *.jsonl")
    return path


def write_spans(result: Dedup, path) -> None:
    """Write the spans to ``path`` (.parquet or .jsonl) under a temporary
    name, renamed into place."""
    path = spans_path(path)
    tmp = fmt.temp_path(path)
    cols = spans_table(result)
    try:
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq
            pq.write_table(pa.table(cols), tmp)
        else:
            names = list(cols)
            with open(tmp, "w", encoding="utf-8") as f:
                for row in zip(*(c.tolist() for c in cols.values())):
                    f.write(json.dumps(dict(zip(names, row))) + "\n")
        fmt.commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def output_dir(value) -> Path:
    """An output directory that does not exist yet."""
    path = args.path("output", value)
    if path.exists():
        raise ArgumentError(f"output {str(path)!r} already exists; name a new directory "
                            "(dedup never overwrites)")
    return path


def write_deduplicated(engine, result: Dedup, directory, spans_name: str = "spans.jsonl") -> None:
    """Write ``directory`` (which must not exist): ``documents.jsonl``, every
    document with its spans removed ("text" for a text index: its decoded
    text without the spans' bytes; else "ids") and its metadata fields, and
    the spans file ``spans_name``. Written under a temporary name, then renamed."""
    directory = output_dir(directory)
    spans_path(spans_name)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        _write_documents(engine, result, tmp / "documents.jsonl")
        write_spans(result, tmp / spans_name)
        output_dir(directory)
        os.rename(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_documents(engine, result: Dedup, path: Path) -> None:
    """One JSON line per document of ``engine``: ``write_deduplicated``'s."""
    text = result.byte_starts is not None
    lo = np.searchsorted(result.doc_ixs, np.arange(engine.n_docs + 1))
    with open(path, "w", encoding="utf-8") as f:
        for d0 in range(0, engine.n_docs, DOC_BATCH):
            for doc in engine.get_docs(range(d0, min(engine.n_docs, d0 + DOC_BATCH))):
                a, b = int(lo[doc.doc_ix]), int(lo[doc.doc_ix + 1])
                keep = dict(doc.metadata or {})
                if text:
                    data = doc.text.encode("utf-8")
                    cuts = zip(result.byte_starts[a:b].tolist(), result.byte_ends[a:b].tolist())
                    keep["text"] = _remove(data, cuts).decode("utf-8", errors="replace")
                else:
                    cuts = zip(result.starts[a:b].tolist(), result.ends[a:b].tolist())
                    keep["ids"] = _remove(doc.tokens, cuts).tolist()
                f.write(json.dumps(keep, ensure_ascii=False) + "\n")


def _remove(seq, cuts):
    """``seq`` without its ascending, disjoint [start, end) ranges ``cuts``."""
    pieces, at = [], 0
    for a, b in cuts:
        pieces.append(seq[at:a])
        at = b
    pieces.append(seq[at:])
    return b"".join(pieces) if isinstance(seq, bytes) else np.concatenate(pieces)
