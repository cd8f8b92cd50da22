"""The on-disk index format: names, widths, the manifest, opening shards.

This module and ``docs/FORMAT.md`` are the single description of the format.
An index is a directory of shards ``s = 0, 1, ...``; see FORMAT.md for what
each file holds. Everything here is plain Python and numpy (no kernels).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from .errors import IndexFormatError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER_FILE = "tokenizer.model"
DEFAULT_SHARD_TOKENS = 1 << 31
"""Most tokens a builder puts in one shard unless told otherwise."""
SHARD_FILES = ("tokenized", "table", "offset", "metadata", "metaoff")
_SHARD_FILE_RE = re.compile(r"^(tokenized|table|offset|metadata|metaoff)\.(\d+)$")
_DTYPES = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}


def token_width(vocab_size: int) -> int:
    """Bytes per token for a vocabulary: the all-ones id must stay free."""
    for width in (1, 2, 4):
        if vocab_size <= separator(width):
            return width
    raise IndexFormatError(
        f"vocabulary size {vocab_size} exceeds {separator(4)}; use a smaller vocabulary")


def separator(width: int) -> int:
    """The document separator id: all bits set at this token width."""
    return (1 << (8 * width)) - 1


def token_dtype(width: int) -> np.dtype:
    """Little-endian numpy dtype of tokens of this width."""
    try:
        return _DTYPES[width]
    except KeyError:
        raise IndexFormatError(
            f"token width {width} is not supported; use 1, 2 or 4") from None


def pointer_width(tokenized_bytes: int) -> int:
    """Bytes per suffix-array entry, as infini-gram computes it (at least 1)."""
    if tokenized_bytes <= 1:
        return 1
    return max(1, int(math.ceil(math.log2(tokenized_bytes) / 8)))


def shard_path(directory: str | os.PathLike, kind: str, shard: int) -> Path:
    """Path of one shard file, e.g. ``table.0``."""
    return Path(directory) / f"{kind}.{shard}"


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary name a file is written under before it is renamed."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def commit(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Flush a finished temporary file to disk and rename it into place."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """What the manifest records of one shard."""

    tokens: int
    docs: int
    files: dict[str, dict]  # file name -> {"size": int, "sha256": str}


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Contents of ``manifest.json``: everything needed to open an index."""

    token_width: int
    vocab_size: int
    tokenizer: dict  # {"kind": "bytes"} or {"kind": "sentencepiece", "file", "sha256"}
    shards: tuple[ShardInfo, ...]
    build: dict = dataclasses.field(default_factory=dict)
    version: int = FORMAT_VERSION
    library: str = ""

    @property
    def separator(self) -> int:
        return separator(self.token_width)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["separator"] = self.separator
        return json.dumps(d, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = MANIFEST) -> "Manifest":
        fix = "rebuild the index, or restore manifest.json from the build"
        try:
            d = json.loads(text)
            shards = tuple(ShardInfo(int(s["tokens"]), int(s["docs"]), dict(s["files"]))
                           for s in d["shards"])
            m = cls(token_width=int(d["token_width"]), vocab_size=int(d["vocab_size"]),
                    tokenizer=dict(d["tokenizer"]), shards=shards,
                    build=dict(d.get("build", {})), version=int(d["version"]),
                    library=str(d.get("library", "")))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise IndexFormatError(f"{where} is corrupt ({type(e).__name__}: {e}); {fix}") from None
        if m.version != FORMAT_VERSION:
            raise IndexFormatError(
                f"{where} has format version {m.version}, this library reads {FORMAT_VERSION}; "
                "rebuild the index or install a matching infinigram")
        token_dtype(m.token_width)
        if d.get("separator", m.separator) != m.separator:
            raise IndexFormatError(
                f"{where}: separator {d['separator']} does not match token width "
                f"{m.token_width} (expected {m.separator}); {fix}")
        if not 0 < m.vocab_size <= m.separator:
            raise IndexFormatError(
                f"{where}: vocab_size {m.vocab_size} does not fit token width {m.token_width}; {fix}")
        if m.tokenizer.get("kind") not in ("bytes", "sentencepiece", "none"):
            raise IndexFormatError(f"{where}: unknown tokenizer {m.tokenizer!r}; {fix}")
        return m


