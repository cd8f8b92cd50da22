"""Pre-tokenized corpus input: documents given as token ids, not text.

Read by :mod:`infinigram.corpus` (``iter_batches(..., ids=IdsInput(...))``):

- Parquet/Arrow (and Hugging Face ``datasets`` saved with ``save_to_disk``,
  whose data files are Arrow streams) and JSON Lines: a column or field of
  integer lists, one document a row (``IdsInput.field``);
- ``.npy`` (a 1-D integer array) and raw little-endian files (``.u16``,
  ``.u32``, ``.bin`` of ``IdsInput.width`` bytes an id): documents are split
  at a separator id (default: the file's all-ones value, as infini-gram
  writes its token files) or, when ``NAME.offsets.npy`` sits beside the
  file, start at the positions it lists.

Ids come out as int64 arrays; the builder checks them against the index's
token width.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from . import corpus

ARRAY_KINDS = ("npy", "u16", "u32", "bin")
OFFSETS_SUFFIX = ".offsets.npy"


@dataclasses.dataclass(frozen=True)
class IdsInput:
    """How to read token ids: ``field`` names the id-list column/field of
    Parquet, Arrow and JSON Lines files; ``separator`` splits ``.npy`` and raw
    files into documents (None: the file's all-ones value); ``width`` is the
    bytes per id of ``.bin`` files."""

    field: str | None = None
    separator: int | None = None
    width: int | None = None


def offsets_path(path: Path) -> Path:
    """The offsets file that may sit beside an array file."""
    return path.with_suffix(OFFSETS_SUFFIX)


def read_array(path: Path, kind: str, spec: IdsInput, chunk: int):
    """Yield (ids, metadata, bytes consumed) chunks of an .npy or raw file."""
    ids = _load(path, kind, spec)
    starts, ends = _bounds(path, ids, spec)
    per = max(1, chunk // ids.itemsize)
    size = os.path.getsize(path)
    doc = 0
    while doc < len(starts):
        last = max(int(np.searchsorted(starts, starts[doc] + per, side="right")), doc + 1)
        docs = [np.asarray(ids[b:e], dtype=np.int64) for b, e in
                zip(starts[doc:last].tolist(), ends[doc:last].tolist())]
        metas = [corpus.metadata_line({}, path, i) for i in range(doc, last)]
        doc = last
        yield docs, metas, size * int(ends[last - 1]) // max(len(ids), 1)


def _load(path: Path, kind: str, spec: IdsInput) -> np.ndarray:
    if kind == "npy":
        try:
            ids = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as e:
            raise corpus._error(f"{path} is not a readable .npy file ({e}); write it with "
                                "numpy.save") from None
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise corpus._error(
                f"{path} holds a {ids.ndim}-D {ids.dtype} array; token ids must be a 1-D "
                "integer array (flatten it, or cast it with .astype(np.uint32))")
        return ids
    width = {"u16": 2, "u32": 4}.get(kind, spec.width)
    if width is None:
        raise corpus._error(f"{path}: a .bin file of token ids needs the bytes per id; pass "
                            "--token-width (1, 2 or 4)")
    size = os.path.getsize(path)
    if size % width:
        raise corpus._error(
            f"{path} has {size} bytes, not a multiple of {width} (bytes per id): the file is "
            f"truncated, or its ids are not {width} bytes wide (pass the width it was written "
            "with)")
    dtype = np.dtype(f"<u{width}")
    return np.memmap(path, dtype=dtype, mode="r") if size else np.zeros(0, dtype)


def _bounds(path: Path, ids: np.ndarray, spec: IdsInput) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the documents: from the offsets file (document
    starts), else the runs between separators (a leading separator opens
    the first document, a trailing one closes the last)."""
    n = len(ids)
    off = offsets_path(path)
    if off.is_file():
        starts = np.load(off, allow_pickle=False)
        if starts.ndim != 1 or starts.dtype.kind not in "iu" or (len(starts) and (
                starts[0] != 0 or (np.diff(starts.astype(np.int64)) < 0).any()
                or starts[-1] > n)):
            raise corpus._error(
                f"{off} must be a 1-D integer array of the document starts in {path}: 0 "
                f"first, non-decreasing, at most {n}; fix it, or remove it to split at "
                "separators")
        starts = starts.astype(np.int64)
        return starts, np.append(starts[1:], n)
    sep = spec.separator if spec.separator is not None else (
        np.iinfo(ids.dtype).max if ids.dtype.kind == "u" else -1)
    cuts = np.flatnonzero(ids == sep)
    starts, ends = np.concatenate(([0], cuts + 1)), np.append(cuts, n)
    keep = np.ones(len(starts), bool)
    keep[0] = not (len(cuts) and cuts[0] == 0) and n > 0
    keep[-1] &= not (len(cuts) and cuts[-1] == n - 1)
    return starts[keep], ends[keep]


def arrow_ids(column, path: Path, field: str, first: int) -> list[np.ndarray]:
    """One int64 array per row of an Arrow list column (a null row: empty)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    if values.dtype.kind not in "iu":
        raise corpus._error(f"{path}: column {field!r} holds a null id (in the records from "
                            f"{first} on); every id must be an integer: drop or replace it")
    return np.split(values.astype(np.int64, copy=False), np.cumsum(lengths)[:-1])


def check_ids_type(schema, field: str, path: Path) -> None:
    """Raise unless ``field`` is a column of integer lists."""
    import pyarrow as pa
    if field not in schema.names:
        raise corpus._error(f"{path} has no column {field!r}; its columns are {schema.names}: "
                            f"{_FIX}")
    t = schema.field(field).type
    if not ((pa.types.is_list(t) or pa.types.is_large_list(t) or
             pa.types.is_fixed_size_list(t)) and pa.types.is_integer(t.value_type)):
        raise corpus._error(f"{path}: column {field!r} has type {t}, not a list of integer "
                            f"token ids; store the ids as list<int32> (or int64, uint16...) "
                            f"or {_FIX}")


def json_ids(fields: dict, field: str, path: Path, where: str) -> np.ndarray:
    """The ids of a JSON Lines record's ``field`` (removed from ``fields``)."""
    if field not in fields:
        raise corpus._error(f"{path} {where} has no field {field!r}; its fields are "
                            f"{sorted(fields)}: {_FIX}")
    ids = fields.pop(field)
    if ids is None:
        return np.zeros(0, np.int64)
    if not isinstance(ids, list) or not all(type(i) is int for i in ids):
        raise corpus._error(f"{path} {where}: field {field!r} holds {str(ids)[:40]!r}, not a "
                            f"list of integer token ids; {_FIX}")
    try:
        return np.array(ids, dtype=np.int64)
    except OverflowError:
        raise corpus._error(f"{path} {where}: field {field!r} holds an id beyond 64 bits; "
                            "token ids must be below 4294967295") from None


_FIX = "name the token-id field with --ids-field (ids_field=)"
