"""Shared helpers for the benchmarks: corpora, child processes, timing, output.

Every corpus is a directory holding ``tokenized.0`` and ``offset.0`` in the
on-disk format (docs/FORMAT.md), cached under ``benchmarks/out/corpora`` so
runs are repeatable. Tools are timed in fresh child processes whose peak
RSS comes from ``os.wait4`` (the child and every descendant it reaped).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from infinigram import format as fmt

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
CORPORA = OUT / "corpora"
RESULTS = HERE / "RESULTS.md"
PYTHON = sys.executable
NUMBA_CACHE = OUT / "numba-cache"  # our kernels' warm cache for every timed child
SEP = fmt.separator(2)
ZIPF_VOCAB = 32000
STDLIB_VOCAB = 8000
HELDOUT_EVERY = 50  # every 50th stdlib file is held out of the stdlib index


# ---------------------------------------------------------------- sizes, stats

def parse_count(text: str) -> int:
    """'15M', '300M', '2k', '1e6' or a plain integer."""
    t = str(text).strip().lower()
    mult = {"k": 10**3, "m": 10**6, "g": 10**9}
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(float(t))


def stats_us(ns: np.ndarray) -> dict:
    """Median, p99 and mean in microseconds of per-call times in nanoseconds."""
    ns = np.asarray(ns, dtype=np.float64)
    return {"median_us": float(np.median(ns) / 1e3), "p99_us": float(np.percentile(ns, 99) / 1e3),
            "mean_us": float(ns.mean() / 1e3), "calls": int(ns.size)}


def time_calls(fn, args_list) -> np.ndarray:
    """Nanoseconds of each ``fn(*args)`` call, one call at a time."""
    out = np.empty(len(args_list), dtype=np.int64)
    clock = time.perf_counter_ns
    for i, args in enumerate(args_list):
        t0 = clock()
        fn(*args)
        out[i] = clock() - t0
    return out


def median(xs):
    xs = [x for x in xs if x is not None]
    return float(np.median(xs)) if xs else None


# ---------------------------------------------------------------- machine

def machine() -> dict:
    """CPU model, cores, RAM, load, versions and date, for RESULTS.md."""
    model = platform.processor()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"],
                               capture_output=True, text=True).stdout.strip() != ""
    except OSError:
        rev, dirty = "?", False
    return {"cpu": model, "cores": os.cpu_count(), "ram_gib": round(mem / 2**30, 1),
            "load_avg": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "numpy": np.__version__,
            "git": rev + ("+dirty" if dirty else ""),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def add_report_options(ap, section: str, example: str) -> None:
    """The RESULTS.md options both benchmark scripts take."""
    ap.add_argument("--busy", action="store_true",
                    help="label the results as taken on a busy machine "
                    "(automatic when the load average is > 1 at start or > 2 at the end)")
    ap.add_argument("--no-results", action="store_true", help="do not touch RESULTS.md")
    ap.add_argument("--section", default=section,
                    help=f"RESULTS.md block to write (another name, e.g. {example}, adds a "
                         f"block after the {section} section)")
    ap.add_argument("--from-json", type=Path, help="only re-render RESULTS.md from a saved run")


def busy_md(data: dict) -> str:
    m = data["machine"]
    load = f"load average {m['load_avg'][0]} at start, {m.get('load_avg_end', ['?'])[0]} at end"
    end = m.get("load_avg_end", [0])[0]
    if data.get("busy") or (isinstance(end, (int, float)) and end > 2.0):
        return (f"**Load average above 2** ({load}; it counts the benchmark's own "
                "processes too, and this VM's reading also moves with no process running): "
                "timings can be disturbed, compare ratios from the same run")
    return f"Load average low ({load})"


def machine_md(m: dict) -> str:
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; "
            f"Python {m['python']}; "
            f"commit {m['git']}; {m['date']}.")


# ---------------------------------------------------------------- child processes

def child_env(numba_cache: Path | None = NUMBA_CACHE) -> dict:
    env = dict(os.environ)
    if numba_cache is not None:
        env["NUMBA_CACHE_DIR"] = str(numba_cache)
    env.setdefault("PYTHONHASHSEED", "0")
    return env


PAGE = os.sysconf("SC_PAGE_SIZE")


def session_rss(sid: int) -> int:
    """Summed RSS in bytes of every live process in session ``sid``."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rindex(b")") + 2:].split()  # fields 3.. of proc(5)
        if int(rest[3]) == sid:
            total += int(rest[21]) * PAGE
    return total


TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None


