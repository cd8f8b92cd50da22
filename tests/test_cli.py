"""The command line, through click's CliRunner and one real subprocess."""
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from infinigram.cli import main

DOCS = ["the cat sat on the mat", "the cat ran", "a dog sat"]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    src = d / "c.jsonl"
    src.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(DOCS)))
    res = CliRunner().invoke(main, ["build", str(src), "-o", str(d / "idx"), "--bytes", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["documents"] == 3 and info["tokens"] == sum(len(t) for t in DOCS)
    return str(d / "idx")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_count_human_and_json(index):
    assert run("count", index, "the cat").output.strip() == "2"
    assert json.loads(run("count", index, "sat", "--json").output) == {"count": 2}
    ids = " ".join(str(b) for b in b"cat")
    assert json.loads(run("count", index, "--ids", ids, "--json").output) == {"count": 2}


def test_prob_ntd_infgram(index):
    r = json.loads(run("prob", index, "the ca", "--next-id", ord("t"), "--json").output)
    assert r["prob"] == 1.0 and r["prompt_count"] == 2
    r = json.loads(run("ntd", index, "the cat ", "--json").output)
    assert dict(zip(r["ids"], r["counts"])) == {ord("s"): 1, ord("r"): 1}
    r = json.loads(run("infgram", index, "zzz the cat ", "--json").output)
    assert r["effective_n"] == len("the cat ") + 1 and sorted(r["ids"]) == [ord("r"), ord("s")]
    r = json.loads(run("infgram", index, "zzz sa", "--next-id", ord("t"), "--json").output)
    assert r["prob"] == 1.0 and r["effective_n"] == 4
    assert "suffix length" in run("infgram", index, "the").output


def test_search_and_doc(index):
    r = json.loads(run("search", index, "sat", "--json").output)
    assert r["count"] == 2 and [h["doc_ix"] for h in r["docs"]] == [0, 2]
    r = json.loads(run("doc", index, 1, "--json").output)
    assert r["text"] == DOCS[1] and r["metadata"]["n"] == 1
    assert DOCS[2] in run("doc", index, 2).output


def test_search_cnf_and_several_docs(index):
    """' AND ' / ' OR ' in the text (OR binds tighter) or in --ids; several DOC_IX."""
    r = json.loads(run("search", index, "cat AND sat OR ran", "--window", 5, "--json").output)
    assert (r["count"], r["n_docs"]) == (2, 2) and [h["doc_ix"] for h in r["docs"]] == [0, 1]
    assert json.loads(run("search", index, "cat AND sat OR ran", "--window", 3, "--json")
                      .output)["count"] == 0  # " sat" starts 4 tokens after "cat"
    ids = " ".join(str(b) for b in b"cat") + " OR " + " ".join(str(b) for b in b"dog") \
        + " AND " + " ".join(str(b) for b in b"sat")
    r = json.loads(run("search", index, "--ids", ids, "--context", 1, "--limit", 1,
                       "--json").output)
    assert (r["count"], r["n_docs"]) == (2, 2)
    assert [(h["doc_ix"], h["position"], h["context"]["text"]) for h in r["docs"]] == \
        [(0, 4, " cat ")]
    assert run("search", index, "cat AND dog", "--context", 2).output.splitlines() == \
        ["0 occurrences in 0 documents"]
    assert run("search", index, "sat", "--context", 2).output.splitlines()[1:] == \
        ["doc 0 at token 8: t sat o", "doc 2 at token 6: g sat"]
    lines = run("doc", index, 2, 0, "--around", 4, "--window", 2, "--json").output.splitlines()
    assert [(d["doc_ix"], d["start"], d["text"]) for d in map(json.loads, lines)] == \
        [(2, 2, "dog "), (0, 2, "e ca")]
    for bad in (["search", index, "cat AND "], ["search", index, "cat", "--window", -1],
                ["search", index, "cat", "--limit", -1], ["search", index, "--ids", "1 AND x"],
                ["doc", index, 0, 3], ["doc", index, 1, "--around", 99, "--window", 1],
                ["doc", index]):
        res = run(*bad)
        assert res.exit_code in (1, 2) and res.output.startswith("error: "), (bad, res.output)
        assert len(res.output.strip().splitlines()) == 1


def test_creativity_and_attribute(index):
    r = json.loads(run("creativity", index, "a cat sat", "--json").output)
    assert r["lengths"] == [2, 8, 7, 6, 5, 4, 3, 2, 1]  # "a ", " cat sat", ...
    r = json.loads(run("creativity", index, "--ids", "99 120", "--json").output)
    assert r["lengths"] == [1, 0]
    r = json.loads(run("attribute", index, "the dog sat", "--min-len", 4, "--docs", 1,
                       "--json").output)
    assert [(s["start"], s["end"], s["count"]) for s in r["spans"]] == [(0, 4, 3), (3, 11, 1)]
    assert (r["spans"][1]["doc_ixs"], r["spans"][1]["positions"]) == ([2], [1])
    r = json.loads(run("attribute", index, "the cat", "--delimiters", ord(" "), "--json").output)
    assert [(s["start"], s["end"]) for s in r["spans"]] == [(0, 4), (4, 7)]
    human = run("attribute", index, "a dog sat").output
    assert human.splitlines()[0] == "1 spans" and "'a dog sat'" in human
    for bad in (["--min-len", 0], ["--max-count", 0], ["--delimiters", "x"], ["--whole-words"]):
        res = run("attribute", index, "cat", *bad)
        assert res.exit_code in (1, 2) and res.output.startswith("error: "), (bad, res.output)
        assert len(res.output.strip().splitlines()) == 1


def test_overlap(index, tmp_path):
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps({"body": t}) + "\n" for t in ["a cat ran", "zz", "xyzw"]))
    r = json.loads(run("overlap", index, test, "--n", 3, "--text-field", "body", "--json").output)
    # of the 7 trigrams of "a cat ran", all but "a c" occur
    assert [(d["ngrams"], d["found"], d["any"]) for d in r["per_document"]] == \
        [(7, 6, True), (0, 0, False), (2, 0, False)]
    assert (r["ngrams"], r["found"], r["documents_with_any"]) == (9, 6, 1)
    assert r["fraction"] == 6 / 9 and r["per_document"][1]["fraction"] is None
    assert run("overlap", index, test, "--n", 3, "--text-field", "body").output.startswith(
        "6 of 9 3-grams found")
    for bad in ([tmp_path / "missing.jsonl"], [test, "--n", 0]):
        res = run("overlap", index, *bad)
        assert res.exit_code == 1 and res.output.startswith("error: "), (bad, res.output)
        assert len(res.output.strip().splitlines()) == 1


