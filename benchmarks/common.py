"""Shared paths and constants of the benchmarks. The helpers live by
concern: corpora.py (the corpora, cached under ``benchmarks/out/corpora``),
procs.py (timing, and tools run in fresh child processes) and report.py
(machine details, RESULTS.md and saved runs).
"""
from __future__ import annotations

import sys
from pathlib import Path

from infinigram import format as fmt

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
CORPORA = OUT / "corpora"
RESULTS = HERE / "RESULTS.md"
PYTHON = sys.executable
NUMBA_CACHE = OUT / "numba-cache"  # our kernels' warm cache for every timed child
SEP = fmt.separator(2)
ZIPF_VOCAB = 32000
STDLIB_VOCAB = 8000
HELDOUT_EVERY = 50  # every 50th stdlib file is held out of the stdlib index
