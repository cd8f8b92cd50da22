"""The shard sort on several threads: byte-identical tables for every thread
and part count, the thread count checked, progress from one thread."""
import io
import json
import os
import platform
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
from click.testing import CliRunner

import infinigram as ig
from infinigram import builder, format as fmt, storage
from infinigram.native import merge
from infinigram.native.cover import rank_sample
from infinigram.native.merge import sort_part
from infinigram.cli import main
from infinigram.errors import ArgumentError
from infinigram.progress import Progress
from naive import naive_suffix_array
from test_native_sort import THREADS, WIDTHS, corpora, packed

ORACLES = ("repeated_block", "one_token_repeated", "separators_only", "empty_docs",
           "prefix_docs", "one_token", "random")


def parts_of(n, k):
    """The positions 0..n split into k parts of unequal sizes."""
    cuts = sorted({0, n, *(n * i * i // (k * k) for i in range(1, k))})
    return list(zip(cuts, cuts[1:]))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ORACLES)
def test_table_identical_for_every_thread_and_part_count(tmp_path, width, name):
    tokens = corpora(width)[name]
    n = len(tokens)
    pointer = fmt.pointer_width(tokens.nbytes)
    expected = packed(naive_suffix_array(tokens), width, pointer)
    for k in (1, 2, 5):
        for threads in THREADS:
            out = np.zeros(n * pointer, np.uint8)
            builder._sort_in_parts(tokens, parts_of(n, k), pointer, out, tmp_path,
                                   Progress(quiet=True), "sort", threads)
            assert out.tobytes() == expected.tobytes(), (k, threads)
    assert list(tmp_path.iterdir()) == []  # spill files removed


def test_builds_identical_for_every_thread_count(tmp_path, monkeypatch):
    """Shards of a few thousand tokens split for threads as large ones do."""
    monkeypatch.setattr(merge, "PARALLEL_TOKENS", 1000)
    monkeypatch.setattr(merge, "PARALLEL_THREADS", 2)
    monkeypatch.setattr(merge, "PART_TOKENS", 5000)
    docs = [" ".join(f"w{(i * 7919 + j * 104729) % 97}" for j in range(150)) for i in range(40)]
    docs += ["ab" * 2000, "ab" * 1999 + "a", "", "a" * 3000]
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    one = ig.build([src], tmp_path / "one", tokenizer="bytes", threads=1, quiet=True)
    table = (one / "table.0").read_bytes()
    n = fmt.read_manifest(one).shards[0].tokens
    for threads in (2, 3, 7):
        assert len(merge.plan_parts(n, 1, None, threads)) >= threads
        out = ig.build([src], tmp_path / f"t{threads}", tokenizer="bytes", threads=threads,
                       quiet=True)
        assert (out / "table.0").read_bytes() == table, threads
    (one / "table.0").unlink()
    assert ig.index_tables(one, threads=3, quiet=True) == [0]
    assert (one / "table.0").read_bytes() == table


def test_progress_of_every_phase_comes_from_one_thread(monkeypatch, tmp_path):
    tokens = corpora(2)["random"]
    tokens = np.tile(tokens, 20)
    n = len(tokens)
    callers = set()
    update = Progress.update

    def record(self, *args, **kw):
        callers.add(threading.get_ident())
        return update(self, *args, **kw)

    monkeypatch.setattr(Progress, "update", record)
    for quiet in (False, True):
        stream = io.StringIO()
        with open(tmp_path / "table", "wb+") as f:
            f.truncate(4 * n)
            with storage.mapped(f) as out:
                builder._sort_in_parts(tokens, parts_of(n, 6), 4, out, tmp_path,
                                       Progress(quiet, stream, interval=0), "sort", 3)
        text = stream.getvalue()
        if quiet:
            assert text == ""
            continue
        for phase in ("rank sample", "sort 6 parts", "merge"):
            assert f"[sort: {phase}] started" in text, phase
            assert re.search(rf"\[sort: {phase}\] .*tok/s", text), phase
        assert "ETA" in text
    assert callers == {threading.get_ident()}


def _resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


_RETAINED = """
import sys, numpy as np
from infinigram import builder
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
np.ones(16 << 20, np.uint8).sum()  # freed at once: glibc's default threshold rises past the blocks below
if sys.argv[1] == "unmap":
    builder._unmap_freed_blocks()
blocks = [np.ones(4 << 20, np.uint8) for _ in range(8)]
pin = np.ones(2 << 20, np.uint8)  # lives on above them
before = resident()
del blocks
print(before - resident())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="M_MMAP_THRESHOLD is glibc's")
def test_freed_parts_leave_the_process():
    """Before the parts are sorted, freed blocks of 1 MiB or more are handed
    back at once (by default glibc keeps them after a larger free)."""
    def given_back(mode):
        out = subprocess.run([sys.executable, "-c", _RETAINED, mode], capture_output=True,
                             text=True, check=True)
        return int(out.stdout)
    assert given_back("unmap") >= 30 << 20 and given_back("default") < 8 << 20


def test_merge_lets_go_of_written_and_read_pages(tmp_path):
    """storage.release takes a map's written pages out of this process's
    memory and keeps what was written; the parts merge calls it behind itself
    on the table and the spill file (the table stays exact: the tests above)."""
    size = 64 << 20
    with open(tmp_path / "f", "wb+") as f:
        f.truncate(size)
        with storage.mapped(f) as view:
            data = np.frombuffer(view, np.uint8)
            before = _resident()
            data[:] = 7
            assert _resident() - before > size // 2
            storage.release(view, 1, size)  # the first page is partly outside: kept
            assert _resident() - before < size // 8
            assert (data[::4096] == 7).all()
            del data
        os.fsync(f.fileno())
        with storage.mapped(f, write=False) as view:  # read once, then out of the cache too
            data = np.frombuffer(view, np.uint8)
            before = _resident()
            assert (data[::4096] == 7).all() and _resident() - before > size // 2
            storage.release(view, 0, size, f.fileno())
            assert _resident() - before < size // 8
            assert (data[::4096] == 7).all()
            del data
    assert (np.fromfile(tmp_path / "f", np.uint8)[::4096] == 7).all()


@pytest.mark.parametrize("threads", [1, 3])
def test_merge_reports_what_it_wrote_and_read(monkeypatch, threads):
    """merge_parts' ``done`` covers every output entry once and, per part,
    exactly the entries of that part (so what a caller lets go is done
    with); ``cut`` comes once per part, in order, before any of it."""
    monkeypatch.setattr(merge, "CHUNK", 64)  # many chunks
    tokens = np.tile(corpora(2)["random"], 20)
    n, part = len(tokens), len(tokens) // 5 + 1
    sample = rank_sample(tokens)
    bounds = [*range(0, n, part), n]
    flat = np.concatenate([sort_part(tokens, lo, hi, sample) for lo, hi in zip(bounds, bounds[1:])])
    written, read = np.zeros(n, np.int64), np.zeros(n, np.int64)
    cuts = []

    def done(w, nxt, start, cursors):
        assert cuts == list(zip(bounds, bounds[1:]))
        written[w:nxt] += 1
        for a, b in zip(start.tolist(), cursors.tolist()):
            read[a:b] += 1
    merge.merge_parts(tokens, flat, bounds, sample, 4, np.zeros(4 * n, np.uint8), None, threads,
                      done, lambda lo, hi: cuts.append((lo, hi)))
    assert (written == 1).all() and (read == 1).all() and cuts == list(zip(bounds, bounds[1:]))


@pytest.mark.parametrize("threads", [0, -1, 2.5, True])
def test_threads_below_one_are_refused(tmp_path, threads):
    src = tmp_path / "c.jsonl"
    src.write_text('{"text": "abc"}\n')
    with pytest.raises(ArgumentError, match="threads="):
        ig.build([src], tmp_path / "idx", tokenizer="bytes", threads=threads, quiet=True)
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("command", ["build", "index"])
@pytest.mark.parametrize("threads", ["0", "-1"])
def test_cli_threads_below_one_is_one_line(tmp_path, command, threads):
    src = tmp_path / "c.jsonl"
    src.write_text('{"text": "abc"}\n')
    idx = tmp_path / "idx"
    assert CliRunner().invoke(main, ["build", str(src), "-o", str(idx), "--bytes",
                                     "--quiet"]).exit_code == 0
    (idx / "table.0").unlink()
    args = ([str(src), "-o", str(tmp_path / "new"), "--bytes"] if command == "build"
            else [str(idx)])
    res = CliRunner().invoke(main, [command, *args, "--threads", threads])
    assert res.exit_code == 1
    assert res.output.startswith(f"error: threads={threads} is out of range; pass an int in [1, ")
    assert len(res.output.strip().splitlines()) == 1
