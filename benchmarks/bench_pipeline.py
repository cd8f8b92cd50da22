"""End to end from text (issue 21): a JSONL file of source code into an
index, ours (``infinigram build``: read, tokenize, sort) against the peers'
pipeline (sentencepiece's ``encode(batch, num_threads)`` into infini-gram's
token files, then infini-gram's indexing), with the same sentencepiece BPE
model normalizing with ``nmt_nfkc``; checks that both hold the same tokens.

    python benchmarks/bench_pipeline.py                   # >= 1 GB of text
    python benchmarks/bench_pipeline.py --bytes 50M --timeout 600
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402
import corpora as cor  # noqa: E402
import procs  # noqa: E402
import report as rep  # noqa: E402
import bench_build as bb  # noqa: E402

VOCAB = 32_000
PEER_TOKENIZE = """
import json, sys, time
import numpy as np, sentencepiece as spm
src, model, out, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sp = spm.SentencePieceProcessor(model_file=model)
sep, pos = np.array([0xFFFF], "<u2").tobytes(), 0
with open(src, encoding="utf-8") as f, open(out + "/tokenized.0", "wb") as tok, \\
        open(out + "/offset.0", "wb") as off:
    def flush(batch):
        global pos
        for ids in sp.encode(batch, num_threads=threads):
            off.write(np.array([pos], "<u8").tobytes())
            tok.write(sep + np.asarray(ids, "<u2").tobytes())
            pos += 2 * (len(ids) + 1)
    batch, size = [], 0
    for line in f:
        batch.append(json.loads(line)["text"])
        size += len(batch[-1])
        if size >= 16 << 20:
            flush(batch)
            batch, size = [], 0
    flush(batch)
