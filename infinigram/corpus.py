"""Corpus input: find corpus files and stream their documents in batches.

Supported files, by suffix: ``.jsonl``/``.json`` (JSON Lines, one object per
line), the same compressed ``.gz`` or ``.zst``, ``.parquet``, ``.arrow`` /
``.feather`` (Arrow IPC file or stream) and ``.txt`` (the whole file is one
document); token ids (:mod:`infinigram.pretokenized`) from ``.npy``,
``.u16``, ``.u32``, ``.bin`` files or an id-list field of the others. A
directory saved by Hugging Face ``datasets`` (``save_to_disk``) is read as
the Arrow files its ``state.json`` lists, in order. Reading streams: memory holds about one batch, whatever the
corpus size.

pyarrow does the I/O (files, gzip/zstd decompression, Parquet, Arrow IPC); it
is imported by the readers that use it, so building tables from tokenized
files never loads it (its memory and start-up time are not paid there).
JSON lines are parsed with the standard library's C parser, one line at a
time: pyarrow's JSON reader fixes its schema from the first block (a field
that first appears later, or changes type, aborts the read), fails on lines
longer than its block size and rewrites metadata (absent fields become null,
ints become floats); the tokenizer, not the parser, bounds the build speed.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from . import args, format as fmt
from .errors import CorpusError

if TYPE_CHECKING:
    import pyarrow as pa

SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst",
            ".parquet", ".arrow", ".feather", ".txt", ".npy", ".u16", ".u32", ".bin")
"""File name endings iter_batches reads (matched case-insensitively)."""

DEFAULT_BATCH_BYTES = 8 << 20
_MAGIC = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd"}
_CONTENT = {_MAGIC["gzip"]: ("gzip-compressed", ".jsonl.gz"),
            _MAGIC["zstd"]: ("zstd-compressed", ".jsonl.zst"),
            b"PAR1": ("a Parquet file", ".parquet"), b"ARROW1": ("an Arrow IPC file", ".arrow"),
            b"\xff\xff\xff\xff": ("an Arrow IPC stream", ".arrow")}
"""First bytes of the binary formats, to name what a misnamed file holds."""
_TEXT_FIX = "name the text field with --text-field (text_field=)"
PATH, LINENUM, METADATA = "path", "linenum", "metadata"
"""Keys of a metadata line: the source file, the line or row in it, and the
document's own fields."""
_ENVELOPE = {PATH, LINENUM, METADATA}
_OFFSETS = ".offsets.npy"
_HF_DATASET = ("dataset_info.json", "state.json")
"""Files of a directory written by Hugging Face ``datasets``' save_to_disk."""


@dataclasses.dataclass
class DocBatch:
    """Documents read from the corpus, in corpus order.

    ``metadata[i]`` is document ``i``'s metadata line (a str without
    newline, see :func:`metadata_line`). ``nbytes`` is the UTF-8
    size of the texts; ``done_bytes`` is how many bytes of the input files
    have been consumed so far, counted like :func:`total_bytes` (for an ETA).
    """

    texts: list[str]
    metadata: list[str]
    nbytes: int = 0
    done_bytes: int = 0
    ids: list | None = None
    """Pre-tokenized input: one int64 id array per document (``texts`` empty)."""

    def __len__(self) -> int:
        return len(self.metadata)


def _error(message: str) -> CorpusError:
    """A CorpusError on one line (pyarrow's messages and odd file names may
    hold line breaks)."""
    return CorpusError(" ".join(filter(None, map(str.strip, message.splitlines()))))


def _kind(path: Path, text_suffixes: tuple[str, ...] = ()) -> str | None:
    name = path.name.lower()
    if name.endswith(_OFFSETS):
        return None  # read with the array file beside it
    if text_suffixes and name.endswith(tuple(s.lower() for s in text_suffixes)):
        return "txt"
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            if suffix.endswith((".gz", ".zst")):
                return "jsonl." + {"gz": "gzip", "zst": "zstd"}[suffix.rsplit(".", 1)[1]]
            return {".json": "jsonl", ".feather": "arrow"}.get(suffix, suffix[1:])
    return None


