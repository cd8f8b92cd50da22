"""Reporting: statistics, machine details, saved runs and RESULTS.md."""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from common import OUT, REPO, RESULTS


def stats_us(ns: np.ndarray) -> dict:
    """Median, p99 and mean in microseconds of per-call times in nanoseconds."""
    ns = np.asarray(ns, dtype=np.float64)
    return {"median_us": float(np.median(ns) / 1e3), "p99_us": float(np.percentile(ns, 99) / 1e3),
            "mean_us": float(ns.mean() / 1e3), "calls": int(ns.size)}


def median(xs):
    xs = [x for x in xs if x is not None]
    return float(np.median(xs)) if xs else None


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


def preamble(title: str, data: dict) -> list[str]:
    """The first lines of a results block: its heading, the machine, the
    command and how busy the machine was."""
    return [title, "", machine_md(data["machine"]),
            f"Command: `{data['command']}`; {busy_md(data)}."]


def machine_md(m: dict) -> str:
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; "
            f"Python {m['python']}; "
            f"commit {m['git']}; {m['date']}.")


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


def measure_and_report(args, argv, script: str, measure, render, after: tuple[str, ...]) -> dict:
    """The main of a benchmark script: ``measure()`` (a dict of results) on
    this machine, saved to ``out/<script>-<section>.json`` with the machine,
    the command and the load, or the run ``--from-json`` names; then
    ``render(data)`` printed and written to its RESULTS.md block (placed
    after the first of ``after``) unless ``--no-results``."""
    name = script.removeprefix("bench_")
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        m = machine()
        print(f"{name} benchmark: load {m['load_avg']}", flush=True)
        data = {"machine": m, "busy": args.busy or m["load_avg"][0] > 1.0,
                "command": " ".join([f"python benchmarks/{script}.py"]
                                    + (argv or sys.argv[1:])), **measure()}
        data["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
        save_json(f"{name}-{args.section}.json", data)
    text = render(data)
    print(text)
    if not args.no_results:
        update_results(args.section, text, after=after)
    return data
