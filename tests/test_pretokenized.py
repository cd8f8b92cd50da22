"""Pre-tokenized input (every form, u16 and u32) and u32 indexes end to end,
checked against the brute-force oracles; each bad input's error."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import infinigram as ig
from infinigram import format as fmt
from infinigram.cli import main
from infinigram.errors import CorpusError
from naive import naive_count, naive_suffix_array, with_separators
from test_engine import ALPHABET, check_queries, queries_for, random_docs

U32 = [0, 1, 256, 65535, 65536, 65537, 16777216, 4294967294]  # ids above 65,535


def _docs(seed, alphabet=U32, n=30, max_len=25):
    rng = np.random.default_rng(seed)
    docs = [[int(x) for x in rng.choice(alphabet, rng.integers(0, max_len + 1))] for _ in range(n)]
    docs[3] = []  # an empty document
    return docs


def _flat(docs, sep):
    out = []
    for d in docs:
        out += [sep] + d
    return out


def write_form(form, d, docs):
    """Write ``docs`` in one pre-tokenized form under ``d``; return (input, build kwargs)."""
    wide = max(max(x, default=0) for x in docs) > 65534
    big = np.uint32 if wide else np.uint16
    if form == "parquet":
        pq.write_table(pa.table({"ids": pa.array(docs, pa.list_(pa.int64())),
                                 "n": list(range(len(docs)))}), d / "c.parquet")
        return d / "c.parquet", {"ids_field": "ids"}
    if form == "arrow":
        t = pa.table({"tokens": pa.array(docs, pa.large_list(pa.from_numpy_dtype(big)))})
        with pa.ipc.new_file(d / "c.arrow", t.schema) as w:
            w.write_table(t)
        return d / "c.arrow", {"ids_field": "tokens"}
    if form == "jsonl":
        (d / "c.jsonl").write_text("".join(json.dumps({"ids": x, "i": i}) + "\n"
                                           for i, x in enumerate(docs)))
        return d / "c.jsonl", {"ids_field": "ids"}
    if form == "npy_separator":  # a separator before each document, infini-gram's layout
        np.save(d / "c.npy", np.array(_flat(docs, np.iinfo(big).max), big))
        return d / "c.npy", {}
    if form == "npy_own_separator":  # int64, EOS-style separator after each document
        flat = [t for x in docs for t in x + [-7]]
        np.save(d / "c.npy", np.array(flat, np.int64))
        return d / "c.npy", {"ids_separator": -7}
    if form == "npy_offsets":
        np.save(d / "c.npy", np.array([t for x in docs for t in x], np.int64))
        np.save(d / "c.offsets.npy", np.cumsum([0] + [len(x) for x in docs[:-1]]))
        return d / "c.npy", {}
    if form == "raw":
        suffix = ".u32" if wide else ".u16"
        np.array(_flat(docs, np.iinfo(big).max), np.dtype(big).newbyteorder("<")).tofile(
            d / f"c{suffix}")
        return d / f"c{suffix}", {}
    if form == "bin":
        width = 4 if wide else 2
        np.array(_flat(docs, fmt.separator(width)), f"<u{width}").tofile(d / "c.bin")
        return d / "c.bin", {"token_width": width}
    assert form == "hf_dataset"  # save_to_disk: Arrow streams listed by state.json
    ds = d / "ds"
    ds.mkdir()
    half = len(docs) // 2
    names = []
    for k, part in enumerate((docs[:half], docs[half:])):
        t = pa.table({"input_ids": pa.array(part, pa.list_(pa.int32() if not wide else pa.int64()))})
        names.append(f"data-{k:05d}-of-00002.arrow")
        with pa.ipc.new_stream(ds / names[-1], t.schema) as w:
            w.write_table(t)
    (ds / "cache-junk.arrow").write_bytes(b"not listed, never read")
    (ds / "dataset_info.json").write_text("{}")
    (ds / "state.json").write_text(json.dumps({"_data_files": [{"filename": n} for n in names]}))
    return ds, {"ids_field": "input_ids"}


FORMS = ["parquet", "arrow", "jsonl", "npy_separator", "npy_own_separator", "npy_offsets", "raw",
         "bin", "hf_dataset"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("alphabet", ["u16", "u32"])
def test_each_form_builds_the_oracle_index(tmp_path, form, alphabet):
    docs = _docs(len(form), U32 if alphabet == "u32" else ALPHABET[2])
    src, kw = write_form(form, tmp_path, docs)
    idx = ig.build([src], tmp_path / "idx", quiet=True, **kw)
    m = fmt.read_manifest(idx)
    width = 4 if alphabet == "u32" else 2
    top = max(max(x, default=0) for x in docs)
    assert (m.token_width, m.vocab_size, m.tokenizer) == (width, top + 1, {"kind": "none"})
    eng = ig.open(idx)
    assert eng.n_docs == len(docs)
    assert [eng.get_doc(i).tokens.tolist() for i in range(len(docs))] == docs
    tokens = with_separators(docs, width)
    assert np.asarray(eng.shards[0].tokens).tobytes() == tokens.tobytes()
    rng = np.random.default_rng(1)
    for q in queries_for(docs, rng, 10):
        assert eng.count(q) == naive_count([tokens], q), q
    assert ig.verify(idx).ok


def test_u32_index_every_query_against_the_oracle(tmp_path):
    """A u32 index built end to end from ids above 65,535: every query type."""
    rng = np.random.default_rng(4)
    docs = random_docs(rng, 4, 40, 30) + [[65536, 65537] * 10, [4294967294] * 5]
    np.save(tmp_path / "c.npy", np.array(_flat(docs, 2**32 - 1), np.uint32))
    idx = ig.build([tmp_path / "c.npy"], tmp_path / "idx", shard_tokens=300, quiet=True)
    eng = ig.open(idx)
    assert eng.token_width == 4 and len(eng.shards) > 1
    for s in eng.shards:  # the table is the suffix array in byte order (infini-gram's)
        t = np.asarray(s.tokens)
        assert np.array_equal(np.asarray(s.table).view(np.uint8).reshape(-1, s.pointer) @
                              (256 ** np.arange(s.pointer)) // 4, naive_suffix_array(t))
    check_queries(eng, docs, queries_for(docs, rng) + [[65536], [65537, 65536, 65537],
                                                       [4294967294, 4294967294]])


def test_index_token_width_4_and_infinigram_layout(tmp_path):
    """tokenized.0/offset.0 as infini-gram writes them (u32, no manifest):
    `infinigram index --token-width 4` sorts them, and the tables open both
    with the manifest and without (token_width=4)."""
    docs = _docs(9)
    tokens = with_separators(docs, 4)
    d = tmp_path / "ig"
    d.mkdir()
    tokens.tofile(d / "tokenized.0")
    (np.flatnonzero(tokens == 2**32 - 1).astype("<u8") * 4).tofile(d / "offset.0")
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("tokenized.0", "offset.0"):
        (plain / name).write_bytes((d / name).read_bytes())
    res = CliRunner().invoke(main, ["index", str(d), "--token-width", "4", "--quiet"])
    assert res.exit_code == 0, res.output
    assert fmt.read_manifest(d).token_width == 4
    (plain / "table.0").write_bytes((d / "table.0").read_bytes())
    for eng in (ig.open(d), ig.open(plain, token_width=4)):
        assert eng.token_width == 4 and eng.n_docs == len(docs)
        for q in [[65536], [65535, 65536], [4294967294], [0, 1], [16777216, 65537]]:
            assert eng.count(q) == naive_count([tokens], q), q


def test_cli_build_from_ids(tmp_path):
    docs = _docs(2)
    np.array(_flat(docs, 2**32 - 1), "<u4").tofile(tmp_path / "c.bin")
    res = CliRunner().invoke(main, ["build", str(tmp_path / "c.bin"), "-o", str(tmp_path / "idx"),
                                    "--token-width", "4", "--quiet", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert (info["token_width"], info["documents"], info["tokenizer"]) == (4, len(docs), "none")


def _error(tmp_path, src, **kw):
    with pytest.raises(CorpusError) as e:
        ig.build([src], tmp_path / "idx", quiet=True, **kw)
    assert "\n" not in str(e.value) and not (tmp_path / "idx").exists()
    return str(e.value)


def test_ids_too_large_for_the_width(tmp_path):
    docs = [[1, 2], [3, 70000, 4]]
    pq.write_table(pa.table({"ids": docs}), tmp_path / "c.parquet")
    msg = _error(tmp_path, tmp_path / "c.parquet", ids_field="ids", token_width=2)
    assert "c.parquet document 1: token id 70000 does not fit token width 2" in msg
    assert "--token-width 4" in msg
    np.save(tmp_path / "n.npy", np.array([5, -3, 4], np.int64))
    assert "n.npy document 0: token id -3 is negative" in _error(tmp_path, tmp_path / "n.npy")
    np.save(tmp_path / "m.npy", np.array([2**32 - 1, 5, 2**32 - 1, 2**32], np.int64))
    assert "m.npy document 1: token id 4294967296 does not fit token width 4" in \
        _error(tmp_path, tmp_path / "m.npy", ids_separator=2**32 - 1)


def test_ids_field_of_the_wrong_type(tmp_path):
    pq.write_table(pa.table({"ids": ["1 2 3"]}), tmp_path / "s.parquet")
    msg = _error(tmp_path, tmp_path / "s.parquet", ids_field="ids")
    assert "column 'ids' has type string, not a list of integer token ids" in msg
    pq.write_table(pa.table({"ids": [[1.5, 2.0]]}), tmp_path / "f.parquet")
    assert "double>, not a list of integer" in \
        _error(tmp_path, tmp_path / "f.parquet", ids_field="ids")
    assert "has no column 'tokens'" in _error(tmp_path, tmp_path / "f.parquet", ids_field="tokens")
    (tmp_path / "c.jsonl").write_text('{"ids": [1, 2]}\n{"ids": "3 4"}\n')
    assert "c.jsonl line 2: field 'ids' holds '3 4', not a list of integer token ids" in \
        _error(tmp_path, tmp_path / "c.jsonl", ids_field="ids")
    pq.write_table(pa.table({"ids": [[1, 2], [3, None]]}), tmp_path / "n.parquet")
    assert "column 'ids' holds a null id (in the records from 0 on)" in \
        _error(tmp_path, tmp_path / "n.parquet", ids_field="ids")
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    assert "holds a 2-D float32 array; token ids must be a 1-D integer array" in \
        _error(tmp_path, tmp_path / "x.npy")


def test_raw_file_length_not_a_multiple_of_the_width(tmp_path):
    (tmp_path / "c.u32").write_bytes(b"\x01\x00\x00\x00\x02\x00")
    msg = _error(tmp_path, tmp_path / "c.u32")
    assert "c.u32 has 6 bytes, not a multiple of 4 (bytes per id)" in msg
    (tmp_path / "c.bin").write_bytes(b"\x01\x00\x00")
    assert "c.bin has 3 bytes, not a multiple of 2" in \
        _error(tmp_path, tmp_path / "c.bin", token_width=2)
    assert "needs the bytes per id; pass --token-width" in _error(tmp_path, tmp_path / "c.bin")


def test_mixed_and_misused_inputs(tmp_path):
    np.save(tmp_path / "a.npy", np.array([1, 2], np.uint16))
    (tmp_path / "b.jsonl").write_text('{"text": "hi"}\n')
    assert "b.jsonl holds text, not token ids" in _error(tmp_path, tmp_path)
    np.save(tmp_path / "a.offsets.npy", np.array([1]))
    assert "a.offsets.npy must be a 1-D integer array of the document starts" in \
        _error(tmp_path, tmp_path / "a.npy")
    assert "holds document offsets; name the .npy" in _error(tmp_path, tmp_path / "a.offsets.npy")
    res = CliRunner().invoke(main, ["build", str(tmp_path / "a.npy"), "-o", str(tmp_path / "i"),
                                    "--train-tokenizer", "300"])
    assert res.exit_code == 1 and "leave out vocab_size= (--train-tokenizer)" in res.output
    with pytest.raises(ig.BuildError, match=r"indexed as given, locally: .* ray= \(--ray\)"):
        ig.build([tmp_path / "a.npy"], tmp_path / "i", ray=True, quiet=True)
    assert not (tmp_path / "i").exists()
