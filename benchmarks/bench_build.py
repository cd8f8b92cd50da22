"""Build benchmark: tokenized.0 -> table.0 for ours, infini-gram and tokengrams.

Every tool runs in a fresh child process on a fresh directory holding hard
links to the same tokenized.0 / offset.0; wall time and peak RSS come from
the child (procs.run_child). Our kernels run with a warm Numba cache; the
compile time is measured apart on a tiny corpus with an empty cache.

    python benchmarks/bench_build.py            # 15M tokens, ~10 min on 2 cores
    python benchmarks/bench_build.py --quick    # 2M tokens, smoke run
    python benchmarks/bench_build.py --tokens 300M --corpora zipf --runs 1
    python benchmarks/bench_build.py --tokens 300M --corpora source --runs 1  # byte tokens
    python benchmarks/bench_build.py --jsonl data.jsonl --corpora jsonl
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402
import corpora as cor  # noqa: E402
import procs  # noqa: E402
import report as rep  # noqa: E402

TOOLS = ("ours", "ours-parts", "infini-gram", "tokengrams")
PEERS = ("infini-gram", "tokengrams")
TINY = 20_000  # tokens of the corpus that measures compile time and fixed costs

OURS_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from infinigram import builder
t1 = time.perf_counter()
width, vocab, mm, threads = (int(x) for x in sys.argv[2:6])
builder.index_tables(sys.argv[1], token_width=width, vocab_size=vocab, max_memory=mm or None,
                     threads=threads or None, quiet=True)
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "inner_s": t2 - t1}))
"""

TOKENGRAMS_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import tokengrams
t1 = time.perf_counter()
tokengrams.MemmapIndex.build(sys.argv[1], sys.argv[2], vocab=2**16, verbose=False)
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "inner_s": t2 - t1}))
"""


THREADS = 0
"""Our sort's threads (--threads; 0: every core, the default)."""
PEER_MEM = 8
"""infini-gram's --mem, GiB (--peer-mem)."""


def peer_flags(width: int) -> list[str]:
    """infini-gram's indexing flags: as many CPUs as our sort's threads,
    ``PEER_MEM`` GiB, an open-file limit it may raise to (at most the hard one)."""
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    ulimit = 20000 if hard == resource.RLIM_INFINITY else min(20000, hard)
    return ["--mem", str(PEER_MEM), "--cpus", str(THREADS or os.cpu_count()),
            "--token_dtype", f"u{8 * width}", "--ulimit", str(ulimit)]


def command(tool: str, run_dir: Path, width: int, vocab: int, max_memory: int) -> list[str]:
    if tool in ("ours", "ours-parts"):
        mm = max_memory if tool == "ours-parts" else 0
        return [c.PYTHON, "-c", OURS_CHILD, str(run_dir), str(width), str(vocab), str(mm),
                str(THREADS)]
    if tool == "infini-gram":
        empty = run_dir / "empty"
        empty.mkdir(exist_ok=True)
        return [c.PYTHON, "-m", "infini_gram.indexing", "--data_dir", str(empty.resolve()),
                "--save_dir", str(run_dir.resolve()), *peer_flags(width)]
    if tool == "tokengrams":
        return [c.PYTHON, "-c", TOKENGRAMS_CHILD, str(run_dir / "tokenized.0"),
                str(run_dir / "tokengrams.idx")]
    raise ValueError(tool)


def shell_command(tool: str, width: int, vocab: int, max_memory: int) -> str:
    """The command line as a user would type it (for RESULTS.md)."""
    ours = f"python -m infinigram index DIR --token-width {width} --vocab-size {vocab}" + (
        f" --threads {THREADS}" if THREADS else "")
    return {
        "ours": ours,
        "ours-parts": f"{ours} --max-memory {max_memory}",
        "infini-gram": "python -m infini_gram.indexing --data_dir EMPTY_DIR --save_dir DIR "
                       + " ".join(peer_flags(width)),
        "tokengrams": "python -c 'tokengrams.MemmapIndex.build(\"DIR/tokenized.0\", "
                      "\"DIR/tokengrams.idx\", vocab=2**16, verbose=False)'",
    }[tool]


def index_bytes(run_dir: Path, tool: str) -> int:
    names = ["tokenized.0", "offset.0"] + (["tokengrams.idx"] if tool == "tokengrams"
                                            else ["table.0"])
    return sum((run_dir / n).stat().st_size for n in names if (run_dir / n).exists())


