"""Building indexes: corpus files -> tokens -> suffix arrays -> an index dir.

A build writes into a hidden sibling directory and renames it to the output
only when every file and the manifest are complete, so a build that fails
or is killed never leaves a directory that opens. ``index_tables`` fills in
missing ``table.{s}`` files of an existing directory of ``tokenized.{s}``
files (each written under a temporary name, the manifest last).
"""
from __future__ import annotations

import concurrent.futures as cf
import ctypes
import errno
import json
import mmap
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import __version__, args, corpus, format as fmt, storage, tokenizer as tk
from .errors import ArgumentError, BuildError, CorpusError, IndexFormatError
from .native import cover, merge, pool, ptrs, ranges, sort
from .native.keys import narrow_ids, narrowed
from .pretokenized import IdsInput
from .progress import Progress

_BUILDING_RE = re.compile(r"^\.(?P<name>.+)\.building-(?P<pid>\d+)$")


def build(inputs, output, *, tokenizer=None, vocab_size: int | None = None,
          text_field: str = "text", text_suffixes=(), shard_tokens: int = fmt.DEFAULT_SHARD_TOKENS,
          max_memory: int | None = None, threads: int | None = None,
          train_sample_bytes: int = 16 << 20, quiet: bool = False, ray=None,
          ids_field: str | None = None, ids_separator: int | None = None,
          token_width: int | None = None) -> Path:
    """Build an index of ``inputs`` (files or directories) at ``output``.

    Exactly one of ``tokenizer`` (a sentencepiece ``.model`` path, a Hugging
    Face ``tokenizer.json`` or a directory holding one, ``"bytes"`` or a
    Tokenizer; the token width follows its vocabulary: u32 above 65,535)
    and ``vocab_size`` (train a sentencepiece model of that vocabulary size
    on a sample of the corpus) is given. ``shard_tokens``
    bounds a shard's size; ``max_memory`` (bytes, or a size such as ``"8G"``)
    bounds the suffix sort, which then sorts in parts merged from disk
    (None: no bound). Files ending in one of ``text_suffixes`` (e.g.
    ``".py"``) are read as one plain-text document each. ``threads``
    (default: every core this process may use) tokenize and sort. With
    ``ray`` (True, or a cluster address) tokenizing and sorting run as Ray
    tasks instead (:mod:`infinigram.cluster`; ``output`` must be on a file
    system every node shares); the index is the same bytes.

    Pre-tokenized input (:mod:`infinigram.pretokenized`: ``ids_field``
    names an id-list field, or the inputs are .npy/.u16/.u32/.bin files,
    split at ``ids_separator``) is indexed as given, locally; ``tokenizer``
    is then optional (the one the ids came from, for text queries). The
    token width is ``token_width`` if given, else the tokenizer's, else the
    one the largest id needs (a first pass finds it). Returns the output
    path.
    """
    output = args.path("output", output)
    threads = args.threads(threads)
    token_width = args.optional_integer("token_width", token_width, low=1, high=4,
                                        error=ArgumentError)
    if token_width is not None:
        fmt.token_dtype(token_width)
    ids = IdsInput(ids_field, args.optional_integer(
        "ids_separator", ids_separator, low=-(1 << 63), error=ArgumentError), token_width)
    vocab_size = args.optional_integer("vocab_size", vocab_size, low=1, high=tk.MAX_VOCAB,
                                        error=ArgumentError)
    shard_tokens = args.integer("shard_tokens", shard_tokens, low=1, error=ArgumentError)
    max_memory = args.optional_size("max_memory", max_memory)
    train_sample_bytes = args.size_bytes("train_sample_bytes", train_sample_bytes)
    text_suffixes = args.strings("text_suffixes", text_suffixes)
    if not isinstance(text_field, str):
        raise ArgumentError(f"text_field={text_field!r:.60} must be a str, e.g. 'text'")
    if output.exists():
        raise BuildError(errno.EEXIST, f"output {output} already exists; choose another "
                         "output directory or delete it first")
    files = corpus.list_files(inputs, text_suffixes)
    pretok = corpus.pretokenized(files, ids_field)
    if pretok and (vocab_size is not None or (ray is not None and ray is not False)):
        raise BuildError("pre-tokenized input is indexed as given, locally: leave out "
                         "vocab_size= (--train-tokenizer) and ray= (--ray)")
    if not pretok and (tokenizer is None or tokenizer == "none") == (vocab_size is None):
        raise BuildError("give exactly one of tokenizer= (a .model path, a tokenizer.json or "
                         "'bytes') and vocab_size= (a vocabulary size to train)")
    progress = Progress(quiet)
    output.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(output)
    work = output.parent / f".{output.name}.building-{os.getpid()}"
    with _cleanup_on_failure(work), storage.disk_errors(work):
        work.mkdir()
        if vocab_size is not None:
            tok = train_tokenizer(files, work / fmt.TOKENIZER_FILE, vocab_size,
                                  text_field=text_field, text_suffixes=text_suffixes,
                                  sample_bytes=train_sample_bytes, threads=threads, quiet=quiet)
        else:
            tok = tk.resolve_tokenizer(tokenizer)
            _copy_tokenizer(tok, work)
        width = _width(token_width, tok, files, ids)
        check = _IdCheck(width, tok.vocab_size) if pretok else None
        if ray is not None and ray is not False:
            from . import cluster
            counts = cluster.build_shards(ray, files, work, tok, width, text_field, text_suffixes,
                                          shard_tokens, max_memory, threads, progress)
        else:
            batches = corpus.iter_batches(files, text_field, text_suffixes=text_suffixes, ids=ids)
            counts = _write_tokens(check(batches) if check else batches,
                                   corpus.total_bytes(files), None if check else tok, width,
                                   shard_tokens, threads, work, progress)
            for s in range(len(counts)):
                build_table(work, s, width, max_memory, progress, threads)
        if not counts:
            raise BuildError("the corpus holds no documents; give files with at least one record")
        settings = {"inputs": [str(p) for p in inputs], "text_field": text_field,
                    "text_suffixes": list(text_suffixes),
                    "shard_tokens": shard_tokens, "max_memory": max_memory,
                    "tokenizer": str(tokenizer) if vocab_size is None else f"trained:{vocab_size}"}
        if pretok:
            settings.update(ids_field=ids_field, ids_separator=ids_separator,
                            token_width=token_width)
        vocab = tok.vocab_size if tok.vocab_size is not None else max(check.top + 1, 1)
        _finish(work, width, vocab, tok.spec(), counts, settings, progress)
        os.rename(work, output)
    return output


