"""Engine.dedup against a brute-force scan, its byte ranges, its files and
its errors."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings, strategies as st

import infinigram.engine as engine
from conftest import make_index
from infinigram import dedup
from infinigram.errors import ArgumentError, QueryError
from naive import naive_dedup
from test_attribution import _corpora

WIDTHS = [1, 2, 4]
LENGTHS = [1, 2, 5, 200_000]


def _spans(r):
    return list(zip(r.doc_ixs.tolist(), r.starts.tolist(), r.ends.tolist()))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("shards", [1, 3])
def test_dedup_matches_the_oracle(tmp_path, width, shards):
    """Every adversarial corpus (long repeats, one repeated token, empty
    and prefix documents, one token) and a random one, at several lengths
    (one longer than any document), in one shard and across shards."""
    for name, docs in _corpora(width).items():
        eng = engine.open(make_index(tmp_path, docs, width=width, shards=min(shards, len(docs))))
        for L in LENGTHS:
            r = eng.dedup(L)
            assert _spans(r) == naive_dedup(docs, L), (name, L)
            assert r.min_len == L and r.byte_starts is None and r.n_tokens == eng.n_tokens


def test_dedup_across_opened_indexes(tmp_path):
    """open_many: a later index's copy of an earlier index's n-gram repeats whole."""
    a, b = [[1, 2, 3, 4], [5, 6]], [[0, 1, 2, 3], [6, 5, 6], [1, 2, 3]]
    eng = engine.open_many([make_index(tmp_path, a), make_index(tmp_path, b, shards=2)])
    assert _spans(eng.dedup(2)) == naive_dedup(a + b, 2)
    assert [(2, 1, 4), (3, 1, 3), (4, 0, 3)] == _spans(eng.dedup(2))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), max_size=12), min_size=1, max_size=8),
       st.integers(1, 6), st.integers(1, 3))
def test_dedup_property(tmp_path_factory, docs, L, shards):
    tmp = tmp_path_factory.mktemp("d")
    eng = engine.open(make_index(tmp, docs, width=1, shards=min(shards, len(docs)), vocab_size=4))
    assert _spans(eng.dedup(L)) == naive_dedup(docs, L)


TEXTS = ["héllo wörld, héllo wörld!", "", "wörld, héllo again", "héllo wörld"]


def _text_index(tmp_path):
    docs = [list(t.encode()) for t in TEXTS]
    meta = [{"id": f"d{j}"} for j in range(len(TEXTS))]
    return engine.open(make_index(tmp_path, docs, width=1, tokenizer="bytes", metadata=meta))


def test_byte_ranges_and_output(tmp_path):
    """The removed bytes are the spans' decoded text; --output keeps every
    document (metadata too) with its spans removed."""
    eng = _text_index(tmp_path)
    r = eng.dedup(4)
    assert len(r.doc_ixs) and r.removed == int((r.byte_ends - r.byte_starts).sum())
    for d, a, b, x, y in zip(r.doc_ixs, r.starts, r.ends, r.byte_starts, r.byte_ends):
        doc = eng.get_doc(int(d))
        assert doc.text.encode()[x:y].decode(errors="replace") == eng.decode(doc.tokens[a:b])
    out = tmp_path / "out"
    dedup.write_deduplicated(eng, r, out, "spans.parquet")
    lines = [json.loads(x) for x in (out / "documents.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == ["d0", "d1", "d2", "d3"]
    want = [bytearray(t.encode()) for t in TEXTS]
    for d, x, y in sorted(zip(r.doc_ixs, r.byte_starts, r.byte_ends), reverse=True):
        del want[d][x:y]
    assert [x["text"] for x in lines] == [w.decode(errors="replace") for w in want]
    assert pq.read_table(out / "spans.parquet").to_pydict()["byte_end"] == r.byte_ends.tolist()
    with pytest.raises(ArgumentError, match="already exists"):
        dedup.write_deduplicated(eng, r, out)
    assert (out / "documents.jsonl").exists()


def test_ids_output_and_spans_jsonl(tmp_path):
    docs = [[1, 2, 3], [0, 1, 2, 3, 4], [1, 2]]
    eng = engine.open(make_index(tmp_path, docs))
    r = eng.dedup(2)
    dedup.write_deduplicated(eng, r, tmp_path / "o")
    lines = [json.loads(x) for x in (tmp_path / "o" / "documents.jsonl").read_text().splitlines()]
    assert [x["ids"] for x in lines] == [[1, 2, 3], [0, 4], []]
    spans = [json.loads(x) for x in (tmp_path / "o" / "spans.jsonl").read_text().splitlines()]
    assert spans == [{"doc_ix": 1, "start": 1, "end": 4}, {"doc_ix": 2, "start": 0, "end": 2}]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("bad", [0, -3, 1.5, "2", None, True])
def test_bad_min_len(tmp_path, bad):
    eng = engine.open(make_index(tmp_path, [[1, 2]]))
    with pytest.raises(QueryError, match="min_len"):
        eng.dedup(bad)


def test_bad_spans_suffix(tmp_path):
    eng = engine.open(make_index(tmp_path, [[1, 2, 1, 2]]))
    with pytest.raises(ArgumentError, match=r"\.csv.*parquet"):
        dedup.write_spans(eng.dedup(2), tmp_path / "s.csv")
    assert not (tmp_path / "s.csv").exists()


def test_cli(tmp_path):
    from click.testing import CliRunner
    from infinigram.cli import main
    idx = make_index(tmp_path, [[1, 2, 3], [0, 1, 2, 3, 4], [1, 2]])
    res = CliRunner().invoke(main, ["dedup", str(idx), "--min-length", "2"])
    assert res.exit_code == 0 and res.output.startswith("2 spans of >= 2 tokens: 5 of 10 tokens")
    res = CliRunner().invoke(main, ["dedup", str(idx), "--min-length", "2", "--json",
                                    "--spans", str(tmp_path / "s.jsonl")])
    assert json.loads(res.output)["tokens_removed"] == 5
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 2
    for argv, message in [(["--min-length", "0"], "min_len=0"),
                          (["--min-length", "2", "--output", str(idx)], "already exists"),
                          (["--min-length", "2", "--spans", "x.txt"], "x.txt")]:
        res = CliRunner().invoke(main, ["dedup", str(idx), *argv])
        assert res.exit_code == 1 and message in res.output, res.output
    assert (idx / "manifest.json").exists()
