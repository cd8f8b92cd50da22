"""Building indexes: corpus files -> tokens -> suffix arrays -> an index dir.

A build writes into a hidden sibling directory and renames it to the output
only when every file and the manifest are complete, so a build that fails
or is killed never leaves a directory that opens. ``index_tables`` fills in
missing ``table.{s}`` files of an existing directory of ``tokenized.{s}``
files (each written under a temporary name, the manifest last).
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import __version__, corpus, format as fmt, tokenizer as tk
from .errors import BuildError, IndexFormatError
from .native import cover, merge, ptrs, sort
from .progress import Progress

_BUILDING_RE = re.compile(r"^\.(?P<name>.+)\.building-(?P<pid>\d+)$")


def build(inputs, output, *, tokenizer=None, train_vocab: int | None = None,
          text_field: str = "text", text_suffixes=(), shard_tokens: int = fmt.DEFAULT_SHARD_TOKENS,
          max_memory: int | None = None, threads: int | None = None,
          train_sample_bytes: int = 16 << 20, quiet: bool = False) -> Path:
    """Build an index of ``inputs`` (files or directories) at ``output``.

    Exactly one of ``tokenizer`` (a sentencepiece ``.model`` path, ``"bytes"``
    or a Tokenizer) and ``train_vocab`` (train a sentencepiece model of that
    vocabulary size on a sample of the corpus) is given. ``shard_tokens``
    bounds a shard's size; ``max_memory`` (bytes) bounds the suffix sort,
    which then sorts in parts merged from disk. Files ending in one of
    ``text_suffixes`` (e.g. ``".py"``) are read as one plain-text document
    each. Returns the output path.
    """
    output = Path(output)
    if (tokenizer is None) == (train_vocab is None):
        raise BuildError("give exactly one of tokenizer= (a .model path or 'bytes') and "
                         "train_vocab= (a vocabulary size to train)")
    if shard_tokens < 1:
        raise BuildError(f"shard_tokens must be positive, got {shard_tokens}")
    if output.exists():
        raise BuildError(errno.EEXIST, f"output {output} already exists; choose another "
                         "output directory or delete it first")
    text_suffixes = tuple(text_suffixes)
    files = corpus.list_files(inputs, text_suffixes)
    threads = threads or os.cpu_count() or 1
    progress = Progress(quiet)
    output.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(output)
    work = output.parent / f".{output.name}.building-{os.getpid()}"
    with _cleanup_on_failure(work):
        work.mkdir()
        if train_vocab is not None:
            tok = train_tokenizer(files, work / fmt.TOKENIZER_FILE, train_vocab,
                                  text_field=text_field, text_suffixes=text_suffixes,
                                  sample_bytes=train_sample_bytes, threads=threads, quiet=quiet)
        else:
            tok = tk.resolve_tokenizer(tokenizer)
            if tok.kind == "sentencepiece":
                shutil.copyfile(tok.model_path, work / fmt.TOKENIZER_FILE)
        width = fmt.token_width(tok.vocab_size)
        batches = corpus.iter_batches(files, text_field, text_suffixes=text_suffixes)
        counts = _write_tokens(batches, corpus.total_bytes(files), tok, width, shard_tokens,
                               threads, work, progress)
        for s in range(len(counts)):
            build_table(work, s, width, max_memory, progress)
        settings = {"inputs": [str(p) for p in inputs], "text_field": text_field,
                    "text_suffixes": list(text_suffixes),
                    "shard_tokens": shard_tokens, "max_memory": max_memory,
                    "tokenizer": str(tokenizer) if train_vocab is None else f"trained:{train_vocab}"}
        _finish(work, width, tok.vocab_size, tok.spec(), counts, settings, progress)
        os.rename(work, output)
    return output


def index_tables(directory, *, token_width: int | None = None, vocab_size: int | None = None,
                 tokenizer=None, max_memory: int | None = None, tokens_changed: bool = False,
                 quiet: bool = False) -> list[int]:
    """Build each missing ``table.{s}`` in ``directory`` and (re)write its manifest.

    For a directory without a manifest (for example infini-gram's tokenized
    output) ``token_width`` is required; ``vocab_size`` defaults to the
    largest id present plus one; ``tokenizer`` is ``"bytes"``, a ``.model``
    path, or None (ids-only queries). The token and offset files are
    checked against the width, each other and the vocabulary first. With a
    manifest, every file it records must still match its sha256 (a corrupt
    file is refused, never re-blessed) unless ``tokens_changed=True`` says
    the tokens were replaced on purpose; then they are checked as without
    one, and every table is sorted again. Returns the shards whose table was built.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise BuildError(errno.ENOENT, f"{directory} is not a directory; give the directory "
                         "holding tokenized.N files")
    manifest = None
    if (directory / fmt.MANIFEST).exists():
        manifest = fmt.read_manifest(directory)
        if token_width is not None and token_width != manifest.token_width:
            raise IndexFormatError(
                f"token width {token_width} was given but {directory / fmt.MANIFEST} records "
                f"{manifest.token_width}; leave the token width out")
        token_width = manifest.token_width
    if token_width is None:
        raise BuildError(f"{directory} has no {fmt.MANIFEST}; pass the token width (1, 2 or 4)")
    fmt.token_dtype(token_width)
    numbers = fmt.shard_numbers(directory)
    shards = numbers["tokenized"]
    if not shards or shards != list(range(len(shards))):
        raise IndexFormatError(f"{directory}: tokenized files {shards} are not tokenized.0..N")
    for s in shards:
        if not fmt.shard_path(directory, "offset", s).exists():
            raise IndexFormatError(f"{fmt.shard_path(directory, 'offset', s)} is missing; "
                                   "offsets come with the tokenized file, re-tokenize the corpus")
    known = {}
    if manifest is not None and not tokens_changed:
        known = _check_recorded(directory, manifest, len(shards))
    else:
        top = _check_tokens(directory, shards, token_width)
    progress = Progress(quiet)
    built = [s for s in shards if tokens_changed
             or not fmt.shard_path(directory, "table", s).exists()]
    for s in built:
        build_table(directory, s, token_width, max_memory, progress)
    if manifest is None:
        tok = tk.resolve_tokenizer(tokenizer) if tokenizer is not None else None
        if tok is not None and tok.kind == "sentencepiece":
            target = directory / fmt.TOKENIZER_FILE
            if Path(tok.model_path).resolve() != target.resolve():
                tmp = fmt.temp_path(target)
                shutil.copyfile(tok.model_path, tmp)
                fmt.commit(tmp, target)
        spec = tok.spec() if tok is not None else {"kind": "none"}
        if vocab_size is None:
            vocab_size = tok.vocab_size if tok is not None else max(top + 1, 1)
        _check_vocab(vocab_size, top, token_width, directory)
        settings = {"indexed": "infinigram index", "max_memory": max_memory}
    elif built or not fmt.manifest_is_exact(directory, manifest):
        spec, vocab_size, settings = manifest.tokenizer, manifest.vocab_size, manifest.build
        if tokens_changed:
            _check_vocab(vocab_size, top, token_width, directory)
    else:
        return built
    counts = [(_n_tokens(directory, s, token_width), _n_docs(directory, s)) for s in shards]
    _finish(directory, token_width, vocab_size, spec, counts, settings, progress, known)
    return built


