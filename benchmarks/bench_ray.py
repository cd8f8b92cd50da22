"""Ray on a local cluster: a build as Ray tasks against the local build of the
same text, and queries fanned out to shard actors against the local engine.

    python benchmarks/bench_ray.py                 # 15M bytes of source text, 4 shards
    python benchmarks/bench_ray.py --quick         # 2M

Writes out/ray.json and the "ray" block of RESULTS.md. Ray's start-up and
the workers' first kernel loads are excluded (a warm-up build and warm-up
queries run first); each build is timed in this process, local and Ray
alternating.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import numpy as np

import common
import corpora as cor
import procs
import report as rep
import infinigram as ig
from infinigram import cluster


def text_corpus(n_bytes: int, files: int = 8):
    """The first ``n_bytes`` of this machine's sources (one document per
    source file) as ``files`` JSONL files."""
    d = common.CORPORA / f"ray-source-{n_bytes}"
    if (d / "done").exists():
        return d
    shutil.rmtree(d, ignore_errors=True)
    texts, names, total = [], [], 0
    for p in cor.source_files():
        t = cor.read_text(p)
        texts.append(t)
        names.append(str(p))
        total += len(t.encode())
        if total >= n_bytes:
            break
    per = -(-len(texts) // files)
    for k in range(files):
        cor.write_jsonl(d / f"part{k}.jsonl", texts[k * per:(k + 1) * per], names[k * per:(k + 1) * per])
    (d / "done").write_text(str(total))
    return d


def timed_build(src, out, shard_tokens, ray):
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    ig.build([src], out, tokenizer="bytes", shard_tokens=shard_tokens, quiet=True, ray=ray)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2M bytes instead of 15M")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--queries", type=int, default=2000)
    rep.add_report_options(ap, "ray", "ray-16")
    args = ap.parse_args()
    if args.from_json:
        return write_report(json.loads(args.from_json.read_text()), args)
    import ray
    n = 2_000_000 if args.quick else 15_000_000
    m = rep.machine()
    src = text_corpus(n)
    work = common.OUT / "ray"
    work.mkdir(parents=True, exist_ok=True)
    ray.init(num_cpus=m["cores"], include_dashboard=False, log_to_driver=False)
    shard_tokens = n // 4 + n // 40  # 4 shards: the bytes plus a separator a document
    timed_build(text_corpus(200_000), work / "warm", 60_000, True)  # workers up, kernels loaded
    local_s, ray_s = [], []
    for _ in range(args.runs):
        local_s.append(timed_build(src, work / "local", shard_tokens, None))
        ray_s.append(timed_build(src, work / "ray", shard_tokens, True))
    same = all((work / "local" / f.name).read_bytes() == f.read_bytes()
               for f in (work / "ray").iterdir())
    local = ig.open(work / "local")
    eng = ig.open(work / "local", ray=True)
    calls = cluster.RayEngine(local, True, direct=False)  # every call a Ray actor call
    rng = np.random.default_rng(0)
    tokens = np.concatenate([np.asarray(s.tokens) for s in local.shards])
    starts = rng.integers(0, len(tokens) - 8, size=args.queries)
    queries = [[int(x) for x in tokens[i:i + k] if x != 255] or [32]
               for i, k in zip(starts, rng.integers(1, 8, size=args.queries))]
    for q in queries[:100]:
        assert eng.count(q) == calls.count(q) == local.count(q)
    lat = {name: procs.time_calls(e.count, [(q,) for q in queries]) for name, e in
           (("ray", eng), ("calls", calls), ("local", local))}
    lat["floor"] = procs.time_calls(lambda: ray.get([a.pid.remote() for a in eng.actors]),
                                     [()] * args.queries)  # Ray's own: a no-op to each actor
    batch = tokens[rng.integers(0, len(tokens) - 4, size=1_000_000)[:, None] + np.arange(4)]
    batch = batch[(batch != 255).all(axis=1)].astype(np.int64)
    rates = {}
    for name, e in (("ray", eng), ("local", local)):
        e.count_many(batch[:1000])
        seconds = []
        for _ in range(3):
            t = time.perf_counter()
            counts = e.count_many(batch)
            seconds.append(time.perf_counter() - t)
        rates[name] = len(batch) / rep.median(seconds)
    assert (counts == eng.count_many(batch)).all()
    data = {"machine": m, "tokens": n, "shards": len(local.shards), "actors": len(eng.actors),
            "build_local_s": local_s, "build_ray_s": ray_s, "identical": same,
            "count_us": {k: rep.stats_us(v) for k, v in lat.items()},
            "count_many_qps": rates, "count_many_queries": len(batch)}
    data["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    (common.OUT / "ray.json").write_text(json.dumps(data, indent=2))
    write_report(data, args)


def write_report(data: dict, args) -> None:
    bl, br = rep.median(data["build_local_s"]), rep.median(data["build_ray_s"])
    c = data["count_us"]
    q = data["count_many_qps"]
    md = [f"### Ray, local cluster ({data['machine']['cores']} CPUs)", "",
          rep.machine_md(data["machine"]), "",
          f"Command: `python benchmarks/bench_ray.py{' --quick' if data['tokens'] < 15e6 else ''}`. "
          f"{rep.busy_md(data)}. Corpus: the first {data['tokens']:,} bytes of this machine's "
          f"sources as 8 JSONL files, byte tokens, {data['shards']} shards; Ray's start-up and "
          "the workers' first kernel loads excluded (a warm-up build and queries first).", "",
          "| what | local | Ray | Ray / local | target |", "|---|---|---|---|---|",
          f"| build, s (median of {len(data['build_ray_s'])}; runs "
          f"{' '.join(f'{x:.2f}' for x in data['build_ray_s'])}) | {bl:.2f} | {br:.2f} | "
          f"{br / bl:.2f}x | <= 1.3x: {rep.met(br / bl <= 1.3)} |",
          f"| count median, us ({data['actors']} shard actors, direct links) | "
          f"{c['local']['median_us']:.1f} | {c['ray']['median_us']:.0f} | | <= 2 ms: "
          f"{rep.met(c['ray']['median_us'] <= 2000)} (p99 {c['ray']['p99_us']:.0f} us) |",
          f"| count median, us (the same actors, every call a Ray actor call) | | "
          f"{c['calls']['median_us']:.0f} | | (Ray's own floor here, a no-op call to each "
          f"actor: {c['floor']['median_us']:.0f} us) |",
          f"| count_many, queries/s ({data['count_many_queries']:,} 4-grams, median of 3) | "
          f"{q['local'] / 1e6:.2f}M | {q['ray'] / 1e6:.2f}M | | >= 1M/s: "
          f"{rep.met(q['ray'] >= 1e6)} |", "",
          f"Ray build == local build, every file byte-identical: {data['identical']}.", "",
          "Calls with small arguments (a count's ids) go over a direct connection to each actor "
          "(`infinigram/direct.py`: authenticated both ways, one per actor and thread); a "
          "failed link falls back to the Ray call, which restarts a lost actor. Calls with "
          "large arrays (count_many's batch) are Ray calls, the batch put in the object store "
          "once."]
    if not args.no_results:
        rep.update_results(args.section, "\n".join(md), after=("queries-stdlib", "queries"))
    print("\n".join(md))


if __name__ == "__main__":
    main()
