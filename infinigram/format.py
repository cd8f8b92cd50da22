"""The on-disk index format: names, widths, the manifest, opening shards.

This module and ``docs/FORMAT.md`` are the single description of the format.
An index is a directory of shards ``s = 0, 1, ...``; see FORMAT.md for what
each file holds. Everything here is plain Python and numpy (no kernels).
"""
from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import math
import mmap
import os
import re
import weakref
from pathlib import Path

import numpy as np

from .errors import IndexFormatError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER_FILE = "tokenizer.model"
HF_TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_FILES = (TOKENIZER_FILE, HF_TOKENIZER_FILE)
"""Names a build gives the sentencepiece model and the Hugging Face tokenizer."""
DEFAULT_SHARD_TOKENS = 1 << 31
"""Most tokens a builder puts in one shard unless told otherwise."""
SHARD_FILES = ("tokenized", "table", "offset", "metadata", "metaoff")
_SHARD_FILE_RE = re.compile(r"^(tokenized|table|offset|metadata|metaoff)\.(\d+)$")
_DTYPES = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}
_MANIFEST_KEYS = {"version", "library", "token_width", "vocab_size", "separator", "tokenizer",
                  "shards", "build", "checksum"}
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 22
"""Entries per step of the vectorized open checks (bounds their memory)."""


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


def sha256_file(path: str | os.PathLike, read=None) -> str:
    """Hex sha256 of a file, read in chunks (by ``read(path)``, an iterable of
    buffers, where given)."""
    h = hashlib.sha256()
    for block in (read or _chunks)(path):
        h.update(block)
    return h.hexdigest()


def _chunks(path, chunk: int = 1 << 24):
    with open(path, "rb") as f:
        while block := f.read(chunk):
            yield block


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
    tokenizer: dict  # {"kind": "bytes" | "none"} or {"kind": "sentencepiece" | "hf", "file", "sha256"}
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
        d["checksum"] = _checksum(d)
        return json.dumps(d, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = MANIFEST) -> "Manifest":
        """Parse and validate a manifest; every defect is one IndexFormatError."""
        fix = "rebuild the index, or restore manifest.json from the build"
        try:
            d = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise IndexFormatError(
                f"{where} is corrupt ({type(e).__name__}: {shorten(e, 80)}); {fix}") from None
        if not isinstance(d, dict):
            raise IndexFormatError(f"{where} holds {shorten(d)}, not a JSON object; {fix}")
        unknown = sorted(set(d) - _MANIFEST_KEYS)
        if unknown:
            raise IndexFormatError(f"{where} has unknown field(s) {shorten(unknown)}; {fix}")
        version = _field(d, "version", int, where, fix)
        if version != FORMAT_VERSION:
            raise IndexFormatError(
                f"{where} has format version {version}, this library reads {FORMAT_VERSION}; "
                "rebuild the index or install a matching infinigram")
        width = _field(d, "token_width", int, where, fix)
        token_dtype(width)
        m = cls(token_width=width, vocab_size=_field(d, "vocab_size", int, where, fix),
                tokenizer=_tokenizer_spec(d.get("tokenizer"), where, fix),
                shards=_shard_infos(d.get("shards"), where, fix),
                build=_field(d, "build", dict, where, fix, {}),
                library=_field(d, "library", str, where, fix, ""))
        if d.get("separator", m.separator) != m.separator:
            raise IndexFormatError(
                f"{where}: separator {shorten(d['separator'])} does not match token width "
                f"{m.token_width} (expected {m.separator}); {fix}")
        if not 0 < m.vocab_size <= m.separator:
            raise IndexFormatError(
                f"{where}: vocab_size {m.vocab_size} does not fit token width {m.token_width}; {fix}")
        if "checksum" in d and d["checksum"] != _checksum(d):
            raise IndexFormatError(
                f"{where}: its checksum does not match its contents (edited or damaged); {fix}")
        return m