def test_info_and_verify(index):
    assert "documents" in run("info", index).output
    res = run("verify", index)
    assert res.exit_code == 0 and "sound" in res.output


def test_errors_are_one_line_without_traceback(index, tmp_path):
    for args in (["count", tmp_path / "nope", "x"], ["count", index, "--ids", "255"],
                 ["count", index, ""], ["doc", index, 99]):
        res = run(*args)
        assert res.exit_code == 1, (args, res.output)
        assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
        assert "Traceback" not in res.output
    assert run("build", tmp_path, "-o", tmp_path / "x").exit_code == 2


def test_verify_finds_a_corrupt_table(index, tmp_path):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(index, bad)
    table = bytearray((bad / "table.0").read_bytes())
    table[0], table[1] = table[1], table[0]
    (bad / "table.0").write_bytes(bytes(table))
    res = run("verify", bad, "--json")
    assert res.exit_code == 1
    problems = json.loads(res.output)["problems"]
    assert any("sha256" in p for p in problems) and any("suffix order" in p for p in problems)


def test_real_subprocess(index):
    out = subprocess.run([sys.executable, "-m", "infinigram", "count", index, "cat", "--json"],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"count": 2}


def test_several_indexes_answer_as_one(index, tmp_path):
    src = tmp_path / "more.jsonl"
    src.write_text(json.dumps({"text": "the cat sat again"}) + "\n")
    assert run("build", src, "-o", tmp_path / "more", "--bytes", "--quiet").exit_code == 0
    both = [index, tmp_path / "more"]
    assert run("count", *both, "the cat").output.strip() == "3"
    ids = " ".join(str(b) for b in b"sat")
    assert json.loads(run("count", *both, "--ids", ids, "--json").output) == {"count": 3}
    r = json.loads(run("search", *both, "sat", "--json").output)
    assert [h["doc_ix"] for h in r["docs"]] == [0, 2, 3]
    assert json.loads(run("doc", *both, 3, "--json").output)["text"] == "the cat sat again"
    info = json.loads(run("info", *both, "--json").output)
    assert info["documents"] == 4 and info["paths"] == [str(p) for p in both]
    res = run("count", index)
    assert res.exit_code == 2 and "INDEX... TEXT" in res.output