def list_files(paths: str | os.PathLike | Iterable[str | os.PathLike],
               text_suffixes: Iterable[str] = ()) -> list[Path]:
    """Corpus files named by ``paths``: files as given, directories searched
    recursively (sorted) for files with a supported suffix. Files ending in
    one of ``text_suffixes`` (e.g. ``".py"``) are read like ``.txt``: one
    document per file. Index directories (holding ``tokenized.0``: a built
    index, infini-gram's, or a build in progress) are never searched:
    skipped with a note on stderr when met in a search, an error when named,
    as is an index's manifest (a file named beside an index is read)."""
    text_suffixes = args.strings("text_suffixes", text_suffixes, error=CorpusError)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in (args.path("corpus path", p, error=CorpusError) for p in paths):
        index = p if p.is_dir() else p.parent
        if (p.is_dir() or p.name == fmt.MANIFEST) and _is_index(index):
            raise _error(f"corpus path {p}: {index} is an index directory (it holds "
                         f"{fmt.shard_path('', 'tokenized', 0)}), not corpus input; give "
                         "the corpus files or directories instead")
        if p.is_dir():
            files.extend(_search(p, text_suffixes))
        elif p.name.lower().endswith(_OFFSETS):
            raise _error(f"{p} holds document offsets; name the .npy or raw token file "
                         "beside it, which is read with it")
        elif p.is_file():
            if _kind(p, text_suffixes) is None:
                raise _error(
                    f"{p} has an unsupported suffix; corpus files must end in "
                    f"{', '.join(SUFFIXES)} (rename it, convert it to JSON Lines, or "
                    "read it as one plain-text document with --text-suffix)")
            files.append(p)
        else:
            raise _error(f"corpus path {p} does not exist; check the path")
    return files


def _is_index(directory: Path) -> bool:
    """Whether ``directory`` holds index data (ours, infini-gram's, or a
    build in progress), whose files are never corpus input."""
    return fmt.shard_path(directory, "tokenized", 0).is_file()


def _search(root: Path, text_suffixes: tuple[str, ...]) -> list[Path]:
    """Corpus files under ``root``, skipping index directories (noted on stderr)."""
    found = []
    for directory, subdirs, names in os.walk(root):
        directory = Path(directory)
        if directory != root and _is_index(directory):
            print(f"note: skipping {directory}: it holds an index, not corpus input",
                  file=sys.stderr)
            subdirs.clear()
            continue
        if all(n in names for n in _HF_DATASET):
            found += _dataset_files(directory)
            subdirs.clear()
            continue
        found += [directory / n for n in names
                  if _kind(directory / n, text_suffixes) and (directory / n).is_file()]
    return sorted(found)


