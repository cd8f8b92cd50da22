"""Progress lines for long work: phase, throughput, ETA (stderr, or nothing)."""
from __future__ import annotations

import sys
import time


class Progress:
    """Prints at most one line every ``interval`` seconds per phase.

    ``done``/``total`` are in the phase's unit (bytes or tokens); the rate and
    ETA follow from them. ``quiet=True`` prints nothing.
    """

    def __init__(self, quiet: bool = False, stream=None, interval: float = 1.0):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.interval = interval
        self.phase = ""
        self._start = self._last = time.perf_counter()

    def start(self, phase: str) -> None:
        self.phase = phase
        self._start = time.perf_counter()
        self._last = 0.0
        self._print(f"[{phase}] started")

    def update(self, done: float, total: float | None, unit: str, force: bool = False) -> None:
        now = time.perf_counter()
        if self.quiet or (not force and now - self._last < self.interval):
            return
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        rate = done / elapsed
        parts = [f"[{self.phase}]", _human(done, unit)]
        if total:
            parts.append(f"of {_human(total, unit)} ({100 * done / total:.0f}%)")
        parts.append(f"{_human(rate, unit)}/s")
        if total and rate > 0 and done < total:
            parts.append(f"ETA {(total - done) / rate:.0f}s")
        self._print(" ".join(parts))

    def finish(self, message: str) -> None:
        self._print(f"[{self.phase}] {message} in {time.perf_counter() - self._start:.2f}s")

    def _print(self, line: str) -> None:
        if not self.quiet:
            print(line, file=self.stream, flush=True)


def _human(x: float, unit: str) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{prefix}{unit}"
    return f"{x:.0f}{unit}"
