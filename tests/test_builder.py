"""Builder: corpus -> index, checked against naive tables and counts."""
import errno
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import infinigram as ig
from infinigram import builder, format as fmt
from infinigram.native import merge
from infinigram.errors import BuildError, CorpusError, IndexFormatError
from naive import naive_suffix_array, with_separators
from test_corpus import COLLIDING, write

DOCS = ["the cat sat on the mat", "", "the cat", "a dog; the cat sat", "the cat sat on the mat",
        "ünïcödé ok", "x"]


def write_jsonl(path, docs, field="text"):
    with open(path, "w", encoding="utf-8") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({field: d, "id": i}) + "\n")
    return path


def byte_docs(docs):
    return [list(d.encode("utf-8")) for d in docs]


def naive_table(tokens):
    n = len(tokens)
    pointer = fmt.pointer_width(n * tokens.itemsize)
    offs = naive_suffix_array(tokens) * tokens.itemsize
    return b"".join(int(o).to_bytes(pointer, "little") for o in offs)


def naive_count(tokens, q):
    q = list(q)
    t = tokens.tolist()
    return sum(t[i:i + len(q)] == q for i in range(len(t) - len(q) + 1))


@pytest.fixture
def corpus(tmp_path):
    return write_jsonl(tmp_path / "c.jsonl", DOCS)


def test_build_bytes_matches_naive(tmp_path, corpus):
    out = ig.build([corpus], tmp_path / "idx", tokenizer="bytes", quiet=True)
    tokens = with_separators(byte_docs(DOCS), 1)
    assert (out / "tokenized.0").read_bytes() == tokens.tobytes()
    assert (out / "table.0").read_bytes() == naive_table(tokens)
    starts = np.flatnonzero(tokens == 255).astype("<u8")
    assert (out / "offset.0").read_bytes() == starts.tobytes()
    eng = ig.open(out)
    assert eng.n_docs == len(DOCS)
    for q in ["the cat", "cat sat on", "t", "mat", "nothing here", "ü"]:
        assert eng.count(q) == naive_count(tokens, q.encode()), q
    assert [eng.get_doc(i).metadata for i in range(len(DOCS))] == [
        {"id": i} for i in range(len(DOCS))]
    assert [eng.get_doc(i).source for i in range(len(DOCS))] == [
        {"path": str(corpus), "linenum": i} for i in range(len(DOCS))]
    assert eng.get_doc(0).text == DOCS[0]