def parts_budget(n_tokens: int, width: int = 2, want: int = 4) -> tuple[int | None, int]:
    """The largest --max-memory that makes the planner split the shard into
    >= ``want`` parts (or the smallest it accepts, if that gives fewer but
    >= 2) on our sort's threads, and the number of parts; (None, 0) while
    merge.py is absent."""
    try:
        from infinigram import args
        from infinigram.native import merge
    except ImportError:
        return None, 0
    threads = args.threads(THREADS or None)

    def parts(mm):
        try:
            return len(merge.plan_parts(n_tokens, width, mm, threads))
        except ValueError:  # budget too small to split at all
            return None

    lo, hi = 1 << 12, n_tokens * 64 + (16 << 20)
    while hi - lo > 1024:  # smallest accepted budget
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if parts(mid) is not None else (mid, hi)
    lo = hi
    if (parts(lo) or 0) < 2:
        return None, 0
    hi = n_tokens * 64 + (16 << 20)
    while hi - lo > 1024 and parts(lo) >= want:  # largest budget still giving >= want
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if parts(mid) >= want else (lo, mid)
    return lo, parts(lo)


def fixed_cost(timeout: float) -> dict:
    """Wall time and peak RSS of our build of a tiny corpus (warm cache):
    Python, imports and loaded kernels, the part that does not grow with
    the corpus."""
    with tempfile.TemporaryDirectory(dir=c.OUT) as tmp:
        run_dir = cor.fresh_copy(cor.zipf_corpus(TINY, seed=3), Path(tmp) / "run")
        r = procs.run_child(command("ours", run_dir, 2, c.ZIPF_VOCAB, 0), timeout=timeout)
    return {"wall_s": r["wall_s"], "rss_bytes": r["rss_bytes"]}


def compile_time(timeout: float) -> dict:
    """Our JIT compile time: a tiny build with an empty Numba cache minus the
    same build with that cache warm (plain and --max-memory runs)."""
    src = cor.zipf_corpus(TINY, seed=3)
    mm, _ = parts_budget(TINY)
    out = {}
    with tempfile.TemporaryDirectory(dir=c.OUT) as tmp:
        env = procs.child_env(Path(tmp) / "cache")
        for tool in ("ours", "ours-parts"):
            if tool == "ours-parts" and mm is None:
                continue
            walls = []
            for _ in range(2):
                run_dir = cor.fresh_copy(src, Path(tmp) / "run")
                r = procs.run_child(command(tool, run_dir, 2, c.ZIPF_VOCAB, mm or 0), env=env,
                                timeout=timeout)
                if r["rc"] != 0:
                    return {"error": r["output"][-1500:]}
                walls.append(r["wall_s"])
            out[tool] = {"cold_s": walls[0], "warm_s": walls[1], "compile_s": walls[0] - walls[1]}
    return out


def warm_cache(timeout: float, byte_tokens: bool) -> None:
    """Fill the benchmark Numba cache so timed runs load kernels, never compile
    (for 2-byte tokens, and for byte tokens when a corpus has them)."""
    corpora = [(cor.zipf_corpus(TINY, seed=3), 2, c.ZIPF_VOCAB)]
    if byte_tokens:
        corpora.append((cor.source_corpus(TINY), 1, 256))
    for src, width, vocab in corpora:
        mm, _ = parts_budget(TINY, width)
        for tool in ("ours",) + (("ours-parts",) if mm else ()):
            run_dir = cor.fresh_copy(src, c.OUT / "runs" / "warm")
            procs.run_child(command(tool, run_dir, width, vocab, mm or 0), timeout=timeout)
    shutil.rmtree(c.OUT / "runs" / "warm", ignore_errors=True)


def available_tools(requested: list[str]) -> list[str]:
    tools = []
    for t in requested:
        try:
            if t.startswith("ours"):
                from infinigram.native import sort, ptrs  # noqa: F401
                if t == "ours-parts":
                    from infinigram.native import merge  # noqa: F401
            elif t == "infini-gram":
                import infini_gram  # noqa: F401
            elif t == "tokengrams":
                import tokengrams  # noqa: F401
        except ImportError as e:
            print(f"skipping {t}: {e}", file=sys.stderr)
            continue
        tools.append(t)
    return tools


