"""Load benchmark of `infinigram serve` (issue 19): concurrent loopback
clients send mixed queries in infini-gram's request shape (``POST /``) for
a fixed time; then the same load, in the same run, against a minimal server
with the same route and framework (FastAPI + uvicorn, queries in worker
threads) over infini-gram's engine, so that the comparison isolates the
engines. Reports throughput, p50/p99 latency per query type, errors, and
each server's RSS before and after.

    python benchmarks/bench_serve.py                  # 32 clients, 60 s each
    python benchmarks/bench_serve.py --seconds 10 --clients 8
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402
import corpora as cor  # noqa: E402
import procs  # noqa: E402
import report as rep  # noqa: E402

INDEX = "zipf"
PEER_SERVER = """
import sys
import uvicorn
from fastapi import FastAPI, Request
from infini_gram.engine import InfiniGramEngine
engine = InfiniGramEngine(index_dir=sys.argv[1], eos_token_id=65534, vocab_size=65535,
                          token_dtype="u16")
app = FastAPI()
@app.post("/")
def query(body: dict):
    kind, ids = body["query_type"], body["query_ids"]
    if kind == "count":
        return engine.count(input_ids=ids)
    if kind == "prob":
        return engine.prob(prompt_ids=ids[:-1], cont_id=ids[-1])
    if kind == "ntd":
        return engine.ntd(prompt_ids=ids, max_support=body.get("max_support", 1000))
    if kind == "infgram_prob":
        return engine.infgram_prob(prompt_ids=ids[:-1], cont_id=ids[-1])
    if kind == "infgram_ntd":
        return engine.infgram_ntd(prompt_ids=ids, max_support=body.get("max_support", 1000))
    if kind == "search_docs":
        return engine.search_docs(input_ids=ids, maxnum=body.get("maxnum", 1),
                                  max_disp_len=body.get("max_disp_len", 1000))
    return {"error": f"unsupported query_type {kind}"}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""
NOOP_SERVER = """
import sys
import uvicorn
from fastapi import FastAPI, Request, Response
app = FastAPI()
@app.post("/")
async def query(request: Request):
    await request.body()
    return Response(b'{"count": 0}', media_type="application/json")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""
"""The framework alone: FastAPI + uvicorn answering every request with a
constant, no engine. Its throughput bounds any server on this stack here."""
OURS_SERVER = """
import sys
from infinigram.cli import main
main(["serve", "--name", "%s=" + sys.argv[1], "--port", sys.argv[2]])
""" % INDEX


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid: int) -> dict:
    """Resident bytes of process ``pid``: all of them, and the anonymous
    ones (heap and stacks; the rest are pages of mapped files, the index's
    among them, which the kernel may drop at any time)."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = int(value.split()[0]) * 1024 if value.strip().endswith("kB") else 0
    return {"total": fields.get("VmRSS", 0), "anon": fields.get("RssAnon", 0)}


WARM_UP = 10
"""Seconds of the same load before the measured run."""

KINDS = ("count", "prob", "ntd", "infgram_prob", "infgram_ntd", "search_docs")
"""The query types of the mix, in equal shares."""


def requests(tokens: np.ndarray, k: int, rng) -> list[dict]:
    """k mixed queries in infini-gram's shape, each type of ``KINDS`` in
    turn: count and search_docs (one document) of 1-5 tokens from the
    corpus, prob and infgram_prob of a 3- and a 10-token prompt with the
    token that follows it, ntd of a 2-token and infgram_ntd of a 10-token
    prompt (default max_support)."""
    out = []
    while len(out) < k:
        kind = KINDS[len(out) % len(KINDS)]
        n = {"count": int(rng.integers(1, 6)), "search_docs": int(rng.integers(1, 6)),
             "prob": 4, "ntd": 2, "infgram_prob": 11, "infgram_ntd": 10}[kind]
        s = int(rng.integers(0, tokens.size - n))
        q = tokens[s:s + n]
        if (q != c.SEP).all():
            out.append({"index": INDEX, "query_type": kind, "query_ids": [int(x) for x in q]}
                       | ({"maxnum": 1} if kind == "search_docs" else {}))
    return out