def _checksum(d: dict) -> str:
    """sha256 of a manifest's fields but "checksum", serialized canonically."""
    body = {k: v for k, v in d.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def shorten(value, limit: int = 40) -> str:
    """repr of a (possibly huge) value cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _field(d, key: str, kind: type, where: str, fix: str, default=None):
    """``d[key]``, which must be of exactly ``kind`` (ints: >= 0, not bool)."""
    value = d.get(key, default) if isinstance(d, dict) else None
    if type(value) is not kind or (kind is int and value < 0):
        what = "a non-negative integer" if kind is int else f"a JSON {_JSON_NAMES[kind]}"
        raise IndexFormatError(f"{where}: {key} is {shorten(value)}, not {what}; {fix}")
    return value


_JSON_NAMES = {dict: "object", str: "string", list: "list"}


def _tokenizer_spec(spec, where: str, fix: str) -> dict:
    if not isinstance(spec, dict) or spec.get("kind") not in ("bytes", "sentencepiece", "hf",
                                                              "none"):
        raise IndexFormatError(f"{where}: unknown tokenizer {shorten(spec)}; {fix}")
    if has_file(spec):
        name = _field(spec, "file", str, where, fix)
        if name != os.path.basename(name) or name in ("", ".", ".."):
            raise IndexFormatError(f"{where}: tokenizer file {shorten(name)} is not a file "
                                   f"name inside the index; {fix}")
        if not _SHA256_RE.match(_field(spec, "sha256", str, where, fix)):
            raise IndexFormatError(f"{where}: tokenizer sha256 {shorten(spec['sha256'])} is "
                                   f"not 64 hex digits; {fix}")
    return dict(spec)


def has_file(spec: dict) -> bool:
    """Whether a tokenizer entry names a file of the index (and its sha256)."""
    return spec.get("kind") in ("sentencepiece", "hf")


def _shard_infos(shards, where: str, fix: str) -> tuple[ShardInfo, ...]:
    if not isinstance(shards, list):
        raise IndexFormatError(f"{where}: shards is {shorten(shards)}, not a JSON list; {fix}")
    infos = []
    for s, d in enumerate(shards):
        at = f"{where} shard {s}"
        files = _field(d, "files", dict, at, fix)
        for name, rec in files.items():
            m = _SHARD_FILE_RE.match(name)
            if not m or int(m.group(2)) != s or name != f"{m.group(1)}.{s}":
                raise IndexFormatError(
                    f"{at}: file {shorten(name)} is not a file of shard {s}; {fix}")
            _field(rec, "size", int, f"{at} {name}", fix)
            if not _SHA256_RE.match(_field(rec, "sha256", str, f"{at} {name}", fix)):
                raise IndexFormatError(f"{at} {name}: sha256 {shorten(rec['sha256'])} is not "
                                       f"64 hex digits; {fix}")
        infos.append(ShardInfo(_field(d, "tokens", int, at, fix), _field(d, "docs", int, at, fix),
                               files))
    return tuple(infos)


def write_manifest(directory: str | os.PathLike, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically (the last file of every build)."""
    final = Path(directory) / MANIFEST
    tmp = temp_path(final)
    tmp.write_text(manifest.to_json())
    commit(tmp, final)


def manifest_is_exact(directory: str | os.PathLike, manifest: Manifest) -> bool:
    """Whether ``manifest.json`` holds, byte for byte, what ``write_manifest``
    writes for ``manifest`` (so that it carries a checksum, and no byte of it
    escapes verification)."""
    return (Path(directory) / MANIFEST).read_bytes() == manifest.to_json().encode()


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


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_MAP_FAILED = ctypes.c_void_p(-1).value


def map_array(path: str | os.PathLike, dtype) -> np.ndarray:
    """The file as a read-only array, mapped without keeping a file
    descriptor (``np.memmap`` holds one per map: an index of many shards
    would run out). The mapping is released when the last view goes.
    Trailing bytes short of a whole item are left out."""
    raw = _map_bytes(path)
    item = np.dtype(dtype).itemsize
    return raw[:len(raw) - len(raw) % item].view(dtype)


def _map_bytes(path: str | os.PathLike) -> np.ndarray:
    """The whole file as a read-only uint8 array (see ``map_array``): one
    open, fstat and mmap, and the descriptor is closed at once."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return np.zeros(0, dtype=np.uint8)
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    finally:
        os.close(fd)
    if addr == _MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot map {path}: {os.strerror(err)}")
    buf = (ctypes.c_uint8 * size).from_address(addr)
    weakref.finalize(buf, _libc.munmap, addr, size).atexit = False  # exit unmaps it anyway
    array = np.frombuffer(buf, dtype=np.uint8)
    array.flags.writeable = False
    return array


def shard_numbers(directory: str | os.PathLike) -> dict[str, list[int]]:
    """Shard files present in a directory, by kind: {"table": [0, 1], ...}."""
    found: dict[str, list[int]] = {k: [] for k in SHARD_FILES}
    for name in os.listdir(directory):
        m = _SHARD_FILE_RE.match(name)
        if m:
            found[m.group(1)].append(int(m.group(2)))
    return {k: sorted(v) for k, v in found.items()}


def open_shard(directory: str | os.PathLike, s: int, width: int,
               sizes: dict[str, int] | None = None) -> Shard:
    """Map one shard's files and run the cheap checks: sizes agree with
    ``sizes`` (file name -> bytes, the manifest's record) when given, with
    the width and with each other; offsets and metadata offsets are sound.
    Each file is opened once (no separate existence or size checks) and no
    descriptor stays open."""
    directory = Path(directory)
    base = os.fspath(directory)

    def path(kind: str) -> str:  # a str: a Path per file would cost as much as its map
        return os.path.join(base, f"{kind}.{s}")

    raw = {}
    for kind in SHARD_FILES:
        try:
            raw[kind] = _map_bytes(path(kind))
        except FileNotFoundError:
            if kind in ("tokenized", "table", "offset"):
                raise IndexFormatError(
                    f"{path(kind)} is missing; rebuild the index (or run "
                    f"`infinigram index {directory}` if only table files are missing)") from None
    for kind, data in raw.items():
        expected = (sizes or {}).get(f"{kind}.{s}", len(data))
        if len(data) != expected:
            raise IndexFormatError(
                f"{path(kind)} has {len(data)} bytes but {MANIFEST} records {expected}: "
                "the file is truncated or from another build; rebuild the index")
    size = len(raw["tokenized"])
    if size % width:
        raise IndexFormatError(
            f"{path('tokenized')} has {size} bytes, not a multiple of the token width "
            f"{width}: the file is truncated or the width is wrong")
    off_size = len(raw["offset"])
    if off_size % 8:
        raise IndexFormatError(
            f"{path('offset')} has {off_size} bytes, not a multiple of 8: truncated")
    tokens = raw["tokenized"].view(token_dtype(width))
    offsets = raw["offset"].view(np.dtype("<u8"))
    check_offsets(tokens, offsets, path("offset"))
    pointer = pointer_width(size)
    table_size = len(raw["table"])
    if table_size != len(tokens) * pointer:
        raise IndexFormatError(
            f"{path('table')} has {table_size} bytes, expected {len(tokens) * pointer} "
            f"({len(tokens)} tokens x {pointer}-byte pointers): the file is truncated or from "
            f"another build; delete it and run `infinigram index {directory}`")
    has_meta = "metadata" in raw
    if has_meta != ("metaoff" in raw):
        raise IndexFormatError(
            f"shard {s} of {directory} has only one of metadata.{s} / metaoff.{s}; rebuild the index")
    metaoff = raw.get("metaoff")
    if metaoff is not None:
        if len(metaoff) % 8:
            raise _damaged(path("metaoff"), f"it has {len(metaoff)} bytes, not a multiple of 8")
        metaoff = metaoff.view(np.dtype("<u8"))
    shard = Shard(index=s, tokens=tokens, table=raw["table"], offsets=offsets,
                  metadata=raw.get("metadata"), metaoff=metaoff, width=width, pointer=pointer)
    if shard.metaoff is not None:
        if shard.metaoff.shape[0] != shard.n_docs:
            raise IndexFormatError(
                f"{path('metaoff')} lists {shard.metaoff.shape[0]} documents, offset.{s} "
                f"lists {shard.n_docs}: truncated or mismatched; rebuild the index")
        _check_metaoff(shard.metadata, shard.metaoff, path("metadata"), path("metaoff"))
    return shard


def _damaged(path: str | os.PathLike, what: str, fix: str | None = None) -> IndexFormatError:
    fix = fix or (f"rebuild the index (`infinigram verify {Path(path).parent}` lists every "
                  "damaged file)")
    return IndexFormatError(f"{path} is damaged: {what}; {fix}")


def _ascending(values: np.ndarray, path: str | os.PathLike, fix: str | None = None) -> None:
    """Raise unless ``values`` are strictly ascending (checked in chunks)."""
    for lo in range(0, max(len(values) - 1, 0), _CHUNK):
        part = np.asarray(values[lo:lo + _CHUNK + 1])
        down = part[1:] <= part[:-1]
        if down.any():
            i = lo + int(np.argmax(down)) + 1
            raise _damaged(path, f"entry {i} ({values[i]}) is not above entry {i - 1} "
                                 f"({values[i - 1]})", fix)


def check_offsets(tokens: np.ndarray, offsets: np.ndarray, path: str | os.PathLike,
                  fix: str | None = None) -> None:
    """The cheap checks of a shard's ``offset`` file against its tokens:
    the first document starts at byte 0, offsets ascend, and each is the
    byte offset of a separator. Vectorized, in chunks: O(documents).
    ``fix`` replaces the advice to rebuild the index."""
    width = tokens.itemsize
    sep = separator(width)
    if not len(tokens):
        if len(offsets):
            raise _damaged(path, f"it lists {len(offsets)} documents of an empty token file", fix)
        return
    if not len(offsets) or offsets[0] != 0:
        raise _damaged(path, "the first document does not start at byte 0", fix)
    if offsets[-1] >= tokens.nbytes:
        raise _damaged(path, f"its last offset {offsets[-1]} is past the end of the token "
                             f"file ({tokens.nbytes} bytes)", fix)
    _ascending(offsets, path, fix)
    shift = width.bit_length() - 1  # shifts and masks: much faster than // and % on uint64
    for lo in range(0, len(offsets), _CHUNK):
        part = np.asarray(offsets[lo:lo + _CHUNK])
        wrong = (part & (width - 1)).astype(bool) | (tokens[part >> shift] != sep)
        if wrong.any():
            i = lo + int(np.argmax(wrong))
            raise _damaged(path, f"entry {i} (byte {offsets[i]}) is not the offset of a separator:"
                                 f" the offsets or the token width ({width}) are wrong", fix)


def _check_metaoff(metadata: np.ndarray, metaoff: np.ndarray, meta_path: str | os.PathLike,
                   path: str | os.PathLike) -> None:
    """Cheap checks of ``metaoff`` against ``metadata``: lines start at 0,
    ascend, lie inside the file, and each follows a newline."""
    if not len(metaoff):
        if len(metadata):
            raise _damaged(path, f"it lists no documents but {os.path.basename(meta_path)} holds "
                                 f"{len(metadata)} bytes")
        return
    if metaoff[0] != 0 or metaoff[-1] >= len(metadata):
        raise _damaged(path, f"its offsets run from {metaoff[0]} to {metaoff[-1]}, outside "
                             f"[0, {len(metadata)}) of the metadata file")
    _ascending(metaoff, path)
    if metadata[-1] != 0x0A:
        raise _damaged(meta_path, "its last line does not end with a newline")
    for lo in range(1, len(metaoff), _CHUNK):
        part = np.asarray(metaoff[lo:lo + _CHUNK])
        wrong = metadata[part - 1] != 0x0A
        if wrong.any():
            i = lo + int(np.argmax(wrong))
            raise _damaged(path, f"entry {i} (byte {metaoff[i]}) does not start a line")


def check_against_manifest(directory: str | os.PathLike, manifest: Manifest) -> None:
    """Raise if files are missing or extra, from one listing of the
    directory (``open_shard`` checks each file's recorded size as it maps it)."""
    directory = Path(directory)
    present = set(os.listdir(directory))
    listed = {name for info in manifest.shards for name in info.files}
    for name in sorted(listed - present):
        raise IndexFormatError(
            f"{directory / name} is missing (listed in {MANIFEST}); rebuild the index")
    for name in sorted(present - listed):
        if _SHARD_FILE_RE.match(name):
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
        shards = [open_shard(directory, s, manifest.token_width,
                             {name: rec["size"] for name, rec in info.files.items()})
                  for s, info in enumerate(manifest.shards)]
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