def bench_corpus(name: str, src: Path, tools: list[str], runs: int, timeout: float) -> dict:
    info = cor.corpus_info(src)
    n = info["tokens"]
    vocab = info.get("vocab", c.ZIPF_VOCAB)
    width = info["width"]
    mm, n_parts = parts_budget(n, width)
    res = {"corpus": name, "tokens": n, "docs": info["docs"], "vocab": vocab, "width": width,
           "files": info.get("files"), "max_memory": mm, "parts": n_parts, "tools": {}, "identical": {}}
    # tokengrams reads 2-byte (or 4-byte) tokens only
    tools = [t for t in tools if (t != "ours-parts" or mm) and (t != "tokengrams" or width == 2)]
    for t in tools:
        res["tools"][t] = {"runs": [], "command": shell_command(t, width, vocab, mm or 0)}
    for r in range(runs):
        tables = {}
        for t in tools:
            if any(x["timeout"] for x in res["tools"][t]["runs"]):
                continue  # once past the timeout, never again: the bound is the result
            run_dir = cor.fresh_copy(src, c.OUT / "runs" / f"{name}-{t}")
            out = procs.run_child(command(t, run_dir, width, vocab, mm or 0), timeout=timeout)
            rec = {k: out[k] for k in ("wall_s", "rss_bytes", "rusage_rss_bytes",
                                       "tree_rss_bytes", "cpu_s", "rc", "timeout")}
            rec.update(procs.last_json(out["output"]))
            rec["index_bytes"] = index_bytes(run_dir, t)
            if out["rc"] != 0:
                rec["error"] = out["output"][-1500:]
            res["tools"][t]["runs"].append(rec)
            status = "TIMEOUT" if out["timeout"] else ("FAILED" if out["rc"] else "")
            rss = "" if out["timeout"] else f"{out['rss_bytes'] / 2**20:8.0f} MiB"
            print(f"  {name:8} run {r} {t:12} {out['wall_s']:8.2f} s  {rss} {status}", flush=True)
            if out["rc"] == 0 and (run_dir / "table.0").exists():
                tables[t] = run_dir / "table.0"
        for a, b in (("ours", "infini-gram"), ("ours-parts", "ours")):
            if a in tables and b in tables:
                same = filecmp.cmp(tables[a], tables[b], shallow=False)
                res["identical"].setdefault(f"{a} == {b}", []).append(same)
        for t in tools:
            shutil.rmtree(c.OUT / "runs" / f"{name}-{t}", ignore_errors=True)
    for t, d in res["tools"].items():
        ok = [x for x in d["runs"] if x["rc"] == 0 and not x["timeout"]]
        d["ok_runs"] = len(ok)
        d["wall_s"] = rep.median([x["wall_s"] for x in ok])
        d["inner_s"] = rep.median([x.get("inner_s") for x in ok])
        d["rss_bytes"] = rep.median([x["rss_bytes"] for x in ok])
        d["index_bytes"] = ok[-1]["index_bytes"] if ok else None
        d["mtok_s"] = n / d["wall_s"] / 1e6 if d["wall_s"] else None
        d["rss_over_index"] = d["rss_bytes"] / d["index_bytes"] if ok else None
        d["timed_out_after_s"] = next((x["wall_s"] for x in d["runs"] if x["timeout"]), None)
    return res


# ---------------------------------------------------------------- tokenization

def bench_tokenize(src: Path, runs: int, max_bytes: int, model: Path | None = None) -> dict:
    """Ours (encode_stream, 2 threads, a fresh tokenizer per run: a build
    loads its model once, and the fast BPE encoder's set-up is timed too) vs
    a plain SentencePieceProcessor.encode (batch, num_threads=2) loop with
    conversion to numpy, over the same batches (the builder's batch size)
    holding the first ``max_bytes`` of text; ``model``: the corpus's own
    unless given."""
    try:
        from infinigram import corpus, tokenizer as tk
    except ImportError as e:
        return {"error": f"not available yet: {e}"}
    import sentencepiece as spm
    files = [src / "text.jsonl"]
    model = model or src / "tokenizer.model"
    batches, nbytes = first_batches(files, max_bytes)
    sp = spm.SentencePieceProcessor(model_file=str(model))

    def plain():
        return [[np.asarray(x, dtype=np.uint32) for x in sp.encode(b.texts, num_threads=2)]
                for b in batches]

    def ours():
        tok = tk.resolve_tokenizer(str(model), threads=2)
        return [enc for _, enc in tk.encode_stream(iter(batches), tok, 2)]

    def ours_from_file():
        tok = tk.resolve_tokenizer(str(model), threads=2)
        stream = tk.encode_stream(corpus.iter_batches(files, "text"), tok, 2)
        for i, _ in enumerate(stream):
            if i + 1 == len(batches):
                stream.close()
                break

    ref, got = plain(), ours()
    flat_ref = np.concatenate([np.concatenate(x) for x in ref if x])
    flat_got = np.concatenate([np.concatenate([np.asarray(a) for a in g]) if
                               not isinstance(g, np.ndarray) else g for g in got if len(g)])
    same = bool(flat_ref.shape == flat_got.shape and np.array_equal(flat_ref, flat_got))
    times = {"plain": [], "ours": [], "ours_from_file": []}
    for _ in range(runs):
        for k, fn in (("plain", plain), ("ours", ours), ("ours_from_file", ours_from_file)):
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    fast = tk.resolve_tokenizer(str(model)).bpe_encoder() is not None
    out = {"corpus": src.name, "model": model.name, "text_bytes": nbytes, "batches": len(batches),
           "same_ids": same, "fast_encoder": fast, "times": times}
    for k, v in times.items():
        out[f"{k}_mb_s"] = nbytes / rep.median(v) / 1e6
    out["speedup"] = out["ours_mb_s"] / out["plain_mb_s"]
    out["speedup_from_file"] = out["ours_from_file_mb_s"] / out["plain_mb_s"]
    return out