async def load(port: int, bodies: list[dict], clients: int, seconds: float,
               pid: int | None = None) -> dict:
    """``clients`` concurrent keep-alive connections sending ``bodies`` in
    turn for ``seconds``: latencies (µs) per query type, the error count,
    and with ``pid`` that process's anonymous RSS once a second.
    Plain HTTP/1.1 over asyncio streams: a client library's own cost (httpx:
    about 2 ms a request here) would bound both servers alike."""
    lat: dict[str, list[float]] = {}
    errors: list[str] = []
    stop = time.perf_counter() + seconds
    wire = [(b["query_type"], _request(b)) for b in bodies]

    async def one(w: int):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = w
        try:
            while time.perf_counter() < stop:
                kind, req = wire[i % len(wire)]
                i += clients
                t = time.perf_counter()
                writer.write(req)
                head = await reader.readuntil(b"\r\n\r\n")
                size = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(size)
                dt = time.perf_counter() - t
                if head.startswith(b"HTTP/1.1 200") and not body.startswith(b'{"error"'):
                    lat.setdefault(kind, []).append(dt * 1e6)
                else:
                    errors.append((head.split(b"\r\n")[0] + b" " + body[:160]).decode())
        finally:
            writer.close()
    samples: list[int] = []

    async def sample():
        while pid is not None and time.perf_counter() < stop:
            samples.append(rss(pid)["anon"])
            await asyncio.sleep(1)
    t0 = time.perf_counter()
    await asyncio.gather(sample(), *(one(w) for w in range(clients)))
    wall = time.perf_counter() - t0
    done = sum(len(v) for v in lat.values())
    return {"requests_per_s": done / wall, "requests": done, "errors": len(errors),
            "anon_rss_samples": samples,
            "first_errors": errors[:3],
            "latency_us": {k: {"p50": float(np.percentile(v, 50)),
                               "p99": float(np.percentile(v, 99)), "n": len(v)}
                           for k, v in sorted(lat.items())}}


def _request(body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(data)) + data


def run_server(name: str, script: str, d: Path, bodies: list[dict], clients: int,
               seconds: float) -> dict:
    port = free_port()
    p = subprocess.Popen([c.PYTHON, "-c", script, str(d), str(port)], env=procs.child_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while True:
            try:
                asyncio.run(load(port, bodies[:1], 1, 0.001))
                break
            except OSError:
                if p.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{name} server did not start: "
                                       f"{p.stderr.read().decode()[-1500:]}") from None
                time.sleep(0.5)
        asyncio.run(load(port, bodies, clients, WARM_UP))  # kernels, caches, every query size
        before = rss(p.pid)
        got = asyncio.run(load(port, bodies, clients, seconds, p.pid))
        got.update(rss_before=before, rss_after=rss(p.pid))
    finally:
        p.terminate()
        p.wait(timeout=30)
    print(f"  {name}: {got['requests_per_s']:,.0f} requests/s, errors {got['errors']}, "
          f"RSS {got['rss_before']} -> {got['rss_after']}, "
          f"latency {json.dumps(got['latency_us'])}", flush=True)
    return got