JSON_KEYS = {  # command -> (argv after the command, with {idx}/{copy}/{src}/{out}; --json keys)
    "build": ("{src} -o {out} --bytes",
              {"documents", "paths", "shards", "token_width", "tokenizer", "tokens", "vocab_size"}),
    "index": ("{copy} --quiet", {"built"}),
    "train-tokenizer": ("{src} -o {out}/m.model --vocab-size 300", {"model", "vocab_size"}),
    "info": ("{idx}", {"documents", "paths", "shards", "token_width", "tokenizer", "tokens",
                       "vocab_size"}),
    "count": ("{idx} cat", {"count"}),
    "prob": ("{idx} ca --next-id 116", {"prob", "prompt_count", "cont_count"}),
    "ntd": ("{idx} ca", {"ids", "counts", "prompt_count", "effective_n"}),
    "infgram": ("{idx} ca", {"ids", "counts", "prompt_count", "effective_n"}),
    "infgram --next-id": ("{idx} ca --next-id 116",
                          {"prob", "prompt_count", "cont_count", "effective_n"}),
    "search": ("{idx} cat", {"count", "n_docs", "docs"}),
    "doc": ("{idx} 0", {"doc_ix", "tokens", "text", "metadata", "source", "start"}),
    "verify": ("{idx}", {"path", "checked", "problems"}),
    "ppl": ("{idx} {src} --kn 3", {"tokens", "infgram_ppl", "infgram_zero_tokens",
                                   "uniform_weight", "kn_order", "kn_modified", "kn_ppl"}),
    "creativity": ("{idx} cat", {"lengths"}),
    "attribute": ("{idx} cat", {"ids", "spans"}),
    "dedup": ("{idx} --min-length 3 --spans {out}/s.parquet --output {out}/d",
              {"min_length", "spans", "tokens_removed", "tokens", "fraction",
               "documents_touched", "seconds"}),
    "overlap": ("{idx} {src} --n 3", {"n", "ngrams", "found", "fraction", "documents",
                                      "documents_with_any", "per_document"}),
}


def test_json_keys_of_every_command(index, tmp_path):
    """The key set of each command's --json output is pinned; every command
    but demo and serve (long-running, answering JSON over HTTP) takes --json."""
    import shutil
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": t * 40}) + "\n" for t in DOCS))
    copy = tmp_path / "copy"
    shutil.copytree(index, copy)
    (copy / "table.0").unlink()
    commands = {c.split()[0] for c in JSON_KEYS}
    assert commands == set(main.commands) - {"demo", "serve"}
    for name, (argv, keys) in JSON_KEYS.items():
        out = tmp_path / name.replace(" ", "_")
        out.mkdir()
        filled = argv.format(idx=index, copy=copy, src=src, out=out / "o" if name == "build" else out)
        res = run(name.split()[0], *filled.split(), "--json")
        assert res.exit_code == 0, (name, res.output)
        assert set(json.loads(res.stdout.strip().splitlines()[-1])) == keys, name
