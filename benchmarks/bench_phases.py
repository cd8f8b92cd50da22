"""The sort by output ranges phase by phase on 1, 2, ... threads (issue 15).

One process sorts a Zipfian shard as a build does from 2 threads on (rank
the sample, classify each suffix into its range, sort the ranges, each
written to the table file as it is sorted), once per thread count, after
a warm-up run on the most threads that loads the kernels and first touches
the memory (kept out of the table). For each phase: seconds per thread
count and the speed-up over 1 thread; for the whole sort, the serial
fraction that speed-up implies (Amdahl) and what it projects to
``--project`` cores. Every run's table must be the same bytes.

    python benchmarks/bench_phases.py                        # 300M tokens, threads 1,2
    python benchmarks/bench_phases.py --threads 1,2,4,16 --project 16
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402
import corpora as cor  # noqa: E402
import report as rep  # noqa: E402

PHASES = ("rank sample", "classify", "sort ranges")


def sort_once(tokens: np.ndarray, threads: int, table: Path) -> tuple[dict, str]:
    """Seconds per phase of one sort by ranges into ``table``, and the
    table's sha256."""
    from infinigram import format as fmt, storage
    from infinigram.native import cover, ranges
    n, pointer = len(tokens), fmt.pointer_width(tokens.nbytes)
    with open(table, "wb") as f:
        storage.reserve(f, n * pointer)
    times = {}
    t = time.perf_counter()
    sample = cover.rank_sample(tokens, threads=threads)
    times["rank sample"] = time.perf_counter() - t
    t = time.perf_counter()
    which = ranges.classify_all(tokens, sample, threads)
    times["classify"] = time.perf_counter() - t
    t = time.perf_counter()
    with storage.UncachedWriter(table) as w:
        ok = ranges.sort_ranges(tokens, sample, which, pointer,
                                lambda i, data: w.write(data, i * pointer), threads,
                                align=storage.ALIGN)
    times["sort ranges"] = time.perf_counter() - t
    if not ok:
        raise SystemExit("the ranges sort gave up on this corpus (long repeats)")
    times["total"] = sum(times.values())
    return times, fmt.sha256_file(table, storage.uncached_chunks)


def measure(n: int, threads: list[int]) -> dict:
    src = cor.zipf_corpus(n)
    tokens = np.memmap(src / "tokenized.0", dtype=np.uint16, mode="r")
    runs, sums = {}, set()
    with tempfile.TemporaryDirectory(dir=c.OUT) as tmp:
        table = Path(tmp) / "table.0"
        for k in [max(threads)] + threads:  # the first is the warm-up
            times, digest = sort_once(tokens, k, table)
            sums.add(digest)
            print(f"  {k:3} threads: " + ", ".join(f"{p} {s:.2f} s" for p, s in times.items()),
                  flush=True)
            runs.setdefault(str(k), []).append(times)
    return {"tokens": n, "warm_up": runs[str(max(threads))].pop(0),
            "runs": {k: v[0] for k, v in runs.items()}, "identical": len(sums) == 1}


def report(data: dict) -> str:
    threads = data["threads"]
    runs, p = data["runs"], data["project"]
    one = runs.get("1")
    lines = rep.preamble("### The sort by ranges, phase by phase (build-phases)", data) + [
        "",
        f"{data['tokens']:,} Zipfian tokens (2 bytes), sorted in one process as a build "
        "sorts a shard from 2 threads on; seconds per phase (in-process, kernels loaded, "
        f"after a warm-up run on {max(threads)} threads: "
        + ", ".join(f"{k} {s:.1f} s" for k, s in data["warm_up"].items()) + ").", ""]
    header = ["phase"] + [f"{k} thread{'s' * (k > 1)}, s" for k in threads]
    header += [f"speed-up 1 -> {k}" for k in threads if k > 1 and one]
    rows = []
    for phase in PHASES + ("total",):
        row = [phase] + [runs[str(k)][phase] for k in threads]
        row += [f"{one[phase] / runs[str(k)][phase]:.2f}x" for k in threads if k > 1 and one]
        rows.append(row)
    lines.append(rep.md_table(header, rows))
    lines.append("")
    lines.append(f"Tables identical across every run: {data['identical']}.")
    top = max(threads)
    if one and top > 1:
        speedup = one["total"] / runs[str(top)]["total"]
        serial = min(1.0, max(0.0, (top / speedup - 1) / (top - 1)))
        projected = one["total"] * (serial + (1 - serial) / p)
        lines.append(f"The whole sort's 1 -> {top} speed-up ({speedup:.2f}x) means a serial "
                     f"fraction of {serial:.2f} (Amdahl); it projects to {projected:.1f} s of "
                     f"sorting on {p} cores ({one['total'] / projected:.1f}x one thread), "
                     "if memory bandwidth kept up.")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", default="300M", help="shard size")
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--project", type=int, default=16, help="cores to project the sort to")
    rep.add_report_options(ap, "build-phases", "build-phases-16")
    args = ap.parse_args(argv)
    threads = [int(x) for x in args.threads.split(",")]
    rep.measure_and_report(args, argv, "bench_phases", lambda: {
        "threads": threads, "project": args.project,
        **measure(cor.parse_count(args.tokens), threads)}, report, after=("build-threads",))

if __name__ == "__main__":
    main()