"""


def source_text(n: int) -> Path:
    """``text.jsonl``: this machine's source files (``cor.source_files`` and
    then ``MORE_SOURCE``), one record per file, until ``n`` bytes of text."""
    d = c.CORPORA / f"source-text-{n}"
    if not (d / "corpus.json").exists():
        d.mkdir(parents=True, exist_ok=True)
        total, texts, names = 0, [], []
        for p in cor.source_files(more=True):
            if total >= n:
                break
            texts.append(cor.read_text(p))
            names.append(str(p))
            total += len(texts[-1].encode())
        cor.write_jsonl(d / "text.jsonl", texts, names)
        model = cor.train_spm(texts[::max(1, len(texts) // 20_000)], VOCAB,
                              d / "tokenizer.model", rule="nmt_nfkc")
        (d / "corpus.json").write_text(json.dumps({"text_bytes": total, "docs": len(texts),
                                                   "model": model.name}))
    return d


def run(d: Path, timeout: float, threads: int) -> dict:
    """Both pipelines on corpus ``d`` in fresh processes; their tokens compared."""
    work = c.OUT / "pipeline"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    text, model = d / "text.jsonl", d / "tokenizer.model"
    with open(text, encoding="utf-8") as f, open(work / "warm.jsonl", "w") as w:
        w.writelines(line for _, line in zip(range(200), f))
    warm = procs.run_child([c.PYTHON, "-m", "infinigram", "build", str(work / "warm.jsonl"),
                            "-o", str(work / "warm"), "--tokenizer", str(model), "--quiet"],
                           timeout=timeout)  # our kernels compiled into the cache, untimed
    ours = procs.run_child([c.PYTHON, "-m", "infinigram", "build", str(text), "-o",
                            str(work / "ours"), "--tokenizer", str(model), "--quiet",
                            "--threads", str(threads)], timeout=timeout)
    print(f"ours {ours['wall_s']:.1f} s (rc {ours['rc']})", flush=True)
    peer = work / "peer"
    peer.mkdir()
    spm_run = procs.run_child([c.PYTHON, "-c", PEER_TOKENIZE, str(text), str(model), str(peer),
                               str(threads)], timeout=timeout)
    print(f"sentencepiece {spm_run['wall_s']:.1f} s (rc {spm_run['rc']})", flush=True)
    (peer / "empty").mkdir()
    bb.THREADS = threads
    ig_run = procs.run_child([c.PYTHON, "-m", "infini_gram.indexing", "--data_dir",
                              str((peer / "empty").resolve()), "--save_dir", str(peer.resolve()),
                              *bb.peer_flags(2)], timeout=timeout)
    print(f"infini-gram {ig_run['wall_s']:.1f} s (rc {ig_run['rc']}, "
          f"timeout {ig_run['timeout']})", flush=True)
    mine = np.concatenate([np.fromfile(p, "<u2") for p in
                           sorted((work / "ours").glob("tokenized.*"),
                                  key=lambda p: int(p.suffix[1:]))])
    theirs = np.fromfile(peer / "tokenized.0", "<u2")
    out = {"warm_up_s": warm["wall_s"], "ours": ours, "sentencepiece": spm_run, "infini-gram": ig_run,
           "tokens": int((theirs != 0xFFFF).sum()), "same_tokens": bool(np.array_equal(mine, theirs)),
           "shards": len(list((work / "ours").glob("table.*")))}
    shutil.rmtree(work, ignore_errors=True)
    return out


def report(data: dict) -> str:
    r, info = data["result"], data["corpus"]
    ours, spm_s, ig = r["ours"], r["sentencepiece"], r["infini-gram"]
    peer_s = spm_s["wall_s"] + ig["wall_s"]
    killed = ig["timeout"] or ig["rc"] != 0
    bound = ">" if killed else ""
    mb = info["text_bytes"] / 1e6
    peer_cpu = spm_s["cpu_s"] + ig["cpu_s"]
    rows = [["ours (`infinigram build`)", f"{ours['wall_s']:.1f}", f"{ours['cpu_s']:.0f}",
             f"{mb / ours['wall_s']:.2f}", rep.fmt_bytes(ours["rss_bytes"]), "1x"],
            ["sentencepiece encode", f"{spm_s['wall_s']:.1f}", f"{spm_s['cpu_s']:.0f}",
             f"{mb / spm_s['wall_s']:.2f}", rep.fmt_bytes(spm_s["rss_bytes"]), ""],
            ["infini-gram indexing", f"{bound}{ig['wall_s']:.1f}" + (" (killed)" if killed else ""),
             "—" if killed else f"{ig['cpu_s']:.0f}", "", rep.fmt_bytes(ig["rss_bytes"]), ""],
            ["peers' pipeline (sum)", f"{bound}{peer_s:.1f}", "" if killed else f"{peer_cpu:.0f}",
             f"{bound and '<'}{mb / peer_s:.2f}", "",
             f"{bound}{peer_s / ours['wall_s']:.2f}x slower (wall)"
             + ("" if killed else f", {peer_cpu / ours['cpu_s']:.2f}x (CPU)")]]
    lines = rep.preamble("### End to end from text (issue 21)", data) + [
        "",
        f"{mb:,.0f} MB of source text as JSONL ({info['docs']:,} files of this machine's "
        f"Python, C/C++, Rust and other sources, `corpora.source_files(more=True)`), "
        f"{r['tokens']:,} tokens of a {VOCAB}-piece sentencepiece BPE model normalizing with "
        f"nmt_nfkc, trained on a sample of it; {data['threads']} threads each; ours wrote "
        f"{r['shards']} shard(s); the same tokens in the same order: {r['same_tokens']}. "
        f"Each step is a fresh process; ours ran once first on the first 200 files "
        f"({r['warm_up_s']:.1f} s, untimed) so that its kernels come from a warm cache.",
        "", rep.md_table(["step", "wall s", "CPU s", "MB/s", "peak RSS", "vs ours"], rows), ""]
    if data.get("note"):
        lines += [f"Observed during the run: {data['note']}; CPU seconds are less sensitive to "
                  "other jobs than wall seconds.", ""]
    lines += [
        f"- End-to-end build of >= 1 GB of source text >= 4x the sentencepiece + infini-gram "
        f"pipeline (issue 21): {bound}{peer_s / ours['wall_s']:.2f}x — "
        f"{rep.met(peer_s / ours['wall_s'] >= 4 and info['text_bytes'] >= 1e9)}"]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", default="1.05G", help="text to index (default 1.05G)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per step")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--note", help="an observation to print with the results (e.g. other "
                    "jobs seen running); kept in the saved run")
    rep.add_report_options(ap, "pipeline", "pipeline-quick")
    args = ap.parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        data["busy"] = data["busy"] or args.busy
        data["note"] = args.note or data.get("note")
    else:
        d = source_text(cor.parse_count(args.bytes))
        m = rep.machine()
        print(f"pipeline benchmark on {d.name}: load {m['load_avg']}", flush=True)
        t0 = time.perf_counter()
        data = {"machine": m, "busy": args.busy or m["load_avg"][0] > 1.0, "note": args.note,
                "command": " ".join(["python benchmarks/bench_pipeline.py"]
                                    + (argv or sys.argv[1:])),
                "threads": args.threads, "corpus": json.loads((d / "corpus.json").read_text()),
                "result": run(d, args.timeout, args.threads)}
        data["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
        data["seconds"] = time.perf_counter() - t0
    rep.save_json(f"pipeline-{args.section}.json", data)
    text = report(data)
    print(text)
    if not args.no_results:
        rep.update_results(args.section, text, after=("build-tokenize",))


if __name__ == "__main__":
    main()