_CHANGED = "pass --tokens-changed (tokens_changed=True) if the tokens were replaced on purpose"


def _check_recorded(directory: Path, manifest: fmt.Manifest, n_shards: int) -> dict:
    """Check every shard file against the sha256 the manifest records (a
    missing table excepted: it is about to be built); return the records."""
    if len(manifest.shards) != n_shards:
        raise IndexFormatError(
            f"{directory} holds {n_shards} tokenized files, {fmt.MANIFEST} records "
            f"{len(manifest.shards)} shards; rebuild the index, or {_CHANGED}")
    records = {name: rec for info in manifest.shards for name, rec in info.files.items()}
    for s in range(n_shards):
        for kind in fmt.SHARD_FILES:
            path = fmt.shard_path(directory, kind, s)
            if path.exists() and path.name not in records:
                raise IndexFormatError(
                    f"{path} is not recorded in {fmt.MANIFEST}; move it away, or {_CHANGED}")
    for name, rec in sorted(records.items()):
        path = directory / name
        if not path.exists() and name.startswith("table."):
            continue
        if not path.exists() or fmt.sha256_file(path) != rec["sha256"]:
            state = "is missing" if not path.exists() else \
                f"differs from the sha256 {fmt.MANIFEST} records: it is corrupt or was replaced"
            fix = (f"delete it and run `infinigram index {directory}` again"
                   if name.startswith("table.") else
                   f"rebuild the index from the corpus with `infinigram build`, or {_CHANGED}")
            raise IndexFormatError(f"{path} {state}; {fix}")
    return {name: rec for name, rec in records.items() if (directory / name).exists()}


