"""Builds on a disk that fills up: one clean error line, nothing left behind.

As root a tmpfs is mounted and filled with a filler file so that exactly
``free`` bytes are left; the disk then fills in each phase of the build in
turn (tokenize, the table's reservation before the sort, the sort's spill
file, the manifest). Every case also runs under a file size limit
(RLIMIT_FSIZE, which needs no privileges) so a file outgrows it: EFBIG.
The CLI runs as a subprocess, so a SIGBUS would show as a crash.
"""
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile

import pytest

PAGE = os.sysconf("SC_PAGE_SIZE")
DOCS = 3000
BUDGET = "3700K"  # --max-memory: sorts the ~342k tokens in 5 parts
CLI = [sys.executable, "-m", "infinigram"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "c.jsonl"
    words = [f"w{i}" for i in range(50)]
    with open(path, "w") as f:
        for i in range(DOCS):
            text = " ".join(words[(i * 7 + j * j) % 50] for j in range(30))
            f.write(json.dumps({"text": text, "id": i}) + "\n")
    return path


def build_args(corpus, out, max_memory):
    return ["build", str(corpus), "-o", str(out), "--bytes", "--quiet"] + (
        ["--max-memory", BUDGET] if max_memory else [])


def run_cli(args, file_limit=None):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit is EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run(CLI + args, capture_output=True, text=True, timeout=300,
                          preexec_fn=limit if file_limit else None)


def assert_clean_failure(proc):
    """Exit 1 with one line naming the file; returns the file it names."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Bus error" not in proc.stderr
    assert "requested and" not in lines[0]
    assert "disk full while writing" in lines[0] or "too large for this file system" in lines[0]
    return lines[0]


def phase(line):
    for name, phase_ in (("manifest.json", "manifest"), (".table.", "table"),
                         ("/parts", "spill"), ("tokenized.", "tokenize"),
                         ("metadata.", "tokenize"), ("offset.", "tokenize"),
                         ("metaoff.", "tokenize")):
        if name in line:
            return phase_
    raise AssertionError(f"no build file named in {line!r}")


@contextlib.contextmanager
def tmpfs(size):
    """A tmpfs of ``size`` bytes mounted on a fresh directory, or None
    where this process may not mount one."""
    where = tempfile.mkdtemp(prefix="infinigram-small-")
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", where],
        capture_output=True).returncode == 0
    try:
        yield where if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", where], check=True)
        os.rmdir(where)


def leave_free(disk, free):
    """Fill ``disk`` with a filler file so that ``free`` bytes stay free."""
    st = os.statvfs(disk)
    filler = st.f_bavail * st.f_frsize - free
    with open(os.path.join(disk, "filler"), "wb") as f:
        os.posix_fallocate(f.fileno(), 0, filler)


def pages(directory):
    """Pages the files under ``directory`` occupy on a tmpfs."""
    return sum(-(-os.path.getsize(os.path.join(d, n)) // PAGE)
               for d, _, names in os.walk(directory) for n in names)


def needs(corpus, tmp_path, max_memory):
    """Pages a build's final files take, and the spill file's pages."""
    out = tmp_path / f"ref-{max_memory}"
    assert run_cli(build_args(corpus, out, max_memory)).returncode == 0
    final = pages(out)
    tokens = json.loads((out / "manifest.json").read_text())["shards"][0]["tokens"]
    return final, -(-tokens * 4 // PAGE) if max_memory else 0


@pytest.mark.parametrize("max_memory", [False, True], ids=["in-memory", "max-memory"])
def test_full_tmpfs_fails_cleanly_in_every_phase(corpus, tmp_path, max_memory):
    final, spill = needs(corpus, tmp_path, max_memory)
    manifest = 1
    shard_files = final - 1  # all but the manifest's page
    # free pages -> the phase that must fail: the table is reserved before
    # the sort, the spill file before its parts are written; with a spill
    # file the manifest cannot fail, as the spill is freed before it.
    cases = {0: "tokenize", final // 4: "tokenize", shard_files - 1: "table"}
    if max_memory:
        cases |= {shard_files: "spill", shard_files + spill // 2: "spill",
                  shard_files + spill - 1: "spill"}
    else:
        cases[shard_files] = "manifest"
    with tmpfs(4 * (final + spill) * PAGE) as disk:
        if disk is None:
            pytest.skip("mounting a tmpfs needs root: the file size limit test covers the class")
        for free_pages, want in cases.items():
            leave_free(disk, free_pages * PAGE)
            proc = run_cli(build_args(corpus, os.path.join(disk, "out"), max_memory))
            assert phase(assert_clean_failure(proc)) == want, free_pages
            assert sorted(os.listdir(disk)) == ["filler"], free_pages
            os.remove(os.path.join(disk, "filler"))
        leave_free(disk, (final + spill) * PAGE)  # just enough: the build completes
        assert run_cli(build_args(corpus, os.path.join(disk, "out"), max_memory)).returncode == 0


@pytest.mark.parametrize("max_memory", [False, True], ids=["in-memory", "max-memory"])
def test_file_size_limit_names_the_file_and_leaves_nothing(corpus, tmp_path, max_memory):
    ref = tmp_path / "ref"
    assert run_cli(build_args(corpus, ref, max_memory)).returncode == 0
    tokenized = (ref / "tokenized.0").stat().st_size
    table = (ref / "table.0").stat().st_size
    limits = {"tokenize": tokenized // 2, "table": (tokenized + table) // 2}
    if max_memory:  # the spill file (4 bytes a token) outgrows the table (3 a token)
        limits["spill"] = table + (tokenized * 4 - table) // 2
    for want, limit in limits.items():
        work = tmp_path / want
        work.mkdir()
        proc = run_cli(build_args(corpus, work / "out", max_memory), file_limit=limit)
        line = assert_clean_failure(proc)
        assert "too large for this file system" in line and "--shard-tokens" in line
        assert phase(line) == want
        assert os.listdir(work) == []


def test_index_command_on_a_full_disk_removes_its_partial_table(corpus, tmp_path):
    ref = tmp_path / "ref"
    assert run_cli(build_args(corpus, ref, False)).returncode == 0
    table = (ref / "table.0").stat().st_size
    (ref / "table.0").unlink()
    before = sorted(os.listdir(ref))
    proc = run_cli(["index", str(ref), "--max-memory", BUDGET, "--quiet"], file_limit=table // 2)
    assert phase(assert_clean_failure(proc)) == "table"
    assert sorted(os.listdir(ref)) == before
