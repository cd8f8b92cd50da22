"""Every command with fuzzed arguments: exit 0, or exit 1 or 2 with exactly
one line on stderr; never a traceback. In-process through CliRunner, plus a
few real subprocesses for what only a process sees (bad UTF-8 in argv).
Commands that do work run quiet (--quiet, or --json for train-tokenizer) so
that stderr holds no progress lines."""
import itertools
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from infinigram.cli import main

BAD_INTS = ["-1", "0", "99999999999999999999999", "-99999999999999999999999", "1.5", "abc", "",
            "0x10", "nan", "inf", "9223372036854775808", "18446744073709551616", "1e3", " 7"]
BAD_SIZES = ["0", "-1", "infk", "nan", "1e3", "", "abc", "8X", "0.0001k", "99999999999999T"]
TEXTS = ["", " ", "\x00", "é" * 50, "the", "\udcff"]
COMMANDS = ["build", "index", "train-tokenizer", "info", "count", "prob", "ntd", "infgram",
            "search", "doc", "verify", "demo", "ppl", "serve", "creativity", "attribute",
            "overlap", "dedup"]
TALLY = {}


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    src = d / "c.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["the cat sat", "a dog ran"]))
    res = CliRunner().invoke(main, ["build", str(src), "-o", str(d / "idx"), "--bytes", "--quiet"])
    assert res.exit_code == 0, res.output
    return d


def _fuzz_cases(d):
    """(argv, must fail) of every command with fuzzed options and arguments."""
    idx, src, missing = str(d / "idx"), str(d / "c.jsonl"), str(d / "missing")
    out = itertools.count()

    def new():
        return str(d / f"out{next(out)}")

    cases = []
    for v in BAD_INTS:  # "0" and " 7" are good values of some options
        bad = v not in ("0", " 7")
        top_ok = v in ("0", " 7", "99999999999999999999999", "9223372036854775808",
                       "18446744073709551616")  # --top takes any n >= 0
        cases += [
            (["count", idx, "--ids", v], bad),
            (["prob", idx, "the", "--next-id", v], bad),
            (["ntd", idx, "the", "--top", v], not top_ok),
            (["infgram", idx, "the", "--top", v], not top_ok),
            (["infgram", idx, "the", "--next-id", v], bad),
            (["search", idx, "the", "--limit", v], bad),
            (["doc", idx, v], v != "0"),
            (["doc", idx, "0", "--around", v, "--window", "3"], bad),
            (["doc", idx, "0", "--around", "2", "--window", v], bad),
            (["build", src, "-o", new(), "--bytes", "--quiet", "--shard-tokens", v], v != " 7"),
            (["build", src, "-o", new(), "--quiet", "--train-tokenizer", v], True),
            (["build", src, "-o", new(), "--bytes", "--quiet", "--threads", v], v != " 7"),
            (["index", idx, "--vocab-size", v], v != " 7"),
            (["index", idx, "--token-width", v], True),
            (["train-tokenizer", src, "-o", new(), "--json", "--vocab-size", v], True),
            (["ppl", idx, src, "--kn", v], v != " 7"),
            (["attribute", idx, "the", "--min-len", v], v != " 7"),
            (["attribute", idx, "the", "--max-count", v], v != " 7"),
            (["attribute", idx, "the", "--docs", v], v not in ("0", " 7")),
            (["overlap", idx, src, "--n", v], v != " 7"),
        ]
    for v in ("-1", "abc", "", "1.5", "nan", "0x10", "-99999999999999999999999"):
        # only bad values: a good one would start the server
        cases += [(["serve", idx, "--port", v], True), (["serve", idx, "--max-docs", v], True),
                  (["serve", idx, "--timeout", v if v != "1.5" else "0"], True)]
    cases += [(["serve", missing], True), (["serve", idx, "--name", "x=" + missing], True)]
    for v in ("-1", "abc", "99999999999999999999999", "1.5"):  # fails before reading the stdlib
        cases.append((["demo", "-o", new(), "--quiet", "--vocab-size", v], True))
    for v in BAD_SIZES:
        cases += [(["build", src, "-o", new(), "--bytes", "--quiet", "--max-memory", v], True),
                  (["index", idx, "--max-memory", v], True),
                  (["train-tokenizer", src, "-o", new(), "--json", "--vocab-size", "300", "--sample", v],
                   True)]
    for t in TEXTS:
        cases += [(["count", idx, t], t in ("", "\udcff")), (["ntd", idx, t], t == "\udcff"),
                  (["search", idx, t], t in ("", "\udcff")),
                  (["creativity", idx, t], t in ("", "\udcff")),
                  (["attribute", idx, t], t in ("", "\udcff"))]
    for t in TEXTS[:2] + TEXTS[3:]:  # a real argv cannot hold NUL (click.Path fails on it)
        cases += [(["info", t], True),
                  (["verify", t], True), (["count", t, "x"], True),
                  (["build", t, "-o", new(), "--bytes"], True),
                  (["build", src, "-o", new(), "--bytes", "--quiet", "--text-field", t], True),
                  (["train-tokenizer", t, "-o", new(), "--json", "--vocab-size", "300"], True)]
    for cmd in COMMANDS:
        cases += [([cmd, missing], True), ([cmd, "--no-such-option"], True),
                  ([cmd, idx, "--json", "--json", "extra", "args", "here"], True)]
    cases += [(["nope"], True), ([], False), (["--help"], False), (["count", idx], True),
              (["build", src, "-o", new()], True), (["build", src, "-o", idx, "--bytes"], True),
              (["index", src], True), (["doc", idx, "0", "--around", "1"], True),
              (["dedup", idx, "--min-length", "0"], True), (["dedup", idx], True),
              (["dedup", idx, "--min-length", "x"], True),
              (["dedup", idx, "--min-length", "3", "--spans", "s.csv"], True),
              (["dedup", idx, "--min-length", "3", "--output", idx], True)]
    return cases