def _dataset_files(directory: Path) -> list[Path]:
    """The data files of a ``save_to_disk`` directory, in its order."""
    state = directory / "state.json"
    try:
        names = [d["filename"] for d in json.loads(state.read_text("utf-8"))["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise _error(f"{state} does not list the dataset's files ({e!r:.80}); re-save the "
                     "dataset with save_to_disk") from None
    return [directory / n for n in names]


def pretokenized(files: Iterable[Path], ids_field: str | None) -> bool:
    """Whether ``files`` hold token ids (an ids field, or .npy/raw files)."""
    from .pretokenized import ARRAY_KINDS
    return ids_field is not None or any(_kind(f) in ARRAY_KINDS for f in files)


def total_bytes(files: Iterable[str | os.PathLike]) -> int:
    """Sum of the files' sizes on disk (the scale of ``DocBatch.done_bytes``)."""
    return sum(os.path.getsize(f) for f in files)


def iter_batches(paths, text_field: str = "text", batch_bytes: int = DEFAULT_BATCH_BYTES,
                 text_suffixes: Iterable[str] = (), ids=None) -> Iterator[DocBatch]:
    """Stream the documents of ``paths`` (see :func:`list_files`) as batches
    of about ``batch_bytes`` of text (at most about twice that). Null text
    reads as the empty document. With pre-tokenized input (``ids``, a
    :class:`~infinigram.pretokenized.IdsInput` with an ids field, or
    .npy/raw files) batches hold ``ids`` (about ``batch_bytes`` of int64)
    instead. Raises CorpusError naming the file and, where it can, the line
    or record."""
    from .pretokenized import IdsInput
    batch_bytes = args.integer("batch_bytes", batch_bytes, low=1, error=CorpusError)
    text_suffixes = args.strings("text_suffixes", text_suffixes, error=CorpusError)
    files = list_files(paths, text_suffixes)
    ids = ids or IdsInput()
    as_ids = pretokenized(files, ids.field)
    items: list = []
    metas: list[str] = []
    nbytes = finished = 0
    for path in files:
        size = os.path.getsize(path)
        chunks = _read_ids(path, ids, batch_bytes) if as_ids else \
            _read_file(path, text_field, batch_bytes, text_suffixes)
        for chunk_items, chunk_metas, pos in chunks:
            if as_ids:
                nbytes += sum(a.nbytes for a in chunk_items)
            else:
                for text, meta in zip(chunk_items, chunk_metas):
                    nbytes += _utf8_len(text, path, meta)
            items += chunk_items
            metas += chunk_metas
            if nbytes >= batch_bytes:
                yield _batch(as_ids, items, metas, nbytes, finished + min(pos, size))
                items, metas, nbytes = [], [], 0
        finished += size
    if metas:
        yield _batch(as_ids, items, metas, nbytes, finished)


def _batch(as_ids: bool, items: list, metas: list[str], nbytes: int, done: int) -> DocBatch:
    if as_ids:
        return DocBatch([], metas, nbytes, done, ids=items)
    return DocBatch(items, metas, nbytes, done)


def _read_ids(path: Path, ids, chunk: int):
    """Yield (id arrays, metadata, bytes consumed) chunks of one file."""
    from . import pretokenized as pt
    kind = _kind(path)
    if kind in pt.ARRAY_KINDS:
        return pt.read_array(path, kind, ids, chunk)
    if ids.field is None or kind == "txt":
        raise _error(f"{path} holds text, not token ids; pre-tokenized input (.npy, .u16, "
                     ".u32, .bin files) cannot be mixed with text files: give --ids-field "
                     "to read ids from a field, or build the text separately")
    return _read_file(path, ids.field, chunk, (), ids=True)


def _utf8_len(text: str, path: Path, meta: str) -> int:
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as e:
        where = json.loads(meta)[LINENUM] + 1
        raise _error(
            f"{path} line {where}: the text holds a lone surrogate {text[e.start]!r} at "
            f"character {e.start}, which is not valid UTF-8; fix the \\u escape in the file") from None


def metadata_line(fields: dict, path: Path, linenum: int) -> str:
    """A document's metadata line, infini-gram's layout:
    ``{"path": file, "linenum": n, "metadata": {...}}``. The document's own
    fields (all but the text) sit untouched under ``"metadata"``, so none can
    collide with the provenance; ``linenum`` is the 0-based line of a JSON
    Lines file, the row of a Parquet/Arrow file, 0 for a one-document file.
    Values JSON cannot hold (dates, bytes) are written as strings."""
    record = {PATH: str(path), LINENUM: linenum, METADATA: fields}
    out = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
    if not out.isascii():
        try:
            out.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogate in a field: keep it escaped
            out = json.dumps(record, separators=(",", ":"), default=str)
    return out


def split_metadata(record) -> tuple[object, dict | None]:
    """A parsed metadata line as (the document's own fields, its provenance
    ``{"path", "linenum"}``). A line not in :func:`metadata_line`'s layout
    (written by an older build or another tool) is all the document's own,
    with no provenance."""
    if isinstance(record, dict) and record.keys() == _ENVELOPE \
            and isinstance(record[METADATA], dict):
        return record[METADATA], {PATH: record[PATH], LINENUM: record[LINENUM]}
    return record, None


def _read_file(path: Path, text_field: str, chunk: int, text_suffixes: tuple[str, ...],
               ids: bool = False):
    """Yield (texts, metadata, bytes of the file consumed) chunks of one file
    (with ``ids``: id arrays of the field ``text_field`` instead of texts)."""
    kind = _kind(path, text_suffixes)
    if kind == "txt":
        return _read_txt(path)
    if kind.startswith("jsonl"):
        return _read_jsonl(path, kind.partition(".")[2] or None, text_field,
                           min(max(chunk, 1 << 16), 1 << 26), ids)  # bigger reads gain nothing
    if kind == "parquet":
        return _read_parquet(path, text_field, chunk, ids)
    return _read_arrow(path, text_field, chunk, ids)


def _read_txt(path: Path):
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        _refuse_binary(path, raw[:8], "text")
        raise _error(
            f"{path} is not valid UTF-8 (bad byte {raw[e.start]:#04x} at offset {e.start}); "
            "re-encode it as UTF-8, e.g. `iconv -f latin1 -t utf-8`") from None
    yield [text], [metadata_line({}, path, 0)], len(raw)


def _check_magic(path: Path, compression: str | None) -> None:
    """Refuse a file whose first bytes say it is not what its suffix says:
    ``compression`` is the one expected (None for plain JSON Lines)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if compression and head and not head.startswith(_MAGIC[compression]):
        raise _error(
            f"{path} is not {compression}-compressed although its suffix says so; "
            "rename it to match its content (e.g. drop the compression suffix)")
    if not compression:
        _refuse_binary(path, head, "JSON Lines")


def _refuse_binary(path: Path, head: bytes, expected: str) -> None:
    for magic, (what, suffix) in _CONTENT.items():
        if head.startswith(magic):
            raise _error(f"{path} is {what}, not {expected} as its suffix says; rename it "
                         f"to end in {suffix}")


def _read_jsonl(path: Path, compression: str | None, text_field: str, chunk: int,
                ids: bool = False):
    import pyarrow as pa
    from .pretokenized import json_ids
    take = json_ids if ids else _take_text
    _check_magic(path, compression)
    raw = pa.OSFile(str(path))
    stream = pa.CompressedInputStream(raw, compression) if compression else raw
    line_no = 0
    rest = b""
    try:
        while True:
            try:
                block = stream.read(chunk)
            except (OSError, pa.ArrowException) as e:
                raise _error(
                    f"{path}: cannot decompress after line {line_no} ({e}); the file is "
                    f"truncated or corrupt, re-create it") from None
            if not block:
                lines = [rest] if rest.strip() else []
            else:
                lines = (rest + block).split(b"\n")
                rest = lines.pop()
            if line_no == 0 and lines and lines[0].startswith(b"\xef\xbb\xbf"):
                lines[0] = lines[0][3:]  # UTF-8 byte-order mark
            texts, metas = [], []
            for line in lines:
                line_no += 1
                if not line.strip():
                    continue
                fields = _parse_line(line, path, line_no)
                texts.append(take(fields, text_field, path, f"line {line_no}"))
                metas.append(metadata_line(fields, path, line_no - 1))
            if texts:
                yield texts, metas, raw.tell()
            if not block:
                return
    finally:
        stream.close()


def _parse_line(line: bytes, path: Path, line_no: int) -> dict:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _error(
            f"{path} line {line_no} is not valid UTF-8 (bad byte {line[e.start]:#04x} at "
            f"column {e.start + 1}); re-encode the file as UTF-8") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise _error(
            f"{path} line {line_no} is not JSON ({e.msg} at column {e.colno}); the file must "
            "be JSON Lines: one JSON object per line (convert a JSON array with "
            "`jq -c '.[]'`)") from None
    if not isinstance(value, dict):
        raise _error(
            f"{path} line {line_no} holds a JSON {type(value).__name__}, not an object; the "
            "file must be JSON Lines: one JSON object per line (convert a JSON array with "
            "`jq -c '.[]'`)")
    return value


def _take_text(fields: dict, text_field: str, path: Path, where: str) -> str:
    if text_field not in fields:
        raise _error(
            f"{path} {where} has no field {text_field!r}; its fields are "
            f"{sorted(fields)}: {_TEXT_FIX}")
    text = fields.pop(text_field)
    if text is None:
        return ""
    if not isinstance(text, str):
        raise _error(
            f"{path} {where}: field {text_field!r} holds a {type(text).__name__} "
            f"({str(text)[:40]!r}), not a string; {_TEXT_FIX}")
    return text


def _check_schema(schema: pa.Schema, text_field: str, path: Path) -> None:
    import pyarrow as pa
    if text_field not in schema.names:
        raise _error(
            f"{path} has no column {text_field!r}; its columns are {schema.names}: {_TEXT_FIX}")
    t = schema.field(text_field).type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)
            or pa.types.is_string_view(t) or pa.types.is_null(t)):
        raise _error(
            f"{path}: column {text_field!r} has type {t}, not string; store the text as "
            f"UTF-8 strings or {_TEXT_FIX}")


def _arrow_chunk(batch: pa.RecordBatch | pa.Table, text_field: str, path: Path, first: int,
                 ids: bool = False):
    column = batch.column(text_field)
    if ids:
        from .pretokenized import arrow_ids
        texts = arrow_ids(column, path, text_field, first)
    else:
        texts = _arrow_texts(column, text_field, path, first)
    rows = batch.drop_columns([text_field]).to_pylist()
    return texts, [metadata_line(r, path, first + i) for i, r in enumerate(rows)]


def _arrow_texts(column, text_field: str, path: Path, first: int) -> list[str]:
    try:
        texts = column.to_pylist()
    except UnicodeDecodeError:
        row = next(i for i in range(len(column)) if _bad(column[i]))
        raise _error(
            f"{path} record {first + row}: column {text_field!r} is not valid UTF-8; "
            "re-write the file with UTF-8 strings") from None
    return ["" if t is None else t for t in texts]


def _bad(scalar) -> bool:
    try:
        scalar.as_py()
    except UnicodeDecodeError:
        return True
    return False


def _rows_per_chunk(nbytes: int, rows: int, chunk: int) -> int:
    return max(1, min(rows, int(chunk * rows / max(nbytes, 1))))


def _check_columns(schema: pa.Schema, field: str, path: Path, ids: bool) -> None:
    if ids:
        from .pretokenized import check_ids_type
        check_ids_type(schema, field, path)
    else:
        _check_schema(schema, field, path)


def _read_parquet(path: Path, text_field: str, chunk: int, ids: bool = False):
    import pyarrow as pa
    import pyarrow.parquet as pq
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(max(size - 4, 0))
        tail = f.read(4)
    if size < 12 or head != b"PAR1" or tail != b"PAR1":
        raise _error(f"{path} is not a Parquet file (no PAR1 marker); rename it to "
                          "match its content, or re-write it as Parquet")
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise _error(f"{path} is not a readable Parquet file ({e}); re-write it") from None
    _check_columns(pf.schema_arrow, text_field, path, ids)
    meta = pf.metadata
    text_bytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    rows = _rows_per_chunk(text_bytes, meta.num_rows, chunk)
    done = 0
    try:
        for batch in pf.iter_batches(batch_size=rows):
            texts, metas = _arrow_chunk(batch, text_field, path, done, ids)
            done += batch.num_rows
            yield texts, metas, size * done // max(meta.num_rows, 1)
    except (OSError, pa.ArrowException) as e:
        raise _error(f"{path}: cannot read record {done} onward ({e}); the file is "
                          "truncated or corrupt, re-write it") from None


def _read_arrow(path: Path, text_field: str, chunk: int, ids: bool = False):
    import pyarrow as pa
    source = pa.memory_map(str(path))  # batches are zero-copy views of the map
    try:
        try:
            table = pa.ipc.open_file(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            table = pa.ipc.open_stream(source).read_all()
    except (OSError, pa.ArrowException) as e:
        raise _error(f"{path} is neither an Arrow IPC file nor stream ({e}); rename "
                          "it to match its content, or re-write it with pyarrow") from None
    _check_columns(table.schema, text_field, path, ids)
    size = os.path.getsize(path)
    rows = _rows_per_chunk(table.nbytes, table.num_rows, chunk)
    for start in range(0, table.num_rows, rows):
        piece = table.slice(start, rows)
        texts, metas = _arrow_chunk(piece, text_field, path, start, ids)
        yield texts, metas, size * (start + piece.num_rows) // table.num_rows