def _check_tokens(directory: Path, shards: list[int], width: int) -> int:
    """Check each shard's token and offset files against the token width and
    each other (the open checks, and the separator count); return the
    largest id present (-1 if none)."""
    fix = ("give the token width the files were written with (--token-width), and the "
           "offset file that belongs to the token file")
    dtype, sep, top = fmt.token_dtype(width), fmt.separator(width), -1
    for s in shards:
        path, off_path = (fmt.shard_path(directory, k, s) for k in ("tokenized", "offset"))
        for p, unit in ((path, width), (off_path, 8)):
            size = p.stat().st_size
            if size % unit:
                raise IndexFormatError(f"{p} has {size} bytes, not a multiple of {unit} "
                                       f"(bytes per entry): {fix}, or the file is truncated")
        tokens, offsets = fmt.map_array(path, dtype), fmt.map_array(off_path, np.dtype("<u8"))
        fmt.check_offsets(tokens, offsets, off_path, fix)
        seps = 0
        for lo in range(0, len(tokens), _SCAN):
            part = tokens[lo:lo + _SCAN]
            is_sep = part == sep
            seps += int(is_sep.sum())
            if not is_sep.all():
                top = max(top, int(part[~is_sep].max()))
        if seps != len(offsets):
            raise IndexFormatError(f"{path} holds {seps} separators, {off_path} lists "
                                   f"{len(offsets)} documents: {fix}")
    return top


_SCAN = 1 << 26
"""Tokens per step of ``_check_tokens`` (bounds its temporary memory)."""


def _check_vocab(vocab, top: int, width: int, directory: Path) -> None:
    """Raise unless ``vocab`` is an int in (largest id present, separator]."""
    if isinstance(vocab, (bool, np.bool_)) or not isinstance(vocab, (int, np.integer)) \
            or not top < vocab <= fmt.separator(width):
        raise IndexFormatError(
            f"vocabulary size {vocab!r} does not fit the tokens of {directory}: it must be an "
            f"integer above the largest id present ({top}) and at most {fmt.separator(width)} "
            f"(the separator of token width {width})")


def build_table(directory: Path, s: int, width: int, max_memory: int | None,
                progress: Progress) -> None:
    """Sort the suffixes of ``tokenized.{s}`` and write ``table.{s}`` atomically."""
    src = fmt.shard_path(directory, "tokenized", s)
    size = src.stat().st_size
    n = size // width
    pointer = fmt.pointer_width(size)
    final = fmt.shard_path(directory, "table", s)
    tmp = fmt.temp_path(final)
    tokens = np.memmap(src, dtype=fmt.token_dtype(width), mode="r") if n else \
        np.zeros(0, fmt.token_dtype(width))
    with _disk_errors(tmp):
        parts = _plan(n, width, max_memory)
        if len(parts) <= 1:  # packed in the suffix array's own memory: no second copy
            progress.start(f"sort shard {s}")
            sa = sort.suffix_array(tokens)
            if pointer > sa.itemsize:
                sa = sa.astype(np.int64)
            with open(tmp, "wb") as f:
                f.write(ptrs.pack_in_place(sa, width, pointer))
            del sa
        else:
            out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=n * pointer)
            _sort_in_parts(tokens, parts, pointer, out, directory, progress, f"sort shard {s}")
            out.flush()
            del out
        fmt.commit(tmp, final)
    progress.update(n, n, "tok", force=True)
    progress.finish(f"sorted {n} tokens")


def _plan(n: int, width: int, max_memory: int | None) -> list[tuple[int, int]]:
    if not max_memory:
        return [(0, n)]
    try:
        return merge.plan_parts(n, width, max_memory)
    except ValueError as e:
        raise BuildError(f"--max-memory: {e}") from None


