"""Benchmark corpora: every corpus is a directory holding ``tokenized.0``
and ``offset.0`` in the on-disk format (docs/FORMAT.md), cached under
``benchmarks/out/corpora`` so runs are repeatable."""
from __future__ import annotations

import json
import re
import os
import shutil
import sysconfig
from pathlib import Path

import numpy as np

from common import CORPORA, HELDOUT_EVERY, SEP, STDLIB_VOCAB, ZIPF_VOCAB
from infinigram import format as fmt


def parse_count(text: str) -> int:
    """'15M', '300M', '1B' (or '1G'), '2k', '1e6' or a plain integer."""
    t = str(text).strip().lower()
    mult = {"k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(float(t))


def docs_to_tokens(docs) -> np.ndarray:
    """Documents (sequences of ids) as one u16 array, a separator before each."""
    parts = []
    for d in docs:
        parts.append(np.array([SEP], dtype="<u2"))
        parts.append(np.asarray(d, dtype="<u2"))
    return np.concatenate(parts) if parts else np.zeros(0, "<u2")


def write_tokens(directory: Path, tokens: np.ndarray) -> dict:
    """Write a token array (u16; u8 for byte tokens) that starts with a
    separator, plus its offsets."""
    directory.mkdir(parents=True, exist_ok=True)
    tokens = np.asarray(tokens)
    width = 1 if tokens.dtype == np.uint8 else 2
    tokens = tokens.astype(f"<u{width}", copy=False)
    offsets = (np.flatnonzero(tokens == fmt.separator(width)) * width).astype("<u8")
    tmp = directory / "tokenized.0.tmp"
    tokens.tofile(tmp)
    offsets.tofile(directory / "offset.0")
    os.replace(tmp, directory / "tokenized.0")
    info = {"tokens": int(tokens.size), "docs": int(offsets.size), "width": width}
    (directory / "corpus.json").write_text(json.dumps(info))
    return info


def corpus_info(directory: Path) -> dict:
    return json.loads((directory / "corpus.json").read_text())


def _zipf_cdf(vocab: int, a: float = 1.0) -> np.ndarray:
    w = 1.0 / np.arange(1, vocab + 1, dtype=np.float64) ** a
    return np.cumsum(w) / w.sum()


def zipf_tokens(n: int, seed: int = 0, vocab: int = ZIPF_VOCAB) -> np.ndarray:
    """~n tokens of Zipfian text (exponent 1) in documents of 300-1000 tokens,
    each led by the separator, with planted long repeats: 3% of documents are
    copies of an earlier one, 2% carry a run of one token 100-2000 long."""
    rng = np.random.default_rng(seed)
    cdf = _zipf_cdf(vocab)
    ids = rng.permutation(vocab).astype("<u2")  # frequent tokens spread over the id range
    out = np.empty(n, dtype="<u2")
    pos = 0
    starts: list[tuple[int, int]] = []
    chunk = 1 << 22
    while pos < n:
        lens = rng.integers(300, 1001, size=max(16, chunk // 650))
        body = ids[np.minimum(np.searchsorted(cdf, rng.random(int(lens.sum()) + lens.size)),
                              vocab - 1)]
        b = 0
        for ln in lens:
            if pos >= n:
                break
            kind = rng.random()
            if kind < 0.03 and starts:
                s, e = starts[int(rng.integers(len(starts)))]
                doc = out[s:e].copy()
            else:
                doc = body[b:b + ln].copy()
                b += ln
                if kind > 0.98:
                    r = int(rng.integers(100, 2001))
                    at = int(rng.integers(0, ln))
                    doc = np.concatenate([doc[:at], np.full(r, doc[0], "<u2"), doc[at:]])
            m = min(len(doc) + 1, n - pos)
            out[pos] = SEP
            out[pos + 1:pos + m] = doc[:m - 1]
            if m > 1:
                starts.append((pos + 1, pos + m))
            pos += m
    return out


def zipf_corpus(n: int, seed: int = 0) -> Path:
    d = CORPORA / f"zipf-{n}-s{seed}"
    if not (d / "corpus.json").exists():
        write_tokens(d, zipf_tokens(n, seed))
    return d


def block_corpus(n: int, seed: int = 0) -> Path:
    """A block of Zipfian documents (n/20 tokens) repeated 20 times."""
    d = CORPORA / f"block20-{n}-s{seed}"
    if not (d / "corpus.json").exists():
        block = zipf_tokens(-(-n // 20), seed + 1)
        write_tokens(d, np.tile(block, 20)[:n])
    return d


def single_corpus(n: int) -> Path:
    """One document: one token repeated n - 1 times."""
    d = CORPORA / f"single-{n}"
    if not (d / "corpus.json").exists():
        t = np.full(n, 17, dtype="<u2")
        t[0] = SEP
        write_tokens(d, t)
    return d


def heldout_zipf(n_docs: int, seed: int = 10_000) -> list[np.ndarray]:
    """Held-out documents from the Zipfian generator (a different seed)."""
    t = zipf_tokens(n_docs * 700, seed)
    cut = np.flatnonzero(t == SEP).tolist() + [t.size]
    return [t[a + 1:b] for a, b in zip(cut[:-1], cut[1:]) if b - a > 1]


def stdlib_files() -> list[Path]:
    """The standard library's *.py files (site-packages excluded), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.relative_to(root).parts)


SOURCE_SUFFIXES = {".py", ".pyi", ".c", ".h", ".cc", ".cpp", ".hpp", ".cu", ".cuh"}
SOURCE_PATHS = ("stdlib", "purelib", "platlib")  # sysconfig's: standard library, site-packages
SOURCE_DIRS = ("/usr/include",)
SOURCE_ROOTS_MD = (", ".join(f"sysconfig `{k}`" for k in SOURCE_PATHS) + " and "
                   + ", ".join(f"`{d}`" for d in SOURCE_DIRS))
MORE_SOURCE_SUFFIXES = {".rs", ".go", ".java", ".js", ".ts"}
MORE_SOURCE_DIRS = ("/usr/lib", "/usr/local/lib", "/opt", "~/.pyenv", "~/.rustup", "~/.cargo")
"""Where ``source_files(more=True)`` looks next, for corpora beyond this
Python's own sources (other interpreters, toolchains' library sources)."""


def source_files(more: bool = False) -> list[Path]:
    """This machine's Python and C/C++ sources: the interpreter's standard
    library and site-packages and the system headers, sorted by path within
    each root (roots in sorted order), each real file once. With ``more``,
    then the sources (``MORE_SOURCE_SUFFIXES`` too) in ``MORE_SOURCE_DIRS``."""
    paths = sysconfig.get_paths()
    groups = [(sorted({paths[k] for k in SOURCE_PATHS} | set(SOURCE_DIRS)), SOURCE_SUFFIXES)]
    if more:
        groups.append(([os.path.expanduser(d) for d in MORE_SOURCE_DIRS],
                       SOURCE_SUFFIXES | MORE_SOURCE_SUFFIXES))
    seen, out = set(), []
    for roots, suffixes in groups:
        for root in roots:
            for p in sorted(Path(root).rglob("*")):
                if p.suffix in suffixes and p.is_file():
                    real = p.resolve()
                    if real not in seen:
                        seen.add(real)
                        out.append(p)
    return out


def source_corpus(n: int) -> Path:
    """The first ``n`` bytes of source_files() as byte tokens (u8, separator
    0xff before each file): real code with its own long repeats (vendored
    copies, licence headers, generated files). Smaller when the machine has
    less source than that; files are decoded as UTF-8 (bad bytes replaced)
    and re-encoded, so no byte is the separator."""
    d = CORPORA / f"source-{n}"
    if not (d / "corpus.json").exists():
        chunks, total = [], 0
        for p in source_files():
            if total >= n:
                break
            b = read_text(p).encode()
            chunks += [b"\xff", b]
            total += len(b) + 1
        info = write_tokens(d, np.frombuffer(b"".join(chunks)[:n], np.uint8))
        info.update(vocab=256, files=len(chunks) // 2)
        (d / "corpus.json").write_text(json.dumps(info))
    return d


def read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace")


def write_jsonl(path: Path, texts, names) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for name, text in zip(names, texts):
            f.write(json.dumps({"text": text, "path": name}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def jsonl_texts(path: Path, text_field: str = "text") -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)[text_field] or "" for line in f if line.strip()]


def train_spm(texts, vocab: int, model: Path, threads: int = 2, rule: str = "identity") -> Path:
    """A byte-fallback sentencepiece model (BPE) on text lines (documents
    split at newlines, as sentencepiece drops long lines), identity-normalised,
    or with another normalization ``rule`` and sentencepiece's default of
    removing extra whitespace."""
    import sentencepiece as spm
    model.parent.mkdir(parents=True, exist_ok=True)

    def lines():
        for t in texts:
            for line in t.split("\n"):
                if line.strip():
                    yield line

    spm.SentencePieceTrainer.train(
        sentence_iterator=lines(), model_prefix=str(model.with_suffix("")), vocab_size=vocab,
        model_type="bpe", character_coverage=1.0, byte_fallback=True,
        normalization_rule_name=rule, remove_extra_whitespaces=rule != "identity",
        split_digits=True, allow_whitespace_only_pieces=True, max_sentence_length=1 << 14,
        input_sentence_size=2_000_000, shuffle_input_sentence=True,
        seed_sentencepiece_size=1_000_000,
        num_threads=threads, minloglevel=2, user_defined_symbols=["\n", "\t"])
    return model


def normalized_model(src: Path, rule: str = "nmt_nfkc") -> Path:
    """A model like corpus ``src``'s own (same text and vocabulary size) with
    normalization ``rule``, trained once into ``src``."""
    model = src / f"tokenizer-{rule}.model"
    if not model.exists():
        vocab = json.loads((src / "corpus.json").read_text())["vocab"]
        train_spm(jsonl_texts(src / "text.jsonl"), vocab, model, rule=rule)
    return model


def text_corpus(name: str, texts: list[str], heldout: list[str], vocab: int,
                model: Path | None = None) -> Path:
    """Tokenize ``texts`` with a sentencepiece model (trained on them unless
    given) into CORPORA/name: tokenized.0, offset.0, text.jsonl (the text
    documents, for the tokenization benchmark) and heldout.npy (token ids of
    the held-out documents, concatenated, with heldout_lens.npy)."""
    import sentencepiece as spm
    d = CORPORA / name
    if (d / "corpus.json").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    write_jsonl(d / "text.jsonl", texts, [str(i) for i in range(len(texts))])
    if model is None:
        model = train_spm(texts, vocab, d / "tokenizer.model")
    elif Path(model).resolve() != (d / "tokenizer.model").resolve():
        shutil.copyfile(model, d / "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
    ids = sp.encode(texts, num_threads=2)
    held = sp.encode(heldout, num_threads=2) if heldout else []
    np.save(d / "heldout_lens.npy", np.array([len(h) for h in held], dtype=np.int64))
    np.save(d / "heldout.npy", np.concatenate([np.asarray(h, "<u2") for h in held])
            if held else np.zeros(0, "<u2"))
    info = write_tokens(d, docs_to_tokens(ids))
    info.update(vocab=sp.get_piece_size(), text_bytes=sum(len(t.encode()) for t in texts))
    (d / "corpus.json").write_text(json.dumps(info))
    return d


def stdlib_corpus(max_bytes: int | None = None) -> Path:
    """The stdlib sources (every 50th file held out), vocab-8000 sentencepiece;
    with ``max_bytes``, only the first files up to that much source (quick runs)."""
    files = stdlib_files()
    if max_bytes:
        total, keep = 0, []
        for p in files:
            if total >= max_bytes:
                break
            keep.append(p)
            total += p.stat().st_size
        files = keep
    texts = [read_text(p) for i, p in enumerate(files) if i % HELDOUT_EVERY]
    held = [read_text(p) for i, p in enumerate(files) if not i % HELDOUT_EVERY]
    return text_corpus("stdlib" + (f"-{max_bytes}" if max_bytes else ""), texts, held,
                       STDLIB_VOCAB)


def jsonl_corpus(path: Path, text_field: str = "text", model: Path | None = None) -> Path:
    """Any JSONL file: every 50th record held out; a vocab-8000 model trained on
    it unless ``model`` is given."""
    path = Path(path)
    texts = jsonl_texts(path, text_field)
    name = "jsonl-" + re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)
    return text_corpus(name, [t for i, t in enumerate(texts) if i % HELDOUT_EVERY],
                       [t for i, t in enumerate(texts) if not i % HELDOUT_EVERY],
                       STDLIB_VOCAB, model)


def heldout_docs(directory: Path) -> list[np.ndarray]:
    flat = np.load(directory / "heldout.npy")
    lens = np.load(directory / "heldout_lens.npy")
    return [a for a in np.split(flat, np.cumsum(lens)[:-1]) if a.size]


def fresh_copy(src: Path, dst: Path) -> Path:
    """A new directory with hard links to src's tokenized.0 and offset.0."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for name in ("tokenized.0", "offset.0"):
        os.link(src / name, dst / name)
    return dst