def run_child(cmd: list[str], *, env: dict | None = None, timeout: float = 1800,
              cwd: Path | None = None) -> dict:
    """Run ``cmd`` in a fresh process (its own session): wall seconds, CPU
    seconds, output tail and peak RSS in bytes: the larger of the rusage
    maximum (largest single process among the child and the descendants it
    waited for, via /usr/bin/time, else wait4) and the summed RSS of the
    whole process tree sampled every 20 ms, every 200 ms after the first 2 s
    (``tree_rss_bytes``; catches concurrent helper processes, which rusage
    does not add up). A run past ``timeout`` is killed and reported with
    ``timeout: True``."""
    with tempfile.TemporaryFile() as log, tempfile.NamedTemporaryFile("r") as rusage:
        full = [TIME, "-q", "-o", rusage.name, "-f", "%M %U %S"] + cmd if TIME else cmd
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdout=log, stderr=subprocess.STDOUT, env=env or child_env(),
                             cwd=cwd, start_new_session=True)
        done: dict = {}

        def wait():  # blocking wait4 in a thread: exact wall time, the sampler stays free
            done["wait"] = os.wait4(p.pid, 0)
            done["t"] = time.perf_counter()

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        timed_out, tree = False, 0
        while waiter.is_alive():
            if time.perf_counter() - t0 > timeout:
                os.killpg(p.pid, 9)
                timed_out = True
                waiter.join()
                break
            tree = max(tree, session_rss(p.pid))  # every 20 ms, after the first 2 s every 200 ms
            waiter.join(0.02 if time.perf_counter() - t0 < 2 else 0.2)
        _, status, ru = done["wait"]
        wall = done["t"] - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
        rss, cpu = ru.ru_maxrss * 1024, ru.ru_utime + ru.ru_stime
        fields = rusage.read().split()
        if TIME and len(fields) >= 3 and not timed_out:
            rss, cpu = int(fields[-3]) * 1024, float(fields[-2]) + float(fields[-1])
    return {"wall_s": wall, "rss_bytes": max(rss, tree), "rusage_rss_bytes": rss,
            "tree_rss_bytes": tree, "cpu_s": cpu, "rc": p.returncode,
            "timeout": timed_out, "output": text[-4000:]}


def last_json(output: str) -> dict:
    """The last line of a child's output that parses as a JSON object."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {}


# ---------------------------------------------------------------- corpora

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


# ---------------------------------------------------------------- text corpora

def stdlib_files() -> list[Path]:
    """The standard library's *.py files (site-packages excluded), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.relative_to(root).parts)


SOURCE_SUFFIXES = {".py", ".pyi", ".c", ".h", ".cc", ".cpp", ".hpp", ".cu", ".cuh"}
SOURCE_PATHS = ("stdlib", "purelib", "platlib")  # sysconfig's: standard library, site-packages
SOURCE_DIRS = ("/usr/include",)
SOURCE_ROOTS_MD = (", ".join(f"sysconfig `{k}`" for k in SOURCE_PATHS) + " and "
                   + ", ".join(f"`{d}`" for d in SOURCE_DIRS))


def source_files() -> list[Path]:
    """This machine's Python and C/C++ sources: the interpreter's standard
    library and site-packages and the system headers, sorted by path within
    each root (roots in sorted order), each real file once."""
    paths = sysconfig.get_paths()
    roots = sorted({paths[k] for k in SOURCE_PATHS} | set(SOURCE_DIRS))
    seen, out = set(), []
    for root in roots:
        for p in sorted(Path(root).rglob("*")):
            if p.suffix in SOURCE_SUFFIXES and p.is_file():
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


def train_spm(texts, vocab: int, model: Path, threads: int = 2) -> Path:
    """A byte-fallback, identity-normalised sentencepiece model (BPE) on text
    lines (documents split at newlines, as sentencepiece drops long lines)."""
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
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        split_digits=True, allow_whitespace_only_pieces=True, max_sentence_length=1 << 14,
        input_sentence_size=2_000_000, shuffle_input_sentence=True,
        seed_sentencepiece_size=1_000_000,
        num_threads=threads, minloglevel=2, user_defined_symbols=["\n", "\t"])
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


# ---------------------------------------------------------------- output

def save_json(name: str, data: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(type(x))


def md_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def update_results(section: str, markdown: str, after: tuple[str, ...] = (),
                   before: str | None = None) -> None:
    """Replace the text between ``<!-- section:start -->`` and ``<!-- section:end -->``
    in RESULTS.md; a new block goes right after the first existing block
    named in ``after``, else right before block ``before``, else at the end.
    Everything else in the file is kept."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    after_end = next((f"<!-- {a}:end -->" for a in after if f"<!-- {a}:end -->" in text), None)
    if start in text and end in text:
        a, b = text.index(start), text.index(end) + len(end)
        text = text[:a] + block + text[b:]
    elif after_end:
        a = text.index(after_end) + len(after_end)
        text = text[:a] + "\n\n" + block + text[a:]
    elif before and f"<!-- {before}:start -->" in text:
        a = text.index(f"<!-- {before}:start -->")
        text = text[:a] + block + "\n\n" + text[a:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = RESULTS.with_name(f".RESULTS.md.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, RESULTS)


def met(ok) -> str:
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**not met**"


def fmt_bytes(n) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
