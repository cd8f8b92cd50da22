"""Tokenizers: UTF-8 bytes, sentencepiece or Hugging Face ``tokenizer.json``,
plus pipelined batch encoding.

Every tokenizer encodes without BOS/EOS (or any other special token a
Hugging Face post-processor would add) and returns ``uint32`` ids.
``encode_batch`` returns one array per text (what sentencepiece produces
without a copy); the builder lays them out between separators itself.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import queue
import re
import threading
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import sentencepiece as spm

from . import args
from .bpe import BPEEncoder
from .hfbpe import HFBPEEncoder
from .corpus import DocBatch
from .errors import TokenizerError
from .format import HF_TOKENIZER_FILE, TOKENIZER_FILE, commit, temp_path

log = logging.getLogger(__name__)


class Tokenizer:
    """What the builder and engine need of a tokenizer."""

    kind: str  # "bytes" | "sentencepiece" | "hf" | "none"
    vocab_size: int | None
    file: str | None = None
    """Name of the tokenizer's file inside an index (None: it has none)."""
    source: Path | None = None
    """Where that file is read from (copied into the index by a build)."""
    unit_chars = 1 << 16
    """:func:`encode_stream` hands workers units of documents of about this much text."""
    stream_workers: int | None = None
    """Workers of :func:`encode_stream` (None: its ``threads``)."""

    def encode(self, text: str) -> np.ndarray:
        """Token ids (uint32) of ``text``, no BOS/EOS."""
        raise NotImplementedError

    def encode_batch(self, texts: list[str], threads: int | None = None) -> list[np.ndarray]:
        """One uint32 id array per text."""
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        """Text of a sequence of ids (list or integer array)."""
        raise NotImplementedError

    def spec(self) -> dict:
        """The manifest's "tokenizer" entry (with the file's name and sha256)."""
        if self.file is None:
            return {"kind": self.kind}
        return {"kind": self.kind, "file": self.file, "sha256": self.sha256}


def _utf8(text: str) -> bytes:
    if not isinstance(text, str):
        raise TokenizerError(f"cannot encode {type(text).__name__} {text!r:.40}; pass a str")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise TokenizerError(
            f"text holds a lone surrogate {text[e.start]!r} at character {e.start}, which has "
            "no UTF-8 encoding; remove it or decode the source with errors='replace'") from None