def first_batches(files, max_bytes: int):
    """The builder's batches holding the first ``max_bytes`` of text, and their UTF-8 size."""
    from infinigram import corpus
    batches, seen = [], 0
    for b in corpus.iter_batches(files, "text"):
        batches.append(b)
        seen += b.nbytes
        if seen >= max_bytes:
            break
    return batches, sum(len(t.encode("utf-8")) for b in batches for t in b.texts)


def hf_tokenizer(src: Path, vocab: int = 8000, sample_bytes: int = 4 << 20) -> Path:
    """A byte-level BPE tokenizer.json (GPT-2's kind) trained by the
    ``tokenizers`` library on the first ``sample_bytes`` of ``src``'s text;
    made once and kept beside it."""
    path = src / "tokenizer.json"
    if not path.exists():
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        batches, _ = first_batches([src / "text.jsonl"], sample_bytes)
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator((t for b in batches for t in b.texts), trainers.BpeTrainer(
            vocab_size=vocab, show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        tok.save(str(path))
    return path


def bench_tokenize_hf(src: Path, runs: int, max_bytes: int, threads: int = 2) -> dict:
    """Hugging Face tokenization into token arrays: ours (encode_stream over
    HFTokenizer, ``threads`` workers) vs a plain ``Tokenizer.encode_batch``
    loop (add_special_tokens=False, its Rust pool on every core) with
    conversion to numpy, over the same batches (the builder's batch size)
    holding the first ``max_bytes`` of text; ``plain_fast``: the same loop
    with ``encode_batch_fast`` (no offsets), to show what the pipeline adds."""
    try:
        from tokenizers import Tokenizer
        from infinigram import tokenizer as tk
    except ImportError as e:
        return {"error": f"not available: {e}"}
    path = hf_tokenizer(src)
    batches, nbytes = first_batches([src / "text.jsonl"], max_bytes)

    def plain(fast=False):
        tok = Tokenizer.from_file(str(path))
        encode = tok.encode_batch_fast if fast else tok.encode_batch
        return [[np.asarray(e.ids, dtype=np.uint32)
                 for e in encode(b.texts, add_special_tokens=False)] for b in batches]

    def ours():
        tok = tk.resolve_tokenizer(str(path))
        return [enc for _, enc in tk.encode_stream(iter(batches), tok, threads)]

    same = all(len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
               for a, b in zip(plain(), ours()))
    times = {"plain": [], "plain_fast": [], "ours": []}
    for _ in range(runs):
        for k, fn in (("plain", plain), ("plain_fast", lambda: plain(True)), ("ours", ours)):
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    out = {"corpus": src.name, "text_bytes": nbytes, "batches": len(batches), "same_ids": same,
           "threads": threads, "times": times}
    for k, v in times.items():
        out[f"{k}_mb_s"] = nbytes / rep.median(v) / 1e6
    out["speedup"] = out["ours_mb_s"] / out["plain_mb_s"]
    return out


def bench_u32_build(n: int, runs: int) -> dict:
    """A u32 build vs the u16 build of the same ~n zipf ids (from one .npy,
    pre-tokenized input, token_width 4 vs 2), in-process, alternating, after
    a warm-up build of each width; checks both hold the same documents."""
    import infinigram as ig
    tmp = Path(tempfile.mkdtemp(prefix="u32-", dir=c.OUT))
    try:
        ids = cor.zipf_tokens(n)
        np.save(tmp / "ids.npy", ids)
        np.save(tmp / "warm.npy", ids[:20000])
        for w in (2, 4):
            ig.build([tmp / "warm.npy"], tmp / f"warm{w}", token_width=w, quiet=True)
        times: dict = {2: [], 4: []}
        for r in range(runs):
            for w in (2, 4):
                t0 = time.perf_counter()
                ig.build([tmp / "ids.npy"], tmp / f"idx{w}-{r}", token_width=w, quiet=True)
                times[w].append(time.perf_counter() - t0)
        a, b = ig.open(tmp / "idx2-0"), ig.open(tmp / "idx4-0")
        same = (a.n_docs, a.n_tokens) == (b.n_docs, b.n_tokens) and \
            a.get_doc(a.n_docs - 1).tokens.tolist() == b.get_doc(b.n_docs - 1).tokens.tolist()
        return {"ids": int(a.n_tokens), "docs": a.n_docs, "same_docs": same,
                "u16_s": times[2], "u32_s": times[4],
                "ratio": rep.median(times[4]) / rep.median(times[2])}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- report

def report(data: dict, heading: str = "## Build") -> str:
    m = data["machine"]
    lines = [heading, "", rep.machine_md(m),
             f"Command: `{data['command']}` ({data['runs']} runs per tool; medians; "
             f"{rep.busy_md(data)}).",
             "Wall = a fresh process from tokenized.0 to table.0 (Python start-up and imports "
             "included, our kernels loaded from a warm Numba cache); in-process = the build call "
             "alone; CPU = user + system seconds of the child and its children (less "
             "sensitive to other jobs than wall time, but it adds up both cores of a parallel "
             "tool); peak RSS = the larger of /usr/bin/time's maximum (largest single process) "
             "and the summed RSS of the process tree sampled every 20-200 ms (infini-gram runs two "
             "sorting processes at once), file-backed mmap pages included; index = tokenized.0 + "
             "offset.0 + table.0 (tokengrams: its .idx). A tool killed at the time-out is not "
             "run again on that corpus; its row shows the bound.", ""]
    if data.get("fixed"):
        lines += [f"Our build of a {TINY:,}-token corpus in a fresh child (Python, imports, "
                  f"kernels loaded from the warm cache: the cost that does not grow with the "
                  f"corpus): {data['fixed']['wall_s']:.2f} s, peak RSS "
                  f"{rep.fmt_bytes(data['fixed']['rss_bytes'])} (included in ours' rows).", ""]
    comp = data.get("compile", {})
    if comp and "error" not in comp:
        lines.append("JIT compile time of ours (excluded above): " + ", ".join(
            f"{k} {v['compile_s']:.1f} s (cold {v['cold_s']:.1f} s, warm {v['warm_s']:.1f} s)"
            for k, v in comp.items()) + ".")
        lines.append("")
    for res in data["corpora"]:
        lines.append(f"### {res['corpus']}: {res['tokens']:,} tokens, {res['docs']:,} documents")
        lines.append("")
        if res.get("width") == 1:
            lines += [f"Byte tokens (token width 1, separator 0xff): the first {res['files']:,} "
                      f"of this machine's Python and C/C++ source files in {cor.SOURCE_ROOTS_MD}, "
                      "one document per file, sorted by path (`corpora.source_files`). "
                      "tokengrams is left out: it reads 2- or 4-byte tokens only.", ""]
        best, bound = faster_peer(res)
        rows = []
        for t, d in res["tools"].items():
            speed = best / d["wall_s"] if best and d["wall_s"] else None
            wall = d["wall_s"] or (f"> {d['timed_out_after_s']:.0f} (killed)"
                                   if d.get("timed_out_after_s") else None)
            cpu = rep.median([x.get("cpu_s") for x in d["runs"] if not (x["rc"] or x["timeout"])])
            rows.append([t, wall, d.get("inner_s"), cpu, d["mtok_s"],
                         rep.fmt_bytes(d["rss_bytes"]), d["rss_over_index"],
                         f"{'> ' if bound else ''}{speed:.2f}x" if speed else None,
                         " ".join(f"{x['wall_s']:.2f}" + ("!" if x["rc"] or x["timeout"] else "")
                                  for x in d["runs"])])
        lines.append(rep.md_table(["tool", "wall s", "in-process s", "CPU s", "Mtok/s", "peak RSS",
                                 "RSS / index", "speed vs faster peer", "runs (s; ! = failed)"],
                                rows))
        extra = []
        if res["max_memory"] and "ours-parts" in res["tools"]:
            extra.append(f"ours-parts: --max-memory {res['max_memory']:,} bytes, "
                         f"{res['parts']} parts")
        for k, v in res["identical"].items():
            extra.append(f"table.0 {k}: {'byte-identical' if all(v) else 'DIFFERENT'} "
                         f"({sum(v)}/{len(v)} runs)")
        if extra:
            lines += ["", "; ".join(extra) + "."]
        lines.append("")
    shown = []  # each corpus whose commands differ from those already listed
    for res in data["corpora"]:
        cmds = {t: d["command"] for t, d in res["tools"].items()}
        if cmds in shown:
            continue
        shown.append(cmds)
        lines += [f"Command per tool ({res['corpus']}; DIR = a fresh directory holding links "
                  "to tokenized.0 and offset.0; ours runs `builder.index_tables` with the same "
                  "arguments in a `python -c` child, which is what this command calls):", ""]
        lines += [f"- {t}: `{cmd}`" for t, cmd in cmds.items()]
        lines.append("")
    for key, what in (("tokenize", "the corpus's vocab-8000 sentencepiece BPE model"),
                      ("tokenize_nmt_nfkc", "a vocab-8000 BPE model normalizing with nmt_nfkc")):
        if data.get(key):
            lines += tokenize_section(data[key], what)
    hf = data.get("tokenize_hf")
    if hf and "error" not in hf:
        lines += [f"### Tokenization ({hf['corpus']} text, a byte-level BPE tokenizer.json of "
                  "vocab 8000, Hugging Face `tokenizers`)", "", rep.md_table(
                      ["", "MB/s", "vs plain loop"],
                      [["plain `Tokenizer.encode_batch` loop + numpy", hf["plain_mb_s"], "1x"],
                       ["plain `encode_batch_fast` loop + numpy", hf["plain_fast_mb_s"],
                        f"{hf['plain_fast_mb_s'] / hf['plain_mb_s']:.2f}x"],
                       ["ours `encode_stream` (HFTokenizer)", hf["ours_mb_s"],
                        f"{hf['speedup']:.2f}x"]]), "",
                  f"The first {hf['text_bytes'] / 1e6:.1f} MB of text in {hf['batches']} "
                  f"batches; medians of {len(hf['times']['ours'])} runs; ids identical to the "
                  f"plain loop: {hf['same_ids']}.", ""]
    u32 = data.get("u32_build")
    if u32:
        lines += ["### u32 build vs u16 build of the same ids", "",
                  f"{u32['ids']:,} Zipfian ids in {u32['docs']:,} documents from one .npy file "
                  f"(pre-tokenized input), `ig.build(..., token_width=4)` against `token_width=2`, "
                  f"in-process, alternating: u16 {rep.median(u32['u16_s']):.2f} s, u32 "
                  f"{rep.median(u32['u32_s']):.2f} s (medians of {len(u32['u16_s'])}), ratio "
                  f"{u32['ratio']:.2f}; same documents: {u32['same_docs']}.", ""]
    lines += ["### Targets (issue 3)", ""] + [f"- {t}" for t in targets(data)]
    if not heading.startswith("## "):  # a nested block: push its sub-headings one level down
        lines = [lines[0]] + ["#" + x if x.startswith("### ") else x for x in lines[1:]]
    return "\n".join(lines)


def tokenize_section(tok: dict, what: str) -> list[str]:
    """Report lines of one bench_tokenize result for model ``what``."""
    lines = [f"### Tokenization ({tok.get('corpus', 'stdlib')} text, {what}, 2 threads)", ""]
    if "error" in tok:
        return lines + [f"Not measured: {tok['error']}", ""]
    lines.append(rep.md_table(
        ["", "MB/s", "vs plain loop"],
        [["plain `sp.encode(batch, num_threads=2)` + numpy", tok["plain_mb_s"], "1x"],
         ["ours `encode_stream`, same batches in memory", tok["ours_mb_s"],
          f"{tok['speedup']:.2f}x"],
         ["ours `encode_stream` reading text.jsonl", tok["ours_from_file_mb_s"],
          f"{tok['speedup_from_file']:.2f}x"]]))
    encoder = ("its own exact BPE encoder (`infinigram/bpe.py`)" if tok.get("fast_encoder", True)
               else "sentencepiece (no fast encoder for this model)")
    return lines + ["", f"The first {tok['text_bytes'] / 1e6:.1f} MB of text in {tok['batches']} "
                    "batches (the builder's batch size); "
                    f"ids identical to the plain loop: {tok['same_ids']}. Ours makes a "
                    f"fresh tokenizer each run (its set-up is timed) and encodes with {encoder}.",
                    ""]


def faster_peer(res: dict) -> tuple[float | None, bool]:
    """Median wall of the faster peer, or (when every peer was killed) the
    shortest time it ran before the kill, flagged as a lower bound."""
    walls = [res["tools"][p]["wall_s"] for p in PEERS if res["tools"].get(p, {}).get("wall_s")]
    if walls:
        return min(walls), False
    killed = [res["tools"][p]["timed_out_after_s"] for p in PEERS
              if res["tools"].get(p, {}).get("timed_out_after_s")]
    return (min(killed), True) if killed else (None, False)


def targets(data: dict) -> list[str]:
    by = {r["corpus"]: r for r in data["corpora"]}

    def speedup(res):
        o = res["tools"].get("ours", {}).get("wall_s")
        best, _ = faster_peer(res)
        return best / o if o and best else None

    out = []
    z = by.get("zipf")
    s = speedup(z) if z else None
    big = [r for r in data["corpora"] if r["tokens"] >= 300_000_000]
    if z and z["tokens"] < 300_000_000:
        verdict = (rep.met(s and s >= 3) if z["tokens"] >= 10_000_000
                   else "not measured at 15M (smaller run)")
        out.append(f"Build >= 3x the faster peer at ~15M tokens (zipf, {z['tokens']:,} tokens): "
                   f"{s and f'{s:.2f}x'} — {verdict}")
    st = by.get("stdlib")
    if st:
        s2 = speedup(st)
        out.append(f"Same on stdlib source ({st['tokens']:,} tokens): {s2 and f'{s2:.2f}x'} — "
                   + (rep.met(s2 and s2 >= 3) if st["tokens"] >= 5_000_000 else
                      "indicative only (quick run)"))
    for r in big:
        s4 = speedup(r)
        bound = "> " if faster_peer(r)[1] else ""
        out.append(f"Build >= 4x the faster peer at >= 300M tokens with long repeats "
                   f"({r['corpus']}, {r['tokens']:,} tokens): {s4 and f'{bound}{s4:.2f}x'} — "
                   f"{rep.met(s4 and s4 >= 4)}")
    if not big:
        out.append("Build >= 4x at >= 300M tokens: not measured in this run "
                   "(`--tokens 300M --corpora zipf,source`)")
    base = data.get("fixed", {}).get("rss_bytes")
    for res in data["corpora"]:
        for tool in ("ours", "ours-parts"):
            d = res["tools"].get(tool, {})
            if d.get("rss_over_index"):
                above = (f" ({(d['rss_bytes'] - base) / d['index_bytes']:.2f}x counting only "
                         f"what is above the {TINY:,}-token build's peak)") if base else ""
                out.append(f"Peak RSS <= 1.5x index size ({res['corpus']}, {tool}): "
                           f"{d['rss_over_index']:.2f}x{above} — "
                           f"{rep.met(d['rss_over_index'] <= 1.5)}")
        d = res["tools"].get("ours-parts", {})
        if d.get("rss_bytes") and res.get("max_memory"):  # the budget leaves out the fixed cost
            held = d["rss_bytes"] - (base or 0)
            above = f" ({int(held):,} above the {TINY:,}-token build's peak)" if base else ""
            out.append(f"Peak RSS within --max-memory ({res['corpus']}, ours-parts): "
                       f"{int(d['rss_bytes']):,}{above} of {res['max_memory']:,} bytes — "
                       f"{rep.met(held <= res['max_memory'])}")
    for tool, how in (("ours", ""), ("ours-parts", ", --max-memory parts")):
        base = z and z["tools"].get(tool, {}).get("wall_s")
        for name in ("block", "single"):
            r = by.get(name)
            w = r and r["tools"].get(tool, {}).get("wall_s")
            if base and w:
                out.append(f"Repetitive input ({name}{how}) <= 2x ordinary text of the same "
                           f"length: {w / base:.2f}x — {rep.met(w / base <= 2)}")
    for res in data["corpora"]:
        v = res["identical"].get("ours-parts == ours")
        if v is not None:
            out.append(f"--max-memory parts merged from disk, byte-identical ({res['corpus']}, "
                       f"{res['parts']} parts): {rep.met(all(v))}")
        v = res["identical"].get("ours == infini-gram")
        if v is not None:
            out.append(f"table.0 byte-identical to infini-gram's ({res['corpus']}): "
                       f"{rep.met(all(v))}")
    tok = data.get("tokenize")
    if tok and "error" not in tok:
        out.append(f"Tokenization >= 1.5x a plain encode(batch, num_threads=2) loop: "
                   f"{tok['speedup']:.2f}x — {rep.met(tok['speedup'] >= 1.5)}")
    elif any(r["corpus"] in ("stdlib", "jsonl") for r in data["corpora"]):
        out.append("Tokenization >= 1.5x: not measured")
    tok = data.get("tokenize_nmt_nfkc")
    if tok and "error" not in tok:
        out.append(f"Tokenization with an nmt_nfkc model >= 2x a plain encode(batch, "
                   f"num_threads=2) loop (issue 21): {tok['speedup']:.2f}x — "
                   f"{rep.met(tok['speedup'] >= 2)}")
    hf = data.get("tokenize_hf")
    if hf and "error" not in hf:
        out.append(f"Hugging Face tokenization >= 1.5x a plain encode_batch loop (issue 17): "
                   f"{hf['speedup']:.2f}x — {rep.met(hf['speedup'] >= 1.5)}")
    u32 = data.get("u32_build")
    if u32:
        out.append(f"u32 build <= 1.3x the u16 build of the same ids (issue 17): "
                   f"{u32['ratio']:.2f}x — {rep.met(u32['ratio'] <= 1.3)}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2M tokens, shorter timeouts")
    ap.add_argument("--tokens", default=None, help="synthetic corpus size (default 15M)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--corpora", default="stdlib,zipf,block,single",
                    help="comma list of stdlib, zipf, block, single, source, jsonl "
                         "(source: this machine's Python and C sources as byte tokens)")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--threads", type=int, default=0,
                    help="threads of our sort and infini-gram's --cpus (default: every core)")
    ap.add_argument("--peer-mem", type=int, default=8, help="infini-gram's --mem (GiB)")
    ap.add_argument("--jsonl", type=Path, help="a JSONL corpus (adds corpus 'jsonl')")
    ap.add_argument("--text-field", default="text")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per child run")
    ap.add_argument("--repeat-timeout", type=float, default=None,
                    help="seconds per child run on block/single (default 60, quick 30)")
    ap.add_argument("--tokenize-mb", type=float, default=None,
                    help="text to tokenize in the tokenization benchmark (default 16, quick 4)")
    rep.add_report_options(ap, "build", "build-large")
    args = ap.parse_args(argv)
    global THREADS, PEER_MEM
    THREADS, PEER_MEM = args.threads, args.peer_mem
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        return write_report(data, args, data["tokens"])
    n = cor.parse_count(args.tokens or ("2M" if args.quick else "15M"))
    args.repeat_timeout = args.repeat_timeout or (30 if args.quick else 60)
    args.tokenize_bytes = int((args.tokenize_mb or (4 if args.quick else 16)) * 1e6)
    timeout = args.timeout or (60 if args.quick else max(300, n / 1e6 * 20))
    names = [x for x in args.corpora.split(",") if x]
    if args.jsonl and "jsonl" not in names:
        names.append("jsonl")
    tools = available_tools(args.tools.split(","))
    m = rep.machine()
    print(f"build benchmark: {n:,} tokens, tools {tools}, load {m['load_avg']}", flush=True)
    data = {"machine": m, "tokens": n, "runs": args.runs,
            "busy": args.busy or m["load_avg"][0] > 1.0,
            "command": " ".join(["python benchmarks/bench_build.py"] + (argv or sys.argv[1:])),
            "corpora": []}
    if any(t.startswith("ours") for t in tools):
        data["compile"] = compile_time(timeout)
        print(f"compile: {data['compile']}", flush=True)
        warm_cache(timeout, byte_tokens="source" in names)
        data["fixed"] = fixed_cost(timeout)
    for name in names:
        src = {"stdlib": lambda: cor.stdlib_corpus(6_000_000 if args.quick else None),
               "zipf": lambda: cor.zipf_corpus(n),
               "block": lambda: cor.block_corpus(n), "single": lambda: cor.single_corpus(n),
               "source": lambda: cor.source_corpus(n),
               "jsonl": lambda: cor.jsonl_corpus(args.jsonl, args.text_field)}[name]()
        slow = name in ("block", "single")  # peers are quadratic here: bound, don't wait
        data["corpora"].append(bench_corpus(name, src, tools, args.runs,
                                            args.repeat_timeout if slow else timeout))
        if name in ("stdlib", "jsonl") and "tokenize" not in data:
            data["tokenize"] = bench_tokenize(src, args.runs, args.tokenize_bytes)
            print(f"tokenize: {data['tokenize']}", flush=True)
            data["tokenize_nmt_nfkc"] = bench_tokenize(src, args.runs, args.tokenize_bytes,
                                                       cor.normalized_model(src))
            print(f"tokenize (nmt_nfkc): {data['tokenize_nmt_nfkc']}", flush=True)
            data["tokenize_hf"] = bench_tokenize_hf(src, args.runs, args.tokenize_bytes)
            print(f"tokenize (Hugging Face): {data['tokenize_hf']}", flush=True)
        rep.save_json(f"build-{n}-{'-'.join(names)}.json", data)
    data["u32_build"] = bench_u32_build(n, args.runs)
    print(f"u32 build vs u16: {data['u32_build']}", flush=True)
    data["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    path = rep.save_json(f"build-{n}-{'-'.join(names)}.json", data)
    write_report(data, args, n)
    print(f"wrote {path}")


def write_report(data: dict, args, n: int) -> None:
    text = report(data, "## Build" if args.section == "build" else
                  f"### Build, {n / 1e6:g}M tokens ({args.section})")
    print(text)
    if not args.no_results:
        if args.section == "build":
            rep.update_results("build", text, before="queries")
        else:
            rep.update_results(args.section, text, after=("build",), before="queries")


if __name__ == "__main__":
    main()