def _width(token_width: int | None, tok: tk.Tokenizer, files, ids: IdsInput) -> int:
    """The index's token width: as given (and wide enough for the
    tokenizer), else the tokenizer's, else the largest id's (a pass over
    the pre-tokenized input)."""
    if tok.vocab_size is not None:
        need = fmt.token_width(tok.vocab_size)
        if token_width is not None and token_width < need:
            raise ArgumentError(f"token width {token_width} is too narrow for the tokenizer's "
                                f"{tok.vocab_size} ids; give {need} or more, or leave it out")
        return token_width or need
    if token_width is not None:
        return token_width
    check = _IdCheck(4, None)
    for _ in check(corpus.iter_batches(files, ids=ids)):
        pass
    return fmt.token_width(check.top + 1) if check.top >= 0 else 1


class _IdCheck:
    """Passes batches of pre-tokenized documents through, refusing an id
    that is negative, not below the tokenizer's vocabulary, or does not fit
    the token width (the separator excluded); ``top`` is the largest id seen."""

    def __init__(self, width: int, vocab: int | None):
        self.width, self.vocab, self.top = width, vocab, -1
        self.limit = min(fmt.separator(width), vocab if vocab is not None else fmt.separator(width))

    def __call__(self, batches):
        for batch in batches:
            if batch.ids:
                flat = np.concatenate(batch.ids)
                bad = np.flatnonzero((flat < 0) | (flat >= self.limit))
                if len(bad):
                    self._refuse(batch, int(flat[bad[0]]), int(bad[0]))
                if len(flat):
                    self.top = max(self.top, int(flat.max()))
            yield batch

    def _refuse(self, batch, value: int, at: int) -> None:
        doc = int(np.searchsorted(np.cumsum([len(a) for a in batch.ids]), at, side="right"))
        _, source = corpus.split_metadata(json.loads(batch.metadata[doc]))
        where = f"{source['path']} document {source['linenum']}"
        if value < 0:
            why = "is negative; token ids are integers from 0"
        elif self.vocab is not None and value >= self.vocab:
            why = (f"is not below the tokenizer's vocabulary size {self.vocab}; give the "
                   "tokenizer the ids were made with, or none")
        elif self.width < 4:
            why = (f"does not fit token width {self.width} (ids must be below "
                   f"{fmt.separator(self.width)}, its separator); pass --token-width 4 "
                   "(token_width=4), or leave the width out to fit the ids")
        else:
            why = (f"does not fit token width 4 (ids must be below {fmt.separator(4)}, its "
                   "separator); remap the ids")
        raise CorpusError(f"{where}: token id {value} {why}")