def _ids(ids, vocab_size: int) -> list[int]:
    """Validated ids as a list of ints."""
    return args.ids(ids, vocab_size, what="decode", error=TokenizerError).tolist()


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as ids. vocab_size is 255: 0xFF never occurs in UTF-8, so
    tokens stay one byte wide and 0xFF is free for the separator."""

    kind = "bytes"
    vocab_size = 255

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(_utf8(text), dtype=np.uint8).astype(np.uint32)

    def decode(self, ids) -> str:
        return bytes(_ids(ids, self.vocab_size)).decode("utf-8", errors="replace")


class NoTokenizer(Tokenizer):
    """An index of raw token ids (kind "none"): text cannot be encoded."""

    kind = "none"

    def __init__(self, vocab_size: int | None = None):
        self.vocab_size = vocab_size

    def encode(self, text: str) -> np.ndarray:
        raise TokenizerError("this index has no tokenizer (kind 'none'); query it with token "
                             "ids, or rebuild it with a tokenizer")

    def decode(self, ids) -> str:
        raise TokenizerError("this index has no tokenizer (kind 'none'); token ids cannot be "
                             "turned into text")


class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece model; batches are encoded on ``threads`` threads
    (default: every core) with the GIL released, or, for a BPE model that
    :class:`BPEEncoder` reproduces exactly, by it on the calling thread
    (``encode_stream`` runs it on every core)."""

    kind = "sentencepiece"

    def __init__(self, model_path: str | os.PathLike, threads: int | None = None):
        path = Path(model_path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise TokenizerError(
                f"cannot read sentencepiece model {path} ({e.strerror}); give the path of a "
                ".model file, or train one (build(..., vocab_size=N))") from None
        sp = spm.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(data)
        except (RuntimeError, UnicodeDecodeError) as e:  # the latter: its error text garbled
            why = "garbled"
            if isinstance(e, RuntimeError):  # "INTERNAL: src/file.cc(109) [what failed] why"
                why = re.sub(r"^\w+: \S+\(\d+\) ", "", " ".join(str(e).split()))[:100]
            raise TokenizerError(
                f"{path} is not a valid sentencepiece model ({why}): it is truncated or damaged; "
                "give a .model file written by sentencepiece (copy it again), or train one "
                "(build(..., vocab_size=N))") from None
        self.model_path = self.source = path
        self.file = TOKENIZER_FILE
        self._data = data
        self._bpe: BPEEncoder | None | bool = False  # False: not looked for yet
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.vocab_size = sp.get_piece_size()
        self.threads = max(1, threads or os.cpu_count() or 1)
        self._sp = sp
        self._pool = spm.ThreadPool(self.threads)
        self._pool_lock = threading.Lock()
        self._bpe_lock = threading.Lock()

    def encode(self, text: str) -> np.ndarray:
        try:
            ids = self._sp.encode(text, out_type="numpy", add_bos=False, add_eos=False)
        except (RuntimeError, TypeError):
            _utf8(text)  # names a non-str or unencodable text
            raise
        return ids.view(np.uint32)

    def encode_batch(self, texts: list[str], threads: int | None = None) -> list[np.ndarray]:
        """One uint32 array per text, encoded outside the GIL on ``threads``
        threads (default: this tokenizer's, on its persistent pool), or on
        this thread by the fast BPE encoder when the model has one."""
        texts = list(texts)
        fast = self.bpe_encoder()
        try:
            if fast is not None:
                out = fast.encode_batch(texts)
            elif threads is None:
                with self._pool_lock:
                    out = self._sp.encode(texts, out_type="numpy", add_bos=False, add_eos=False,
                                          num_threads=self.threads, thread_pool=self._pool)
            else:
                out = self._sp.encode(texts, out_type="numpy", add_bos=False, add_eos=False,
                                      num_threads=max(1, threads))
        except (UnicodeEncodeError, TypeError):
            for t in texts:
                _utf8(t)  # names the offending text
            raise
        return [a.view(np.uint32) for a in out]

    def bpe_encoder(self) -> BPEEncoder | None:
        """This model's fast BPE encoder, made on first use; None if it has
        none (then one warning line says why)."""
        if self._bpe is False:
            with self._bpe_lock:
                if self._bpe is False:
                    self._bpe, why = BPEEncoder.of(self._data, self._sp)
                    if self._bpe is None:
                        log.warning("%s: %s, so sentencepiece's own (slower) encoder is used",
                                    self.model_path, why)
        return self._bpe

    def decode(self, ids) -> str:
        return self._sp.decode(_ids(ids, self.vocab_size))

    def word_starts(self) -> np.ndarray:
        """bool per id: the piece begins a word (starts with '▁'), as
        infini-gram's ``bow_ids`` of a sentencepiece tokenizer."""
        return np.array([self._sp.id_to_piece(i).startswith("\u2581")
                         for i in range(self.vocab_size)], dtype=bool)


class HFTokenizer(Tokenizer):
    """A Hugging Face ``tokenizer.json`` (the ``tokenizers`` library, the
    ``[hf]`` extra). ``encode_batch`` adds no special tokens: documents get
    no BOS/EOS, the index's separator between documents stands in for them.
    A byte-level BPE tokenizer that :class:`HFBPEEncoder` reproduces exactly
    is encoded by it on the calling thread (``encode_stream`` runs it on
    every core; ``fallback_reason`` is ""); any other runs in Rust on every
    core (its rayon pool; ``threads`` is not used) without offsets, and
    ``fallback_reason`` says why."""

    kind = "hf"

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        if path.is_dir():
            path = path / HF_TOKENIZER_FILE
        try:
            from tokenizers import Tokenizer as RustTokenizer
        except ImportError:
            raise TokenizerError("reading a tokenizer.json needs the tokenizers library; "
                                 "pip install 'infinigram[hf]'") from None
        try:
            data = path.read_bytes()
        except OSError as e:
            raise TokenizerError(f"cannot read Hugging Face tokenizer {path} ({e.strerror}); "
                                 "give a tokenizer.json or a directory holding one") from None
        try:
            self._tok = RustTokenizer.from_str(data.decode("utf-8"))
        except Exception as e:  # tokenizers raises bare Exceptions
            raise TokenizerError(
                f"{path} is not a valid Hugging Face tokenizer.json ({' '.join(str(e).split())[:100]}); "
                "give the tokenizer.json saved with the model (Tokenizer.save)") from None
        self.source, self.file = path, HF_TOKENIZER_FILE
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.vocab_size = max(self._tok.get_vocab(with_added_tokens=True).values(), default=-1) + 1
        self._spec = data.decode("utf-8")
        self._fast: HFBPEEncoder | None | bool = False  # False: not looked for yet
        self._fast_why = ""
        self._fast_lock = threading.Lock()

    def fast_encoder(self) -> HFBPEEncoder | None:
        """This tokenizer's fast BPE encoder, made on first use; None if it
        has none (then one warning line says why: ``fallback_reason``)."""
        if self._fast is False:
            with self._fast_lock:
                if self._fast is False:
                    self._fast, self._fast_why = HFBPEEncoder.of(self._spec, self._tok)
                    if self._fast is None:
                        log.warning("%s: %s, so the tokenizers library's own (slower) encoder "
                                    "is used", self.source, self._fast_why)
        return self._fast

    @property
    def fallback_reason(self) -> str:
        """Why the fast encoder is not used ("": it is)."""
        self.fast_encoder()
        return self._fast_why

    @property
    def unit_chars(self) -> int:  # the fast encoder: one thread a call, small units
        return Tokenizer.unit_chars if self.fast_encoder() else 1 << 20

    @property
    def stream_workers(self) -> int | None:  # Rust runs each call on every core: two
        return None if self.fast_encoder() else 2  # workers, one encodes, one holds the GIL

    def encode(self, text: str) -> np.ndarray:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str], threads: int | None = None) -> list[np.ndarray]:
        texts = list(texts)
        try:
            fast = self.fast_encoder()
            if fast is None:
                return self._rust(texts)
            out, left = fast.encode_batch(texts)
            for i, ids in zip(left, self._rust([texts[i] for i in left])):
                out[i] = ids
            return out
        except (TypeError, UnicodeEncodeError):
            for t in texts:
                _utf8(t)  # names the offending text
            raise

    def _rust(self, texts: list[str]) -> list[np.ndarray]:
        out = self._tok.encode_batch_fast(texts, add_special_tokens=False)
        return [np.array(e.ids, dtype=np.uint32) for e in out]

    def decode(self, ids) -> str:
        return self._tok.decode(_ids(ids, self.vocab_size), skip_special_tokens=False)


