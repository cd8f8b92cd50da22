"""Timing: calls in this process, and tools in fresh child processes whose
peak RSS comes from ``os.wait4`` (the child and every descendant it
reaped) and from sampling the process tree."""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from common import NUMBA_CACHE


def time_calls(fn, args_list) -> np.ndarray:
    """Nanoseconds of each ``fn(*args)`` call, one call at a time."""
    out = np.empty(len(args_list), dtype=np.int64)
    clock = time.perf_counter_ns
    for i, args in enumerate(args_list):
        t0 = clock()
        fn(*args)
        out[i] = clock() - t0
    return out


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