def halves(server: dict) -> tuple[list[int], list[int]]:
    """A server's RSS samples, in the first and the second half of the run."""
    samples = server["anon_rss_samples"]
    return samples[:len(samples) // 2], samples[len(samples) // 2:]


def report(data: dict) -> str:
    r = data["servers"]
    lines = rep.preamble("### HTTP server under load (issue 19)", data) + [
             f"Index: {data['corpus']}. {data['clients']} concurrent loopback clients (one "
             "asyncio process, plain HTTP/1.1 keep-alive connections) send mixed queries in infini-gram's request "
             f"shape (`POST /`: count, prob, ntd, infgram_prob, infgram_ntd and search_docs of "
             "one document, in equal shares) for "
             f"{data['seconds']:g} s to each server, after a {WARM_UP} s warm-up with the same load. infini-gram: a minimal "
             "FastAPI + uvicorn server with the same route over its engine (sync handlers, so "
             "queries run in worker threads as ours do). Both servers and the clients share "
             "this machine's cores.", ""]
    types = sorted({k for s in r.values() for k in s["latency_us"]})
    rows = []
    for name, s in r.items():
        rows.append([name, s["requests_per_s"], s["errors"]]
                    + [f"{s['latency_us'][k]['p50'] / 1e3:.2f} / {s['latency_us'][k]['p99'] / 1e3:.2f}"
                       if k in s["latency_us"] else None for k in types]
                    + [f"{rep.fmt_bytes(s['rss_before']['total'])} -> "
                       f"{rep.fmt_bytes(s['rss_after']['total'])}",
                       f"{rep.fmt_bytes(s['rss_before']['anon'])} -> "
                       f"{rep.fmt_bytes(s['rss_after']['anon'])}",
                       " / ".join(rep.fmt_bytes(max(h)) for h in halves(s))])
    lines.append(rep.md_table(["server", "requests/s", "errors"]
                              + [f"{k} p50 / p99 ms" for k in types]
                              + ["RSS before -> after", "anonymous RSS before -> after",
                                 "anonymous RSS, highest in 1st / 2nd half"],
                              rows))
    ours, peer = r.get("ours"), r.get("infini-gram")
    lines += ["", "#### Targets (issue 19)", ""]
    if ours and peer:
        ratio = ours["requests_per_s"] / peer["requests_per_s"]
        lines.append(f"- throughput >= 5x the infini-gram server's at the same concurrency: "
                     f"{ratio:.2f}x — {rep.met(ratio >= 5)}")
    noop = r.get("no engine")
    if noop and peer:
        lines.append(f"- for scale: the framework alone (\"no engine\": FastAPI + uvicorn "
                     f"answering a constant) serves {noop['requests_per_s']:,.0f} requests/s "
                     f"here, {noop['requests_per_s'] / peer['requests_per_s']:.1f}x the "
                     "infini-gram server: no server on this stack and machine goes past it")
    if ours:
        p99 = ours["latency_us"].get("count", {}).get("p99", float("inf")) / 1e3
        first, second = halves(ours)
        growth = max(second) - max(first)
        lines += [f"- count p99 <= 20 ms: {p99:.2f} ms — {rep.met(p99 <= 20)}",
                  f"- 0 errors: {ours['errors']} — {rep.met(ours['errors'] == 0)}",
                  f"- no RSS growth: the highest anonymous RSS of the run's second half is "
                  f"{rep.fmt_bytes(growth)} above the first half's — {rep.met(growth <= 16 << 20)} "
                  "(sampled once a second; up to 16 MiB counts as none. Before -> after "
                  "compares two moments of a working set that rises and falls with the "
                  "queries in flight: a leak shows as a second half above the first)"]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--servers", default="ours,infini-gram,no engine",
                    help="comma-separated: ours, infini-gram, 'no engine' (the framework alone)")
    rep.add_report_options(ap, "serve", "serve-quick")
    args = ap.parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        sys.path.insert(0, str(c.HERE))
        from bench_query import prepare_index
        n = 15_000_000
        d, _ = prepare_index(cor.zipf_corpus(n), f"zipf-{n}", None, 900)
        tokens = np.memmap(d / "tokenized.0", dtype="<u2", mode="r")
        bodies = requests(tokens, 20_000, np.random.default_rng(0))
        m = rep.machine()
        print(f"serve benchmark: load {m['load_avg']}", flush=True)
        data = {"machine": m, "corpus": f"zipf-{n} ({n:,} tokens)", "clients": args.clients,
                "seconds": args.seconds, "busy": args.busy or m["load_avg"][0] > 1.0,
                "command": " ".join(["python benchmarks/bench_serve.py"] + (argv or sys.argv[1:])),
                "servers": {}}
        scripts = {"ours": OURS_SERVER, "infini-gram": PEER_SERVER, "no engine": NOOP_SERVER}
        for name in args.servers.split(","):
            data["servers"][name] = run_server(name, scripts[name], d, bodies, args.clients,
                                               args.seconds)
        data["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
        rep.save_json(f"serve-{args.section}.json", data)
    text = report(data)
    print(text)
    if not args.no_results:
        rep.update_results(args.section, text, after=("ray", "scale", "queries"))


if __name__ == "__main__":
    main()