_FILE_KINDS = {"sentencepiece": SentencePieceTokenizer, "hf": HFTokenizer}


def load_tokenizer(spec: dict, directory: str | os.PathLike) -> Tokenizer:
    """The tokenizer a manifest entry describes; a sentencepiece model is read
    from ``directory`` and must match the recorded sha256."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "none":
        return NoTokenizer()
    if kind not in _FILE_KINDS:
        raise TokenizerError(f"unknown tokenizer entry {spec!r}; expected kind 'bytes', "
                             "'sentencepiece', 'hf' or 'none': rebuild the index")
    path = Path(directory) / spec.get("file", TOKENIZER_FILE)
    tok = _FILE_KINDS[kind](path)
    if tok.sha256 != spec.get("sha256"):
        raise TokenizerError(
            f"{path} has sha256 {tok.sha256}, the manifest records {spec.get('sha256')}: the "
            "model was replaced or damaged; restore the model the index was built with, or "
            "rebuild the index")
    return tok


def resolve_tokenizer(arg, threads: int | None = None) -> Tokenizer:
    """A Tokenizer from a user argument: a Tokenizer, "bytes", None/"none"
    (ids only), the path of a sentencepiece .model file, or of a Hugging Face
    tokenizer.json (any ``*.json`` file) or a directory holding one."""
    if isinstance(arg, Tokenizer):
        return arg
    if arg is None or arg == "none":
        return NoTokenizer()
    if arg == "bytes":
        return ByteTokenizer()
    if isinstance(arg, (str, os.PathLike)):
        path = Path(arg)
        if (path / HF_TOKENIZER_FILE).is_file() or (path.is_file() and
                                                    path.suffix.lower() == ".json"):
            return HFTokenizer(path)
        if not path.is_file():
            raise TokenizerError(
                f"tokenizer {str(arg)!r} is neither 'bytes' nor an existing sentencepiece "
                ".model file, tokenizer.json or directory holding one; check the path, or train "
                "one (build(..., vocab_size=N))")
        return SentencePieceTokenizer(arg, threads)
    raise TokenizerError(f"tokenizer {arg!r} is not understood; pass 'bytes', the path of a "
                         "sentencepiece .model file or a tokenizer.json, or a Tokenizer")


MAX_VOCAB = (1 << 31) - 1
"""Largest vocabulary sentencepiece can train (its sizes are int32)."""
_MAX_SENTENCE_CHARS = 4096  # sentencepiece silently drops longer sentences


def _sentences(texts: Iterable[str], sample_bytes: int) -> Iterator[str]:
    """Training sentences: runs of whole lines of at most _MAX_SENTENCE_CHARS,
    newlines kept, from the first ``sample_bytes`` of text."""
    budget = sample_bytes
    for text in texts:
        if budget <= 0:
            return
        text = text[:budget]
        budget -= len(text)
        run: list[str] = []
        size = 0
        for line in text.splitlines(keepends=True):
            if size + len(line) > _MAX_SENTENCE_CHARS and run:
                yield "".join(run)
                run, size = [], 0
            while len(line) > _MAX_SENTENCE_CHARS:
                yield line[:_MAX_SENTENCE_CHARS]
                line = line[_MAX_SENTENCE_CHARS:]
            run.append(line)
            size += len(line)
        if run:
            yield "".join(run)


def train_sentencepiece(texts: Iterable[str], vocab_size: int, model_path: str | os.PathLike,
                        sample_bytes: int = 32 << 20, threads: int | None = None,
                        model_type: str = "bpe") -> SentencePieceTokenizer:
    """Train a sentencepiece model on the first ``sample_bytes`` characters of
    ``texts`` (pass a strided or shuffled iterator for a spread-out sample)
    and write it to ``model_path``; memory is bounded by the sample.

    Settings make ``decode(encode(x)) == x`` for text and source code:
    identity normalization, whitespace kept as is (runs of spaces may form
    pieces), no dummy prefix, byte fallback (no <unk> for unseen
    characters), no BOS/EOS ids. BPE by default: it trains much faster than
    unigram and compresses as well or better, and its models encode through
    the fast :class:`BPEEncoder`.
    """
    vocab_size = args.integer("vocab_size", vocab_size, low=1, high=MAX_VOCAB, error=TokenizerError)
    sample_bytes = args.size_bytes("sample_bytes", sample_bytes, error=TokenizerError)
    threads = max(1, threads or os.cpu_count() or 1)
    sentences = [s for s in _sentences(texts, sample_bytes) if s]
    if not sentences:
        raise TokenizerError("no text to train the tokenizer on: the corpus sample is empty; "
                             "check the corpus and --text-field")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
            model_type=model_type, normalization_rule_name="identity",
            remove_extra_whitespaces=False, add_dummy_prefix=False,
            allow_whitespace_only_pieces=True, split_digits=False, byte_fallback=True,
            character_coverage=0.9995, max_sentence_length=4 * _MAX_SENTENCE_CHARS,
            input_sentence_size=0, bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0,
            num_threads=threads, minloglevel=2)
    except RuntimeError as e:
        msg = str(e)
        limit = re.search(r"value <= (\d+)", msg)
        if limit:
            raise TokenizerError(
                f"vocab_size {vocab_size} is too large for the training sample "
                f"({sum(map(len, sentences))} characters): it allows at most {limit.group(1)}; "
                "lower vocab_size or train on more text (sample_bytes=)") from None
        need = re.search(r"smaller than required_chars\. \d+ vs (\d+)", msg)
        if need:
            raise TokenizerError(
                f"vocab_size {vocab_size} is too small: the 256 byte pieces and the sample's "
                f"characters need at least {need.group(1)}; raise vocab_size") from None
        raise TokenizerError(f"sentencepiece training failed ({msg.strip()[:200]}); check "
                             f"vocab_size={vocab_size} and the training text") from None
    final = Path(model_path)
    tmp = temp_path(final)
    tmp.write_bytes(model.getvalue())
    commit(tmp, final)
    return SentencePieceTokenizer(final, threads)


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


_END = object()


class _Job:
    """One batch in flight: its per-document results fill in as units finish."""

    def __init__(self, batch: DocBatch, units: int):
        self.batch = batch
        self.ids: list = [None] * len(batch.texts)
        self.left = units
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.done = threading.Event()
        if not units:
            self.done.set()


def _units(texts: list[str], unit_chars: int) -> list[list[int]]:
    """Document indexes grouped into work units, longest documents first, so
    the last units to finish are small (the workers end a batch together)."""
    units, unit, size = [], [], 0
    for i in sorted(range(len(texts)), key=lambda i: -len(texts[i])):
        unit.append(i)
        size += len(texts[i])
        if size >= unit_chars:
            units.append(unit)
            unit, size = [], 0
    if unit:
        units.append(unit)
    return units


def encode_stream(batches: Iterable[DocBatch], tokenizer: Tokenizer, threads: int | None = None,
                  prefetch: int = 2) -> Iterator[tuple[DocBatch, list[np.ndarray]]]:
    """Yield ``(batch, ids)`` for each batch, in order, ``ids`` as from
    ``tokenizer.encode_batch`` (one uint32 array per document).

    A thread pulls batches (reading and parsing the corpus) and cuts them
    into units of documents, longest first; ``threads`` workers (default:
    every core) encode units one thread each with the GIL released, taking
    the next unit as soon as they finish, across batch boundaries, so no
    core waits for the slowest document of a batch; the caller consumes
    finished batches meanwhile. At most ``prefetch`` batches wait ahead of
    the caller, so memory stays bounded. An error in reading or encoding is
    raised here, after the batches before it.
    """
    workers_n = tokenizer.stream_workers or max(1, threads or os.cpu_count() or 1)
    stop = threading.Event()
    jobs: queue.Queue = queue.Queue(max(1, prefetch))
    work: queue.Queue = queue.Queue()

    def put(q: queue.Queue, item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def read() -> None:
        try:
            for batch in batches:
                units = _units(batch.texts, tokenizer.unit_chars)
                job = _Job(batch, len(units))
                if not put(jobs, job):
                    return
                for unit in units:
                    work.put((job, unit))
            put(jobs, _END)
        except BaseException as e:  # handed to the consumer
            put(jobs, _Failure(e))
        finally:
            for _ in range(workers_n):
                work.put(None)

    def encode() -> None:
        while (item := work.get()) is not None and not stop.is_set():
            job, unit = item
            try:
                out = tokenizer.encode_batch([job.batch.texts[i] for i in unit], 1)
                for i, ids in zip(unit, out):
                    job.ids[i] = ids
            except BaseException as e:
                job.error = e
            with job.lock:
                job.left -= 1
                if job.left == 0:
                    job.done.set()

    workers = [threading.Thread(target=read, name="infinigram-read", daemon=True)]
    workers += [threading.Thread(target=encode, name="infinigram-encode", daemon=True)
                for _ in range(workers_n)]
    for w in workers:
        w.start()
    try:
        while (job := jobs.get()) is not _END:
            if isinstance(job, _Failure):
                raise job.error
            job.done.wait()
            if job.error is not None:
                raise job.error
            yield job.batch, job.ids
    finally:
        stop.set()
        for w in workers:
            w.join()