def _sort_in_parts(tokens, parts, pointer, out, directory, progress, phase) -> None:
    """Rank the shard's difference-cover sample, sort each part into one spill
    file (each at its own positions), then merge the parts into ``out``;
    each step is a progress phase."""
    n = len(tokens)
    spill = Path(tempfile.mkdtemp(prefix=".parts-", dir=directory))
    try:
        path = spill / "parts"
        progress.start(f"{phase}: rank sample")
        sample = cover.rank_sample(tokens)
        progress.finish(f"ranked {int((sample[0] >= 0).sum())} sampled suffixes")
        progress.start(f"{phase}: sort {len(parts)} parts")
        with open(path, "wb") as f:
            for lo, hi in parts:
                merge.sort_part(tokens, lo, hi, sample).tofile(f)
                progress.update(hi, n, "tok")
        progress.finish(f"sorted {len(parts)} parts")
        flat = np.memmap(path, dtype=sort.sa_dtype(n), mode="r")  # sort_part's dtype
        progress.start(f"{phase}: merge")
        merge.merge_parts(tokens, flat, [lo for lo, _ in parts] + [n], sample, pointer, out,
                          lambda done: progress.update(done, n, "tok"))
        del flat
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def train_tokenizer(files, model_path, vocab: int, *, text_field: str = "text",
                    text_suffixes=(), sample_bytes: int = 16 << 20, threads: int | None = None,
                    quiet: bool = True) -> tk.Tokenizer:
    """Train a sentencepiece model on about ``sample_bytes`` of the corpus,
    taken as every k-th document so a sorted corpus is sampled evenly."""
    progress = Progress(quiet)
    progress.start("train tokenizer")
    stride = max(1, -(-corpus.total_bytes(files) // sample_bytes))

    def sample():
        i = 0
        for batch in corpus.iter_batches(files, text_field, text_suffixes=text_suffixes):
            for text in batch.texts:
                if i % stride == 0:
                    yield text
                i += 1

    tok = tk.train_sentencepiece(sample(), vocab, model_path, sample_bytes=sample_bytes,
                                 threads=threads)
    progress.finish(f"trained a {vocab}-piece sentencepiece model")
    return tok


class _ShardWriter:
    """Appends documents to the files of consecutive shards."""

    def __init__(self, work: Path, width: int, shard_tokens: int):
        self.work, self.width, self.limit = work, width, shard_tokens
        self.sep = np.array([fmt.separator(width)], dtype=fmt.token_dtype(width))
        self.counts: list[tuple[int, int]] = []
        self.files = None

    def _open(self) -> None:
        s = len(self.counts)
        self.files = {k: open(fmt.shard_path(self.work, k, s), "wb", buffering=1 << 22)
                      for k in fmt.SHARD_FILES}
        self.counts.append((0, 0))
        self.tok_bytes = self.meta_bytes = 0

    def add(self, ids: np.ndarray, meta: str) -> None:
        tokens, docs = self.counts[-1] if self.files else (0, 0)
        if self.files is None or (tokens and tokens + 1 + len(ids) > self.limit):
            self.close()
            self._open()
            tokens, docs = 0, 0
        f = self.files
        f["offset"].write(np.uint64(self.tok_bytes).tobytes())
        f["metaoff"].write(np.uint64(self.meta_bytes).tobytes())
        f["tokenized"].write(self.sep.tobytes())
        f["tokenized"].write(ids.astype(self.sep.dtype, copy=False).tobytes())
        line = (meta + "\n").encode("utf-8")
        f["metadata"].write(line)
        self.tok_bytes += (1 + len(ids)) * self.width
        self.meta_bytes += len(line)
        self.counts[-1] = (tokens + 1 + len(ids), docs + 1)

    def close(self) -> None:
        if self.files:
            for f in self.files.values():
                f.close()
        self.files = None


def _write_tokens(batches, total, tok, width, shard_tokens, threads, work, progress):
    progress.start("tokenize")
    tokens = 0
    writer = _ShardWriter(work, width, shard_tokens)
    with _disk_errors(work):
        try:
            stream = tk.encode_stream(batches, tok, threads)
            for batch, encoded in stream:
                for ids, meta in zip(encoded, batch.metadata):
                    writer.add(ids, meta)
                    tokens += len(ids)
                progress.update(batch.done_bytes, total, "B")
            if not writer.counts:
                raise BuildError("the corpus holds no documents; give files with at least "
                                 "one record")
        finally:
            writer.close()
    progress.finish(f"{tokens} tokens in {sum(d for _, d in writer.counts)} documents, "
                    f"{len(writer.counts)} shard(s)")
    return writer.counts


def _finish(directory, width, vocab, spec, counts, settings, progress, known=None) -> None:
    """Checksum every shard file (reusing the records in ``known`` of files
    already checked against them) and write the manifest (last)."""
    progress.start("checksum")
    shards = []
    for s, (n_tokens, n_docs) in enumerate(counts):
        files = {}
        for kind in fmt.SHARD_FILES:
            path = fmt.shard_path(directory, kind, s)
            if known and path.name in known:
                files[path.name] = known[path.name]
            elif path.exists():
                files[path.name] = {"size": path.stat().st_size, "sha256": fmt.sha256_file(path)}
        shards.append(fmt.ShardInfo(n_tokens, n_docs, files))
    manifest = fmt.Manifest(token_width=width, vocab_size=vocab, tokenizer=spec,
                            shards=tuple(shards), build=settings,
                            library=f"infinigram {__version__}")
    with _disk_errors(directory):
        fmt.write_manifest(directory, manifest)
    progress.finish("manifest written")


def _n_tokens(directory, s, width) -> int:
    return fmt.shard_path(directory, "tokenized", s).stat().st_size // width


def _n_docs(directory, s) -> int:
    return fmt.shard_path(directory, "offset", s).stat().st_size // 8


def _remove_stale_builds(output: Path) -> None:
    """Delete temporary directories left by killed builds of the same output."""
    for entry in output.parent.iterdir():
        m = _BUILDING_RE.match(entry.name)
        if m and m.group("name") == output.name and not _alive(int(m.group("pid"))):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


@contextmanager
def _cleanup_on_failure(work: Path):
    try:
        yield
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


@contextmanager
def _disk_errors(path):
    """Turn a full disk into a BuildError that names the place and the fix."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BuildError(errno.ENOSPC, f"disk full while writing under {path}: free some "
                             "space or choose another output directory; the partial build "
                             "was removed") from e
        raise