def _check(argv, must_fail, code, stdout, stderr):
    lines = stderr.splitlines()
    assert "Traceback" not in stderr + stdout, (argv, stderr)
    assert code in (0, 1, 2), (argv, code, stderr)
    if code == 1 and argv[0] in ("verify", b"verify") and not stderr:
        assert "PROBLEM" in stdout or '"ok": false' in stdout  # its report: not sound
    elif code:
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, stderr)
    assert code or not must_fail, (argv, stdout)


def test_commands_listed_are_fuzzed():
    """The commands `infinigram --help` lists are the ones fuzzed here."""
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0 and all(f"  {c} " in res.output for c in main.commands)
    assert sorted(main.commands) == sorted(COMMANDS)


def test_fuzzed_arguments(index):
    runner = CliRunner()
    tally = {"tried": 0, "exit 0": 0, "exit 1": 0, "exit 2": 0}
    for argv, must_fail in _fuzz_cases(index):
        res = runner.invoke(main, argv)
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            raise AssertionError(f"{argv}: {res.exception!r}") from res.exception
        _check(argv, must_fail, res.exit_code, res.stdout, res.stderr)
        tally["tried"] += 1
        tally[f"exit {res.exit_code}"] += 1
    TALLY["CliRunner"] = tally
    print("\nCLI fuzz (CliRunner):", tally)
    assert tally["exit 1"] and tally["exit 2"]


def test_fuzzed_arguments_in_real_processes(index):
    """Bad UTF-8 in argv, and the exit status a shell sees."""
    idx = str(index / "idx").encode()
    cases = [([b"count", idx, b"\xff\xfe"], True), ([b"info", b"/nonexistent/\xff"], True),
             ([b"build", b"\xff", b"-o", str(index / "u").encode(), b"--bytes"], True),
             ([b"doc", idx, b"\xff"], True), ([b"count", idx, b"the", b"--json"], False)]
    for argv, must_fail in cases:
        p = subprocess.run([sys.executable.encode(), b"-m", b"infinigram", *argv],
                           capture_output=True)
        _check(argv, must_fail, p.returncode, p.stdout.decode("utf-8", "replace"),
               p.stderr.decode("utf-8", "replace"))
    print(f"\nCLI fuzz (subprocess): {len(cases)} tried, {len(cases)} passed")


def test_json_output_is_strict_json(index):
    """NaN and infinities print as null (json.loads of the output rejects NaN here)."""
    idx = str(index / "idx")
    strict = {"parse_constant": lambda c: pytest.fail(f"{c} in --json output")}
    for argv in (["prob", idx, "zzz", "--next-id", "1"], ["info", idx], ["count", idx, "the"],
                 ["ntd", idx, "zzz"], ["infgram", idx, "zzz"], ["search", idx, "the"],
                 ["doc", idx, "0"], ["verify", idx], ["infgram", idx, "", "--next-id", "9"]):
        res = CliRunner().invoke(main, [*argv, "--json"])
        assert res.exit_code == 0, (argv, res.output)
        json.loads(res.stdout, **strict)
    r = json.loads(CliRunner().invoke(main, ["prob", idx, "zzz", "--next-id", "1", "--json"]).stdout)
    assert r == {"prob": None, "prompt_count": 0, "cont_count": 0}