def index_tables(directory, *, token_width: int | None = None, vocab_size: int | None = None,
                 tokenizer=None, max_memory: int | None = None, threads: int | None = None,
                 tokens_changed: bool = False,
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
    one, and every table is sorted again. ``threads`` sort (default: every
    core this process may use). Returns the shards whose table was built.
    """
    directory = args.path("directory", directory)
    threads = args.threads(threads)
    token_width = args.optional_integer("token_width", token_width, low=1, high=4,
                                        error=ArgumentError)
    max_memory = args.optional_size("max_memory", max_memory)
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
    vocab_size = args.optional_integer("vocab_size", vocab_size, low=1,
                                       high=fmt.separator(token_width), error=ArgumentError)
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
        build_table(directory, s, token_width, max_memory, progress, threads)
    if manifest is None:
        tok = tk.resolve_tokenizer(tokenizer) if tokenizer is not None else None
        if tok is not None:
            _copy_tokenizer(tok, directory)
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


def _copy_tokenizer(tok: tk.Tokenizer, directory: Path) -> None:
    """Copy the tokenizer's file (if it has one) into ``directory`` atomically."""
    if tok.file is None:
        return
    target = directory / tok.file
    if Path(tok.source).resolve() != target.resolve():
        tmp = fmt.temp_path(target)
        shutil.copyfile(tok.source, tmp)
        fmt.commit(tmp, target)


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


def _check_vocab(vocab: int, top: int, width: int, directory: Path) -> None:
    """Raise unless ``vocab`` is in (largest id present, separator]."""
    if not top < vocab <= fmt.separator(width):
        raise IndexFormatError(
            f"vocabulary size {vocab!r} does not fit the tokens of {directory}: it must be an "
            f"integer above the largest id present ({top}) and at most {fmt.separator(width)} "
            f"(the separator of token width {width})")


def build_table(directory: Path, s: int, width: int, max_memory: int | None,
                progress: Progress, threads: int = 1) -> None:
    """Sort the suffixes of ``tokenized.{s}`` on ``threads`` threads and write
    ``table.{s}`` atomically."""
    src = fmt.shard_path(directory, "tokenized", s)
    size = src.stat().st_size
    n = size // width
    pointer = fmt.pointer_width(size)
    final = fmt.shard_path(directory, "table", s)
    tmp = fmt.temp_path(final)
    tokens = np.memmap(src, dtype=fmt.token_dtype(width), mode="r") if n else \
        np.zeros(0, fmt.token_dtype(width))
    parts = _plan(n, width, max_memory, threads)
    by_ranges = max_memory is None and threads > 1 and n >= merge.PARALLEL_TOKENS
    sortable = tokens  # what the in-memory sorts read: the same suffix order in fewer bytes
    if (by_ranges or len(parts) <= 1) and width == 4 and narrow_ids(tokens):
        sortable = narrowed(tokens)
    try:
        with storage.disk_errors(tmp):
            with open(tmp, "wb+") as f:
                storage.reserve(f, n * pointer)  # a full disk fails here, before the sort
                done = by_ranges and _sort_by_ranges(sortable, tmp, width, pointer, progress,
                                                     f"sort shard {s}", threads)
                if not done and len(parts) <= 1:  # packed in the SA's own memory
                    progress.start(f"sort shard {s}")
                    sa = sort.suffix_array(sortable)
                    if pointer > sa.itemsize:
                        sa = sa.astype(np.int64)
                    with storage.UncachedWriter(tmp) as table:
                        table.write(ptrs.pack_in_place(sa, width, pointer), 0)
                    del sa
                elif not done:
                    with storage.mapped(f, n * pointer) as out:
                        _sort_in_parts(tokens, parts, pointer, out, directory, progress,
                                       f"sort shard {s}", threads)
                        out.flush()
            fmt.commit(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    progress.update(n, n, "tok", force=True)
    progress.finish(f"sorted {n} tokens")


def _sort_by_ranges(tokens, path: Path, width: int, pointer: int, progress, phase: str,
                    threads: int) -> bool:
    """The table into the file at ``path`` (its space reserved) by output
    ranges (:mod:`native.ranges`), each range written around the page cache
    as it is sorted; False when long repeats make another sort the better one."""
    n = len(tokens)
    progress.start(f"{phase}: rank sample")
    sample = cover.rank_sample(tokens, threads=threads, report=lambda done, total:
                               progress.update(done * n // max(total, 1), n, "tok"))
    progress.finish(f"ranked {int((sample[0] >= 0).sum())} sampled suffixes")
    progress.start(f"{phase}: classify")
    which = ranges.classify_all(tokens, sample, threads, lambda k: progress.update(k, n, "tok"))
    progress.finish(f"cut into {int(which.max(initial=0)) + 1} ranges")
    progress.start(f"{phase}: sort ranges")
    with storage.UncachedWriter(path) as table:
        ok = ranges.sort_ranges(tokens, sample, which, pointer,
                                lambda i, data: table.write(data, i * pointer), threads,
                                lambda k: progress.update(k, n, "tok"), width, storage.ALIGN)
    progress.finish("sorted" if ok else "long repeats: sorting another way")
    return ok


def _plan(n: int, width: int, max_memory: int | None, threads: int) -> list[tuple[int, int]]:
    try:
        return merge.plan_parts(n, width, max_memory, threads)
    except ValueError as e:
        raise BuildError(f"--max-memory: {e}") from None


def _sort_in_parts(tokens, parts, pointer, out: mmap.mmap, directory, progress, phase,
                   threads=1) -> None:
    """Rank the shard's difference-cover sample, sort the parts into one spill
    file (each at its own positions, ``threads`` parts at once, written
    around the page cache), then merge the parts into the table map ``out``
    (``threads`` output ranges at once), letting go of the pages of both maps
    behind the merge (the spill's leave the page cache too), so that neither
    file's pages add up in memory; each step is a progress phase, its
    progress summed over its threads."""
    n = len(tokens)
    dtype = sort.sa_dtype(n)  # sort_part's
    _unmap_freed_blocks()
    spill = Path(tempfile.mkdtemp(prefix=".parts-", dir=directory))
    try:
        path = spill / "parts"
        progress.start(f"{phase}: rank sample")
        sample = cover.rank_sample(  # progress: tokens whose sampled blocks are named
            tokens, threads=threads, report=lambda done, total: progress.update(
                done * n // max(total, 1), n, "tok"))
        progress.finish(f"ranked {int((sample[0] >= 0).sum())} sampled suffixes")
        progress.start(f"{phase}: sort {len(parts)} parts")
        with open(path, "wb") as f:
            storage.reserve(f, n * dtype.itemsize)
        with storage.UncachedWriter(path) as parts_out:

            def job(lo, hi):
                def sort_one(tick):
                    part = merge.sort_part(tokens, lo, hi, sample, parallel=threads == 1)
                    parts_out.write(part, lo * dtype.itemsize)
                    tick(hi - lo)
                return sort_one

            pool.run([job(lo, hi) for lo, hi in parts], min(threads, len(parts)),
                     lambda done: progress.update(done, n, "tok"))
        progress.finish(f"sorted {len(parts)} parts")
        size = dtype.itemsize
        with open(path, "rb") as f, storage.mapped(f, write=False) as spilled:

            def read(a, b):  # parts' entries [a, b) read: out of this process and the cache
                storage.release(spilled, a * size, b * size, f.fileno())

            def done(w, nxt, start, cursors):
                storage.release(out, w * pointer, nxt * pointer)
                for a, b in zip(start.tolist(), cursors.tolist()):
                    read(a, b)
            progress.start(f"{phase}: merge")
            merge.merge_parts(tokens, np.frombuffer(spilled, dtype=dtype),
                              [lo for lo, _ in parts] + [n], sample, pointer,
                              np.frombuffer(out, dtype=np.uint8),
                              lambda k: progress.update(k, n, "tok"), threads, done, read)
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _unmap_freed_blocks() -> None:
    """Have glibc's malloc hand every freed block of 1 MiB or more back to
    the system at once: a fixed M_MMAP_THRESHOLD (by default it rises after
    the first large free, and the sorted parts' memory would then stay in
    this process through the merge). Process-wide; a no-op off glibc."""
    try:
        ctypes.CDLL(None).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def train_tokenizer(files, model_path, vocab_size: int, *, text_field: str = "text",
                    text_suffixes=(), sample_bytes: int = 16 << 20, threads: int | None = None,
                    quiet: bool = True) -> tk.Tokenizer:
    """Train a sentencepiece model on about ``sample_bytes`` of the corpus,
    taken as every k-th document so a sorted corpus is sampled evenly."""
    vocab_size = args.integer("vocab_size", vocab_size, low=1, high=tk.MAX_VOCAB, error=ArgumentError)
    sample_bytes = args.size_bytes("sample_bytes", sample_bytes)
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

    tok = tk.train_sentencepiece(sample(), vocab_size, model_path, sample_bytes=sample_bytes,
                                 threads=threads)
    progress.finish(f"trained a {vocab_size}-piece sentencepiece model")
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
        line = (meta + "\n").encode("utf-8")
        storage.write_all(f["offset"], np.uint64(self.tok_bytes).tobytes())
        storage.write_all(f["metaoff"], np.uint64(self.meta_bytes).tobytes())
        storage.write_all(f["tokenized"], self.sep.tobytes()
                          + ids.astype(self.sep.dtype, copy=False).tobytes())
        storage.write_all(f["metadata"], line)
        self.tok_bytes += (1 + len(ids)) * self.width
        self.meta_bytes += len(line)
        self.counts[-1] = (tokens + 1 + len(ids), docs + 1)

    def close(self) -> None:
        files, self.files = self.files or {}, None
        for f in files.values():
            with storage.disk_errors(f.name):
                f.close()


def _write_tokens(batches, total, tok, width, shard_tokens, threads, work, progress):
    """Write the batches' documents into shards, encoded by ``tok`` (None:
    the batches hold ids); returns each shard's (tokens, documents)."""
    progress.start("tokenize" if tok is not None else "write ids")
    tokens = 0
    writer = _ShardWriter(work, width, shard_tokens)
    try:
        stream = tk.encode_stream(batches, tok, threads) if tok is not None else \
            ((b, b.ids) for b in batches)
        for batch, encoded in stream:
            for ids, meta in zip(encoded, batch.metadata):
                writer.add(ids, meta)
                tokens += len(ids)
            progress.update(batch.done_bytes, total, "B")
    finally:
        writer.close()
    progress.finish(f"{tokens} tokens in {sum(d for _, d in writer.counts)} documents, "
                    f"{len(writer.counts)} shard(s)")
    return writer.counts


def _finish(directory, width, vocab, spec, counts, settings, progress, known=None) -> None:
    """Checksum every shard file (reusing the records in ``known`` of files
    already checked against them) and write the manifest (last)."""
    progress.start("checksum")
    paths = [[p for kind in fmt.SHARD_FILES
              if (p := fmt.shard_path(directory, kind, s)).exists()] for s in range(len(counts))]
    todo = [p for ps in paths for p in ps if not (known and p.name in known)]
    with cf.ThreadPoolExecutor(args.threads(None)) as ex:  # hashlib lets go of the GIL
        sums = dict(zip(todo, ex.map(_checksum, todo)))
    shards = []
    for ps, (n_tokens, n_docs) in zip(paths, counts):
        files = {p.name: known[p.name] if p not in sums else
                 {"size": p.stat().st_size, "sha256": sums[p]} for p in ps}
        shards.append(fmt.ShardInfo(n_tokens, n_docs, files))
    manifest = fmt.Manifest(token_width=width, vocab_size=vocab, tokenizer=spec,
                            shards=tuple(shards), build=settings,
                            library=f"infinigram {__version__}")
    try:
        with storage.disk_errors(directory / fmt.MANIFEST):
            fmt.write_manifest(directory, manifest)
    except BaseException:
        fmt.temp_path(directory / fmt.MANIFEST).unlink(missing_ok=True)
        raise
    progress.finish("manifest written")


def _checksum(path: Path) -> str:
    """A shard file's sha256; a table's read around the page cache (the build
    wrote it that way; nothing here reads it again)."""
    return fmt.sha256_file(path, storage.uncached_chunks if path.name.startswith("table.")
                           else None)


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
