"""∞-gram + small neural LM interpolation, end to end on CPU (issue 4).

Splits a corpus into train / valid / test documents by a hash of each
document's name, builds an index of train (sentencepiece trained on train),
trains a small GPT on the same train tokens for a fixed time, then reports
test perplexity of the GPT alone and mixed with the ∞-gram (λs fitted on
valid only), ∞-gram accuracy by effective n, the share of sparse estimates,
the same without near-duplicate test documents, and Engine.score throughput.
Writes the Interpolation section of benchmarks/RESULTS.md and
benchmarks/interpolation.png (matplotlib, a bench-only dependency).

    python benchmarks/interpolation.py                     # Python stdlib sources
    python benchmarks/interpolation.py --corpus docs.jsonl # any JSONL with a text field
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import update_results  # noqa: E402
from model import GPT, GPTConfig, token_probs, train, training_windows  # noqa: E402

from infinigram.builder import build  # noqa: E402
from infinigram.engine import open as open_index  # noqa: E402
from infinigram.interpolate import argmax_hits, fit, report  # noqa: E402

HERE = Path(__file__).resolve().parent


def stdlib_documents() -> list[tuple[str, str]]:
    """(relative path, source) of every *.py file of the standard library, site-packages excluded."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        if rel.startswith("site-packages/"):
            continue
        try:
            out.append((rel, f.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue
    return out


def jsonl_documents(path: str, field: str) -> list[tuple[str, str]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if line.strip():
                out.append((f"{path}:{i}", json.loads(line)[field]))
    return out


def name_hash(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def split_of(name: str, valid_pct: int, test_pct: int) -> str:
    h = name_hash(name) % 100
    return "test" if h < test_pct else "valid" if h < test_pct + valid_pct else "train"


def take(docs, budget: int, cap: int):
    """Documents in order, each cut to ``cap`` tokens, until ``budget`` tokens are taken."""
    out, total = [], 0
    for name, ids in docs:
        if total >= budget:
            break
        ids = ids[:cap]
        out.append((name, ids))
        total += len(ids)
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def plot(path: Path, rep_all, rep_clean) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [bk.label for bk in rep_all.buckets]
    x = np.arange(len(labels))
    acc = [100 * bk.accuracy if bk.tokens else 0 for bk in rep_all.buckets]
    share = [100 * bk.tokens / rep_all.tokens for bk in rep_all.buckets]
    a.bar(x - 0.2, acc, 0.4, label="∞-gram next-token accuracy")
    a.bar(x + 0.2, share, 0.4, label="share of test tokens")
    a.set_xticks(x, labels)
    a.set_xlabel("effective n")
    a.set_ylabel("%")
    a.set_ylim(0, 100)
    a.legend(fontsize=8)
    a.set_title("∞-gram on held-out documents")
    names = ["all test docs", "near-dups left out"]
    neural = [rep_all.ppl_neural, rep_clean.ppl_neural]
    mixed = [rep_all.ppl_interpolated, rep_clean.ppl_interpolated]
    xb = np.arange(2)
    b.bar(xb - 0.2, neural, 0.4, label="GPT alone")
    b.bar(xb + 0.2, mixed, 0.4, label="GPT + ∞-gram")
    for i, r in enumerate((rep_all, rep_clean)):
        b.text(i + 0.2, mixed[i], f"{100 * r.improvement:.0f}%", ha="center", va="bottom")
    b.set_xticks(xb, names)
    b.set_ylabel("test perplexity")
    b.legend(fontsize=8)
    b.set_title("Perplexity (label: improvement 1−(PPL−1)/(PPL₀−1))")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", help="JSONL file with a text field (default: Python stdlib sources)")
    ap.add_argument("--text-field", default="text")
    ap.add_argument("--out", default=str(HERE / "out" / "interpolation"))
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--sample-mb", type=float, default=4.0,
                    help="train the tokenizer on this many MB of train (a spread sample)")
    ap.add_argument("--valid-pct", type=int, default=5)
    ap.add_argument("--test-pct", type=int, default=5)
    ap.add_argument("--valid-tokens", type=int, default=50_000)
    ap.add_argument("--test-tokens", type=int, default=150_000)
    ap.add_argument("--doc-tokens", type=int, default=2048,
                    help="evaluate at most this many leading tokens of a valid/test document")
    ap.add_argument("--train-seconds", type=float, default=540.0)
    ap.add_argument("--max-steps", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--d-model", type=int, default=160)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=5)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--near-dup-n", type=int, default=32)
    ap.add_argument("--near-dup-share", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-results", action="store_true",
                    help="do not write the Interpolation section of benchmarks/RESULTS.md")
    ap.add_argument("--plot", default=str(HERE / "interpolation.png"), help="'' to skip")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    load_start = f"{os.getloadavg()[0]:.1f}"
    times = {}

    def stage(name, t0):
        times[name] = time.perf_counter() - t0
        print(f"[{time.perf_counter() - t_all:6.1f} s] {name}: {times[name]:.1f} s", flush=True)

    # ---- corpus and split
    t0 = time.perf_counter()
    docs = jsonl_documents(args.corpus, args.text_field) if args.corpus else stdlib_documents()
    split = {"train": [], "valid": [], "test": []}
    # hash order within each split: any prefix (tokenizer sample, eval budget) is a spread sample
    for name, text in sorted(docs, key=lambda d: name_hash(d[0])):
        split[split_of(name, args.valid_pct, args.test_pct)].append((name, text))
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with open(out / "train.jsonl", "w", encoding="utf-8") as f:
        for name, text in split["train"]:
            f.write(json.dumps({"text": text, "name": name}) + "\n")
    stage("read + split", t0)

    # ---- index (sentencepiece trained on train)
    t0 = time.perf_counter()
    build([str(out / "train.jsonl")], out / "index", vocab_size=args.vocab, quiet=True,
          threads=args.threads, train_sample_bytes=int(args.sample_mb * 2**20))
    stage("build index", t0)
    eng = open_index(out / "index")
    vocab = eng.vocab_size
    train_ids = [np.asarray(eng.get_doc(i).tokens, dtype=np.int64) for i in range(eng.n_docs)]
    evalsets = {}
    for part, budget in (("valid", args.valid_tokens), ("test", args.test_tokens)):
        toks = ((n, np.asarray(eng.tokenize(t), dtype=np.int64)) for n, t in split[part])
        evalsets[part] = take(((n, ids) for n, ids in toks if len(ids)), budget,
                              args.doc_tokens)
    print(f"  train {len(train_ids)} docs {eng.n_tokens} tokens; "
          + "; ".join(f"{k} {len(v)} docs {sum(len(i) for _, i in v)} tokens"
                      for k, v in evalsets.items()), flush=True)

    # ---- ∞-gram scores (+ throughput)
    t0 = time.perf_counter()
    eng.score(evalsets["valid"][0][1][:16])  # compile / warm the kernels
    inf = {}
    for part, items in evalsets.items():
        t1 = time.perf_counter()
        inf[part] = [eng.score(ids) for _, ids in items]
        times[f"score {part}"] = time.perf_counter() - t1
    n_test = sum(len(i) for _, i in evalsets["test"])
    score_tps = n_test / times["score test"]
    stage("∞-gram score valid + test", t0)
    t0 = time.perf_counter()
    hits = np.concatenate([argmax_hits(eng, ids, r)
                           for (_, ids), r in zip(evalsets["test"], inf["test"])])
    stage("∞-gram argmax hits (test)", t0)

    # ---- neural model
    t0 = time.perf_counter()
    cfg = GPTConfig(vocab, context=args.context, d_model=args.d_model, n_layer=args.layers,
                    n_head=args.heads)
    model = GPT(cfg)
    stream = training_windows(train_ids, vocab)
    info = train(model, stream, seconds=args.train_seconds, max_steps=args.max_steps,
                 batch=args.batch, lr=args.lr, seed=args.seed)
    stage("train GPT", t0)
    t0 = time.perf_counter()
    nn_p = {part: [token_probs(model, ids) for _, ids in items]
            for part, items in evalsets.items()}
    stage("GPT probabilities valid + test", t0)

    # ---- fit on valid, report on test
    cat = lambda rs, f: np.concatenate([getattr(r, f) for r in rs])  # noqa: E731
    lam = fit(cat(inf["valid"], "probs"), np.concatenate(nn_p["valid"]),
              cat(inf["valid"], "sparse"))
    p_inf, sparse, eff = (cat(inf["test"], f) for f in ("probs", "sparse", "effective_n"))
    p_nn = np.concatenate(nn_p["test"])
    rep_all = report(p_inf, p_nn, sparse, eff, lam, hits=hits)
    doc_of = np.concatenate([np.full(len(ids), k) for k, (_, ids) in enumerate(evalsets["test"])])
    long_share = np.array([np.mean(r.effective_n > args.near_dup_n) for r in inf["test"]])
    dup_docs = np.flatnonzero(long_share >= args.near_dup_share)
    keep = ~np.isin(doc_of, dup_docs)
    rep_clean = report(p_inf[keep], p_nn[keep], sparse[keep], eff[keep], lam, hits=hits[keep])
    total = time.perf_counter() - t_all

    # ---- write
    cmd = "python " + " ".join(shlex.quote(a) for a in
                               [os.path.relpath(__file__, Path.cwd())] + sys.argv[1:])
    dups = ", ".join(evalsets["test"][k][0] for k in dup_docs[:8]) + \
        (" …" if len(dup_docs) > 8 else "")
    n_valid = sum(len(i) for _, i in evalsets["valid"])
    text = "\n".join([
        "## Interpolation", "",
        f"Machine: {machine()}. Command: `{cmd}` ({total / 60:.1f} min in all; load "
        f"average {load_start} at the start, {os.getloadavg()[1]:.1f} over the last 5 min "
        f"at the end).", "",
        f"Corpus: {'Python ' + platform.python_version() + ' standard library *.py files' if not args.corpus else args.corpus}, "
        f"one document per file, split by a hash of the name: train {len(split['train'])} docs "
        f"({eng.n_tokens} tokens after sentencepiece, vocab {vocab}, BPE model trained on a {args.sample_mb:g} MB sample of train; "
        f"index built in {times['build index']:.0f} s), valid {len(evalsets['valid'])} docs / "
        f"{n_valid} tokens, test {len(evalsets['test'])} docs / {n_test} tokens (each "
        f"document's first {args.doc_tokens} tokens at most).", "",
        f"GPT: {model.n_params() / 1e6:.2f} M parameters (d {args.d_model}, {args.layers} "
        f"layers, {args.heads} heads, context {args.context}), trained on train for "
        f"{info['seconds']:.0f} s on {args.threads} CPU threads: {info['steps']} steps, "
        f"{info['tokens'] / 1e6:.2f} M tokens ({info['tokens'] / len(stream):.1%} of one "
        f"epoch), final train loss {info['final_loss']:.3f}. "
        f"Test predictions see a sliding window of ≥ {args.context // 2} tokens. λs fitted on "
        f"valid only.", "",
        "### All test documents", "",
        rep_all.to_markdown(),
        f"### Near-duplicates left out ({len(dup_docs)} test documents with ≥ "
        f"{100 * args.near_dup_share:.0f}% of tokens at effective n > {args.near_dup_n}: "
        f"{dups or 'none'})", "",
        rep_clean.to_markdown(),
        f"Engine.score throughput on the test documents: {score_tps / 1e3:.1f} k tokens/s "
        f"({n_test} tokens in {times['score test']:.2f} s, one thread). Exact ∞-gram argmax "
        f"for the accuracy table: {times['∞-gram argmax hits (test)']:.1f} s.", "",
        "Stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()) + ".", "",
    ])
    summary = {"args": vars(args), "times": times, "train": info, "lambdas": vars(lam),
               "ppl_neural": rep_all.ppl_neural, "ppl_interpolated": rep_all.ppl_interpolated,
               "improvement": rep_all.improvement, "improvement_clean": rep_clean.improvement,
               "sparse_share": rep_all.sparse_share, "score_tokens_per_s": score_tps,
               "near_dup_docs": [evalsets["test"][k][0] for k in dup_docs]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print(text)
    if not args.no_results:
        update_results("interpolation", text, after=("queries-stdlib", "queries", "build"))
    if args.plot and not plot(Path(args.plot), rep_all, rep_clean):
        print("matplotlib is not installed: no plot (pip install matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