def test_user_metadata_comes_back_exactly_from_every_format(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    kinds = {"c.jsonl": "jsonl", "c.jsonl.gz": "jsonl.gz", "c.jsonl.zst": "jsonl.zst",
             "c.parquet": "parquet", "c.arrow": "arrow", "c.feather": "arrow"}
    for name, kind in kinds.items():
        write(data / name, COLLIDING, kind)
    (data / "d.txt").write_text("plain ü")
    eng = ig.open(ig.build([data], tmp_path / "idx", tokenizer="bytes", shard_tokens=60,
                           quiet=True))
    docs = [eng.get_doc(i) for i in range(eng.n_docs)]
    want = [{k: v for k, v in r.items() if k != "text"} for r in COLLIDING]
    names = sorted(kinds)
    assert [d.metadata for d in docs] == want * len(names) + [{}]
    assert [d.source for d in docs] == [{"path": str(data / n), "linenum": i}
                                        for n in names for i in range(2)] + [
        {"path": str(data / "d.txt"), "linenum": 0}]
    assert [d.text for d in docs] == ["first", "second"] * len(names) + ["plain ü"]


def test_rebuilding_beside_an_earlier_index_reads_only_the_corpus(tmp_path, corpus, capsys):
    first = ig.build([tmp_path], tmp_path / "idx", tokenizer="bytes", quiet=True)
    again = ig.build([tmp_path], tmp_path / "idx2", tokenizer="bytes", quiet=True)
    assert f"skipping {first}" in capsys.readouterr().err
    assert (again / "tokenized.0").read_bytes() == (first / "tokenized.0").read_bytes()
    assert ig.open(again).n_docs == len(DOCS)
    with pytest.raises(CorpusError, match="is an index directory"):
        ig.build([first], tmp_path / "idx3", tokenizer="bytes", quiet=True)


def test_multi_shard_and_parts_are_exact(tmp_path, corpus):
    one = ig.build([corpus], tmp_path / "one", tokenizer="bytes", quiet=True)
    many = ig.build([corpus], tmp_path / "many", tokenizer="bytes", shard_tokens=25, quiet=True)
    m = fmt.read_manifest(many)
    assert len(m.shards) > 2
    assert all(s.tokens <= 25 or s.docs == 1 for s in m.shards)
    e1, e2 = ig.open(one), ig.open(many)
    assert e2.n_docs == e1.n_docs and e2.n_tokens == e1.n_tokens
    for q in ["the cat", "the", "at", "x", "sat on the mat"]:
        assert e2.count(q) == e1.count(q), q
    for s in range(len(m.shards)):
        toks = np.fromfile(many / f"tokenized.{s}", dtype=np.uint8)
        assert (many / f"table.{s}").read_bytes() == naive_table(toks)


TINY_BUDGET = 2_870_000  # bytes: sorts ~15k-token parts (~8k on 2 threads)


@pytest.mark.parametrize("docs", [
    [" ".join(f"w{(i * 7919 + j * 104729) % 997}" for j in range(200)) for i in range(60)],
    ["ab" * 3000, "ab" * 2999 + "a", "a" * 5000] * 4 + ["ab" * 3000],
], ids=["text", "repetitive"])
def test_parts_under_a_tiny_budget_equal_the_in_memory_table(tmp_path, docs):
    c = write_jsonl(tmp_path / "r.jsonl", docs)
    one = ig.build([c], tmp_path / "one", tokenizer="bytes", quiet=True)
    parts = ig.build([c], tmp_path / "parts", tokenizer="bytes", max_memory=TINY_BUDGET,
                     threads=2, quiet=True)
    n = fmt.read_manifest(one).shards[0].tokens
    assert len(merge.plan_parts(n, 1, TINY_BUDGET)) > 3
    assert (parts / "table.0").read_bytes() == (one / "table.0").read_bytes()
    assert ig.verify(parts).ok


def test_builds_report_each_phase_and_quiet_silences_them(tmp_path, capsys):
    docs = [" ".join(f"w{(i * 31 + j) % 97}" for j in range(300)) for i in range(40)]
    c = write_jsonl(tmp_path / "r.jsonl", docs)
    ig.build([c], tmp_path / "a", tokenizer="bytes", max_memory=TINY_BUDGET, threads=2)
    err = capsys.readouterr().err
    for phase in ("[tokenize]", "[sort shard 0: rank sample]", "[sort shard 0: sort",
                  "[sort shard 0: merge]", "[checksum]"):
        assert phase in err, phase
    # rates always; an ETA only when a line falls mid-phase, which depends on timing here
    # (test_parallel_sort checks it with interval=0)
    assert "tok/s" in err and "B/s" in err
    ig.build([c], tmp_path / "b", tokenizer="bytes", max_memory=TINY_BUDGET, threads=2,
             quiet=True)
    assert capsys.readouterr().err == ""


def test_budget_too_small_is_a_build_error(tmp_path, corpus):
    big = write_jsonl(tmp_path / "b.jsonl", ["x" * 100_000])
    with pytest.raises(BuildError, match="allow at least"):
        ig.build([big], tmp_path / "idx", tokenizer="bytes", max_memory=1000, quiet=True)
    assert not (tmp_path / "idx").exists()


def test_output_that_exists_is_refused_and_kept(tmp_path, corpus):
    out = tmp_path / "idx"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BuildError, match="already exists"):
        ig.build([corpus], out, tokenizer="bytes", quiet=True)
    assert (out / "keep.txt").read_text() == "mine"


