"""Queries at scale (issue 20): the first queries after ``open`` on large
indexes, and count throughput from several threads.

For each Zipfian index size, in a fresh child process with our kernels
already loaded (a 15M-token index is opened and queried first, so that
loading compiled code from the cache is not counted): ``open``, then 100 ``count``
calls one at a time (n-grams of 1-10 tokens from the corpus), each timed;
then the wait until the background thread has built the key sample, and
``count`` throughput from 1, 2, ... threads sharing one engine.

    python benchmarks/bench_scale.py                          # 15M and 300M
    python benchmarks/bench_scale.py --tokens 300M,1B --threads 1,4,16
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402
import corpora as cor  # noqa: E402
import procs  # noqa: E402
import report as rep  # noqa: E402

FIRST = 100
"""Queries timed after open."""
WARM = 15_000_000
"""Tokens of the index queried first, to load the kernels (its table entries
have the width of the larger indexes': the same compiled code)."""

CHILD = """
import json, sys, threading, time
from array import array
import numpy as np
import infinigram as ig
from infinigram.native import search
index, warm_index, threads = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3].split(",")]
rng = np.random.default_rng(0)
tokens = np.memmap(index + "/tokenized.0", dtype="<u2", mode="r")
def ngrams(k, lengths):
    out = []
    while len(out) < k:
        n = int(lengths())
        s = int(rng.integers(0, tokens.size - n))
        q = tokens[s:s + n]
        if (q != 65535).all():
            out.append([int(x) for x in q])
    return out
first = ngrams(FIRST, lambda: rng.integers(1, 11))
many = ngrams(200_000, lambda: 5)
warm = ig.open(warm_index)
for q in first:
    warm.count(q)
while warm.searchers[0]._search is None:
    time.sleep(0.001)
t0 = time.perf_counter()
eng = ig.open(index)
open_s = time.perf_counter() - t0
times = []
for q in first:
    t = time.perf_counter()
    eng.count(q)
    times.append(time.perf_counter() - t)
t0 = time.perf_counter()
while any(s._search is None for s in eng.searchers):
    time.sleep(0.001)
ready_s = time.perf_counter() - t0
shard = eng.searchers[0]
kernel = shard._direct[(search.count, array)]  # the compiled count, no Python around it
bare = [array("q", q) for q in many]
def run(part):
    for q in part:
        eng.count(q)
def run_bare(part):
    args = shard.search_args()
    for q in part:
        kernel(args, q, 0, 65535)
def rates(fn, queries):
    fn(queries[:5000])
    out = {}
    for T in threads:
        ts = [threading.Thread(target=fn, args=(queries[i::T],)) for i in range(T)]
        t = time.perf_counter()
        for x in ts:
            x.start()
        for x in ts:
            x.join()
        out[T] = len(queries) / (time.perf_counter() - t)
    return out
print(json.dumps({"open_s": open_s, "first_s": times, "sample_wait_s": ready_s,
                  "count_per_s": rates(run, many), "kernel_per_s": rates(run_bare, bare)}))
""".replace("FIRST", str(FIRST))


def index_dir(n: int, threads: int | None) -> Path:
    """A Zipfian index of n tokens built by ours (cached under out/index)."""
    d = c.OUT / "index" / f"zipf-{n}"
    if not (d / "manifest.json").exists():
        from infinigram import builder
        src = cor.zipf_corpus(n)
        cor.fresh_copy(src, d)
        builder.index_tables(d, token_width=2, vocab_size=c.ZIPF_VOCAB, threads=threads,
                             quiet=True)
    return d


def bench_size(n: int, threads: list[int], build_threads: int | None) -> dict:
    d = index_dir(n, build_threads)
    warm = index_dir(WARM, build_threads)
    r = procs.run_child([c.PYTHON, "-c", CHILD, str(d), str(warm), ",".join(map(str, threads))],
                        timeout=1800)
    got = procs.last_json(r["output"])
    if r["rc"] or not got:
        raise RuntimeError(r["output"][-2000:])
    first = sorted(got["first_s"])
    got.update(tokens=n, slowest_ms=first[-1] * 1e3, median_us=first[len(first) // 2] * 1e6)
    print(f"  {n:,} tokens: open {got['open_s'] * 1e3:.1f} ms, first {FIRST}: slowest "
          f"{got['slowest_ms']:.2f} ms, median {got['median_us']:.1f} µs; sample ready after "
          f"{got['sample_wait_s'] * 1e3:.0f} ms more; count/s {got['count_per_s']}", flush=True)
    return got


def report(data: dict) -> str:
    threads = data["threads"]
    lines = rep.preamble("### Queries at scale (issue 20)", data) + [
             f"Each size in a fresh process with the kernels already loaded (a {WARM:,}-token "
             f"index opened and queried first): `open`, then {FIRST} `count` calls one at a time (1-10 "
             "tokens, from the corpus), each timed; then the wait for the background thread to "
             "finish the key sample; then `count` throughput (5-token lists, 200,000 calls "
             "shared by T threads, one engine).", ""]
    lines.append(rep.md_table(["index tokens", "open ms", f"slowest of first {FIRST} ms",
                               f"median of first {FIRST} µs", "sample built after (ms)"],
                              [[f"{s['tokens']:,}", s["open_s"] * 1e3, s["slowest_ms"],
                                s["median_us"], s["sample_wait_s"] * 1e3]
                               for s in data["sizes"]]))
    lines += ["", "Calls per second from T threads sharing one engine: `count` (5-token lists), "
              "and the compiled count kernel called directly with the same queries (no Python "
              "around it: the floor that the GIL hand-over between threads sets).", ""]
    rows = []
    for s in data["sizes"]:
        for key, label in (("count_per_s", "Engine.count"), ("kernel_per_s", "kernel alone")):
            rate = {int(k): v for k, v in s[key].items()}
            rows.append([f"{s['tokens']:,}", label]
                        + [f"{rate[t]:,.0f} ({rate[t] / rate[threads[0]]:.2f}x)"
                           for t in threads])
    lines.append(rep.md_table(["index tokens", "calls"]
                              + [f"{t} thread{'s' * (t > 1)}" for t in threads], rows))
    lines += ["", "#### Targets (issue 20)", ""]
    for s in data["sizes"]:
        lines.append(f"- slowest of the first {FIRST} queries <= 50 ms at {s['tokens']:,} "
                     f"tokens: {s['slowest_ms']:.2f} ms — {rep.met(s['slowest_ms'] <= 50)}")
    if 1 in threads and 2 in threads:
        for s in data["sizes"]:
            rate = {int(k): v for k, v in s["count_per_s"].items()}
            ratio = rate[2] / rate[1]
            lines.append(f"- 2 threads >= 1.6x one thread's count throughput "
                         f"({s['tokens']:,} tokens): {ratio:.2f}x — {rep.met(ratio >= 1.6)}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", default="15M,300M", help="comma list of index sizes")
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--build-threads", type=int, default=None,
                    help="threads of the index builds (default: every core)")
    rep.add_report_options(ap, "scale", "scale-16")
    args = ap.parse_args(argv)
    threads = [int(x) for x in args.threads.split(",")]
    rep.measure_and_report(args, argv, "bench_scale", lambda: {
        "threads": threads, "sizes": [bench_size(cor.parse_count(t), threads, args.build_threads)
                                      for t in args.tokens.split(",")]},
        report, after=("queries-stdlib", "queries"))

if __name__ == "__main__":
    main()