def write_manifest(directory: str | os.PathLike, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically (the last file of every build)."""
    final = Path(directory) / MANIFEST
    tmp = temp_path(final)
    tmp.write_text(manifest.to_json())
    commit(tmp, final)


def read_manifest(directory: str | os.PathLike) -> Manifest:
    """Read and validate ``manifest.json``; raises IndexFormatError."""
    if not Path(directory).is_dir():
        raise IndexFormatError(f"index directory {directory} does not exist; build it first")
    path = Path(directory) / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise IndexFormatError(
            f"{directory} has no {MANIFEST}: it is not a finished infinigram index. "
            "Build it with `infinigram build`, or open an infini-gram index with "
            "token_width= and tokenizer= given") from None
    except UnicodeDecodeError:
        raise IndexFormatError(f"{path} is not UTF-8 text; rebuild the index") from None
    return Manifest.from_json(text, str(path))


@dataclasses.dataclass(frozen=True)
class Shard:
    """One shard's files, memory-mapped read-only.

    ``tokens`` is the token array (separators included), ``table`` the suffix
    array as raw bytes (``pointer`` bytes per entry, little-endian byte
    offsets into the token file), ``offsets`` the byte offset of each
    document's separator. ``metadata``/``metaoff`` are None when absent.
    """

    index: int
    tokens: np.ndarray
    table: np.ndarray
    offsets: np.ndarray
    metadata: np.ndarray | None
    metaoff: np.ndarray | None
    width: int
    pointer: int

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_docs(self) -> int:
        return int(self.offsets.shape[0])


def _map(path: Path, dtype) -> np.ndarray:
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def shard_numbers(directory: str | os.PathLike) -> dict[str, list[int]]:
    """Shard files present in a directory, by kind: {"table": [0, 1], ...}."""
    found: dict[str, list[int]] = {k: [] for k in SHARD_FILES}
    for name in os.listdir(directory):
        m = _SHARD_FILE_RE.match(name)
        if m:
            found[m.group(1)].append(int(m.group(2)))
    return {k: sorted(v) for k, v in found.items()}


def open_shard(directory: str | os.PathLike, s: int, width: int) -> Shard:
    """Map one shard's files and check their sizes agree with each other."""
    directory = Path(directory)
    paths = {k: shard_path(directory, k, s) for k in SHARD_FILES}
    for kind in ("tokenized", "table", "offset"):
        if not paths[kind].exists():
            raise IndexFormatError(
                f"{paths[kind]} is missing; rebuild the index (or run `infinigram index "
                f"{directory}` if only table files are missing)")
    size = paths["tokenized"].stat().st_size
    if size % width:
        raise IndexFormatError(
            f"{paths['tokenized']} has {size} bytes, not a multiple of the token width "
            f"{width}: the file is truncated or the width is wrong")
    n = size // width
    pointer = pointer_width(size)
    table_size = paths["table"].stat().st_size
    if table_size != n * pointer:
        raise IndexFormatError(
            f"{paths['table']} has {table_size} bytes, expected {n * pointer} "
            f"({n} tokens x {pointer}-byte pointers): the file is truncated or from "
            f"another build; rebuild it with `infinigram index {directory}`")
    off_size = paths["offset"].stat().st_size
    if off_size % 8:
        raise IndexFormatError(f"{paths['offset']} has {off_size} bytes, not a multiple of 8: truncated")
    has_meta = paths["metadata"].exists()
    if has_meta != paths["metaoff"].exists():
        raise IndexFormatError(
            f"shard {s} of {directory} has only one of metadata.{s} / metaoff.{s}; rebuild the index")
    shard = Shard(
        index=s,
        tokens=_map(paths["tokenized"], token_dtype(width)),
        table=_map(paths["table"], np.uint8),
        offsets=_map(paths["offset"], np.dtype("<u8")),
        metadata=_map(paths["metadata"], np.uint8) if has_meta else None,
        metaoff=_map(paths["metaoff"], np.dtype("<u8")) if has_meta else None,
        width=width,
        pointer=pointer,
    )
    if shard.metaoff is not None and shard.metaoff.shape[0] != shard.n_docs:
        raise IndexFormatError(
            f"{paths['metaoff']} lists {shard.metaoff.shape[0]} documents, offset.{s} "
            f"lists {shard.n_docs}: truncated or mismatched; rebuild the index")
    return shard


def check_against_manifest(directory: str | os.PathLike, manifest: Manifest) -> None:
    """Raise if files are missing, extra, or of another size than recorded."""
    directory = Path(directory)
    listed = set()
    for s, info in enumerate(manifest.shards):
        for name, rec in info.files.items():
            listed.add(name)
            path = directory / name
            if not path.exists():
                raise IndexFormatError(f"{path} is missing (listed in {MANIFEST}); rebuild the index")
            size = path.stat().st_size
            if size != rec["size"]:
                raise IndexFormatError(
                    f"{path} has {size} bytes but {MANIFEST} records {rec['size']}: "
                    "the file is truncated or from another build; rebuild the index")
    for name in sorted(os.listdir(directory)):
        if _SHARD_FILE_RE.match(name) and name not in listed:
            raise IndexFormatError(
                f"{directory / name} is not part of this index ({MANIFEST} lists "
                f"{len(manifest.shards)} shard(s)); move it away or rebuild the index")


def open_index(directory: str | os.PathLike, manifest: Manifest | None = None,
               width: int | None = None) -> list[Shard]:
    """Open every shard of an index: from its manifest, or, for an index
    built by infini-gram, with the token ``width`` given."""
    directory = Path(directory)
    if not directory.is_dir():
        raise IndexFormatError(f"index directory {directory} does not exist; build it first")
    if manifest is not None:
        check_against_manifest(directory, manifest)
        shards = [open_shard(directory, s, manifest.token_width) for s in range(len(manifest.shards))]
        for shard, info in zip(shards, manifest.shards):
            if shard.n_tokens != info.tokens or shard.n_docs != info.docs:
                raise IndexFormatError(
                    f"shard {shard.index} of {directory} has {shard.n_tokens} tokens / "
                    f"{shard.n_docs} documents, {MANIFEST} records {info.tokens} / {info.docs}; "
                    "rebuild the index")
        return shards
    if width is None:
        raise IndexFormatError(f"{directory} has no {MANIFEST}; pass token_width= (1, 2 or 4)")
    numbers = shard_numbers(directory)["tokenized"]
    if not numbers:
        raise IndexFormatError(f"{directory} holds no tokenized.N files: not an index")
    if numbers != list(range(len(numbers))):
        raise IndexFormatError(f"{directory}: shard numbers {numbers} are not 0..{len(numbers) - 1}")
    return [open_shard(directory, s, width) for s in numbers]