def test_exactly_one_tokenizer_choice(tmp_path, corpus):
    with pytest.raises(BuildError, match="exactly one"):
        ig.build([corpus], tmp_path / "idx", quiet=True)
    with pytest.raises(BuildError, match="exactly one"):
        ig.build([corpus], tmp_path / "idx", tokenizer="bytes", vocab_size=100, quiet=True)
    with pytest.raises(BuildError, match="exactly one"):  # text needs a tokenizer
        ig.build([corpus], tmp_path / "idx", tokenizer="none", quiet=True)


def test_corpus_error_leaves_nothing(tmp_path):
    c = write_jsonl(tmp_path / "c.jsonl", ["a", "b"], field="body")
    with pytest.raises(CorpusError, match="text"):
        ig.build([c], tmp_path / "idx", tokenizer="bytes", quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]


def test_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path, corpus, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fmt, "commit", full)
    with pytest.raises(BuildError, match="disk full") as info:
        ig.build([corpus], tmp_path / "idx", tokenizer="bytes", quiet=True)
    assert info.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]


def test_killed_build_leaves_nothing_that_opens_and_rerun_completes(tmp_path):
    big = write_jsonl(tmp_path / "big.jsonl", [f"document {i} " * 200 for i in range(4000)])
    out = tmp_path / "idx"
    script = ("import infinigram, sys; infinigram.build([sys.argv[1]], sys.argv[2], "
              "tokenizer='bytes', shard_tokens=200_000, quiet=True)")
    proc = subprocess.Popen([sys.executable, "-c", script, str(big), str(out)])
    deadline = time.time() + 60
    while time.time() < deadline:
        if any(p.name.startswith(".idx.building-") and any(p.iterdir())
               for p in tmp_path.iterdir() if p.is_dir()):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    with pytest.raises(IndexFormatError):
        ig.open(out)
    ig.build([big], out, tokenizer="bytes", shard_tokens=200_000, quiet=True)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert ig.open(out).count("document 3999 ") == 200


def test_index_command_fills_in_tables_of_tokenized_files(tmp_path):
    docs = [[1, 2, 3], [2, 3], [], [258, 1, 2]]
    tokens = with_separators(docs, 2)
    d = tmp_path / "ig"
    d.mkdir()
    tokens.tofile(d / "tokenized.0")
    np.flatnonzero(tokens == 0xFFFF).astype("<u8").__mul__(2).tofile(d / "offset.0")
    with pytest.raises(BuildError, match="token width"):
        builder.index_tables(d, quiet=True)
    assert builder.index_tables(d, token_width=2, quiet=True) == [0]
    assert (d / "table.0").read_bytes() == naive_table(tokens)
    eng = ig.open(d)
    assert eng.vocab_size == 259
    assert eng.count([2, 3]) == 2
    assert builder.index_tables(d, quiet=True) == []


def test_trained_tokenizer_round_trips(tmp_path):
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    rng = np.random.default_rng(0)
    docs = [" ".join(rng.choice(words, 40)) for _ in range(300)]
    c = write_jsonl(tmp_path / "c.jsonl", docs)
    out = ig.build([c], tmp_path / "idx", vocab_size=280, quiet=True)
    eng = ig.open(out)
    assert (out / fmt.TOKENIZER_FILE).exists()
    assert eng.vocab_size == 280 and eng.token_width == 2
    assert eng.get_doc(5).text == docs[5]
    tokens = np.fromfile(out / "tokenized.0", dtype="<u2")
    ids = eng.tokenize(docs[5])[:12]
    assert eng.count(ids) == naive_count(tokens, ids) >= 1


def test_table_builds_leave_pyarrow_unloaded(tmp_path):
    # index_tables reads no corpus files: pyarrow (about 30 MiB) stays out of its process
    tokens = np.array([65535, 5, 6, 5, 65535, 7], dtype=np.uint16)
    tokens.tofile(tmp_path / "tokenized.0")
    np.array([0, 8], dtype=np.uint64).tofile(tmp_path / "offset.0")
    script = ("import sys; from infinigram import builder; "
              "builder.index_tables(sys.argv[1], token_width=2, quiet=True); "
              "print('pyarrow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "False"
    assert (tmp_path / "table.0").exists()
