"""Corpus reading: every format, batching, metadata, and every error."""
import gzip
import json

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from infinigram.corpus import DocBatch, iter_batches, list_files, total_bytes
from infinigram.errors import CorpusError

RECORDS = [
    {"text": "hello world", "id": 1, "src": "a"},
    {"text": "", "id": 2, "src": "b"},
    {"text": None, "id": 3, "src": "c"},
    {"text": "ünïcode 😀 中文\nsecond line", "id": 4, "src": "d"},
    {"text": "hello world and more", "id": 5, "src": "e"},
]
EXPECTED_TEXTS = ["hello world", "", "", "ünïcode 😀 中文\nsecond line", "hello world and more"]


def jsonl_bytes(records):
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def write(path, records, kind):
    if kind in ("jsonl", "json"):
        path.write_bytes(jsonl_bytes(records))
    elif kind == "jsonl.gz":
        path.write_bytes(gzip.compress(jsonl_bytes(records)))
    elif kind == "jsonl.zst":
        with pa.CompressedOutputStream(str(path), "zstd") as f:
            f.write(jsonl_bytes(records))
    elif kind == "parquet":
        pq.write_table(pa.Table.from_pylist(records), path, row_group_size=2)
    elif kind == "arrow":
        feather.write_feather(pa.Table.from_pylist(records), path, chunksize=2)
    elif kind == "arrows":  # IPC stream format under an .arrow name
        table = pa.Table.from_pylist(records)
        with pa.ipc.new_stream(str(path), table.schema) as w:
            w.write_table(table, max_chunksize=2)
    return path


def read_all(paths, **kw):
    batches = list(iter_batches(paths, **kw))
    texts = [t for b in batches for t in b.texts]
    metas = [json.loads(m) for b in batches for m in b.metadata]
    return batches, texts, metas


@pytest.mark.parametrize("kind,name", [
    ("jsonl", "c.jsonl"), ("json", "c.json"), ("jsonl.gz", "c.jsonl.gz"),
    ("jsonl.zst", "c.jsonl.zst"), ("parquet", "c.parquet"), ("arrow", "c.arrow"),
    ("arrow", "c.feather"), ("arrows", "c.arrow")])
@pytest.mark.parametrize("batch_bytes", [1, 10, 1 << 20])
def test_formats_texts_and_metadata(tmp_path, kind, name, batch_bytes):
    path = write(tmp_path / name, RECORDS, kind)
    batches, texts, metas = read_all(path, batch_bytes=batch_bytes)
    assert texts == EXPECTED_TEXTS
    assert [m["line"] for m in metas] == list(range(len(RECORDS)))
    assert all(m["path"] == str(path) for m in metas)
    assert [(m["id"], m["src"]) for m in metas] == [(r["id"], r["src"]) for r in RECORDS]
    assert all("text" not in m for m in metas)
    for b in batches:
        assert isinstance(b, DocBatch) and len(b.texts) == len(b.metadata) == len(b)
        assert b.nbytes == sum(len(t.encode()) for t in b.texts)
        assert all("\n" not in m for m in b.metadata)
    if batch_bytes == 1:  # every non-empty document closes a batch
        assert all(b.nbytes > 0 for b in batches[:-1])
    if batch_bytes == 1 << 20:
        assert len(batches) == 1
    assert batches[-1].done_bytes == total_bytes([path])
    assert [b.done_bytes for b in batches] == sorted(b.done_bytes for b in batches)


def test_txt_is_one_document_and_empty_files(tmp_path):
    (tmp_path / "a.txt").write_text("line one\nline two\n")
    (tmp_path / "b.txt").write_text("")
    (tmp_path / "c.jsonl").write_text("")
    (tmp_path / "d.jsonl").write_text('{"text": "x"}\n\n   \n{"text": "y"}')  # blank lines, no final \n
    _, texts, metas = read_all(tmp_path)
    assert texts == ["line one\nline two\n", "", "x", "y"]
    assert [(m["path"].rsplit("/", 1)[1], m["line"]) for m in metas] == [
        ("a.txt", 0), ("b.txt", 0), ("d.jsonl", 0), ("d.jsonl", 1)]


def test_text_field_and_extra_fields(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"content": "abc", "meta": {"k": [1, 2.5, null]}, "n": 1}\n'
                    '{"content": "d", "other": "only here"}\n')
    _, texts, metas = read_all(path, text_field="content")
    assert texts == ["abc", "d"]
    assert metas[0] == {"meta": {"k": [1, 2.5, None]}, "n": 1, "path": str(path), "line": 0}
    assert metas[1] == {"other": "only here", "path": str(path), "line": 1}


def test_field_types_may_change_between_records(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}", "id": i}) + "\n" for i in range(1000))
                    + '{"text": "last", "id": "a string now"}\n')
    _, texts, metas = read_all(path, batch_bytes=100)
    assert len(texts) == 1001 and metas[-1]["id"] == "a string now"


def test_parquet_non_text_types_become_json(tmp_path):
    import datetime
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": ["a"], "when": [datetime.date(2024, 1, 2)],
                             "blob": [b"\x00\x01"]}), path)
    _, texts, metas = read_all(path)
    assert texts == ["a"] and metas[0]["when"] == "2024-01-02"


def test_parquet_dictionary_and_large_string(tmp_path):
    path = tmp_path / "c.parquet"
    col = pa.array(["x", "y", "x"]).dictionary_encode()
    pq.write_table(pa.table({"text": col}), path)
    assert read_all(path)[1] == ["x", "y", "x"]
    feather.write_feather(pa.table({"text": pa.array(["p", None], pa.large_string())}),
                          tmp_path / "l.arrow")
    assert read_all(tmp_path / "l.arrow")[1] == ["p", ""]


def test_multi_file_order_and_batches_span_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("B")
    (tmp_path / "a.txt").write_text("A")
    (tmp_path / "sub" / "c.txt").write_text("C")
    (tmp_path / "notes.md").write_text("ignored")
    (tmp_path / "data.csv").write_text("ignored")
    files = list_files(tmp_path)
    assert [f.name for f in files] == ["a.txt", "b.txt", "c.txt"]
    batches, texts, _ = read_all([tmp_path / "b.txt", tmp_path / "sub"], batch_bytes=1 << 20)
    assert texts == ["B", "C"] and len(batches) == 1
    assert batches[0].done_bytes == total_bytes(files[1:]) == 2


def test_list_files_accepts_single_path_and_list(tmp_path):
    (tmp_path / "a.txt").write_text("A")
    assert list_files(str(tmp_path / "a.txt")) == list_files([tmp_path / "a.txt"])


def test_large_jsonl_streams_in_bounded_batches(tmp_path):
    path = tmp_path / "big.jsonl.gz"
    docs = [f"document {i} " + "x" * (i % 97) for i in range(5000)]
    path.write_bytes(gzip.compress(jsonl_bytes({"text": d} for d in docs)))
    batches, texts, metas = read_all(path, batch_bytes=4096)
    assert texts == docs and [m["line"] for m in metas] == list(range(5000))
    assert len(batches) > 4
    assert max(b.nbytes for b in batches) < 3 * (1 << 16)  # reads at least 64 KiB at a time


# ---- errors ---------------------------------------------------------------

def err(paths, match, **kw):
    with pytest.raises(CorpusError, match=match):
        list(iter_batches(paths, **kw))


def test_missing_path(tmp_path):
    err(tmp_path / "nope.jsonl", r"nope\.jsonl does not exist")


def test_unsupported_suffix_named(tmp_path):
    (tmp_path / "x.csv").write_text("a,b")
    err(tmp_path / "x.csv", r"x\.csv has an unsupported suffix.*\.jsonl")


@pytest.mark.parametrize("name,content,match", [
    ("x.jsonl.gz", b'{"text": "plain"}\n', r"x\.jsonl\.gz is not gzip-compressed"),
    ("x.jsonl.zst", b'{"text": "plain"}\n', r"x\.jsonl\.zst is not zstd-compressed"),
    ("x.parquet", b'{"text": "plain"}\n', r"x\.parquet is not a Parquet file"),
    ("x.arrow", b"not arrow at all", r"x\.arrow is neither an Arrow IPC file nor stream"),
    ("x.jsonl", b"garbage here\n", r"x\.jsonl line 1 is not JSON.*JSON Lines"),
    ("x.json", b'[{"text": "a"},\n {"text": "b"}]\n', r"x\.json line 1 is not JSON.*jq"),
    ("x.jsonl", b'[{"text": "a"}, {"text": "b"}]\n', r"line 1 holds a JSON list, not an object"),
    ("x.jsonl", b'{"text": "ok"}\n\n{"text": "a\xffb"}\n', r"x\.jsonl line 3 is not valid UTF-8.*0xff"),
    ("x.txt", b"ok \xc3\x28 bad", r"x\.txt is not valid UTF-8.*offset 3"),
    ("x.jsonl", b'{"text": "ok"}\n{"body": "a", "id": 1}\n',
     r"line 2 has no field 'text'; its fields are \['body', 'id'\].*--text-field"),
    ("x.jsonl", b'{"text": 5}\n', r"line 1: field 'text' holds a int.*not a string.*--text-field"),
    ("x.jsonl", b'{"text": ["a"]}\n', r"field 'text' holds a list"),
    ("x.jsonl", b'{"text": "a\\ud800b"}\n', r"x\.jsonl record 0.*lone surrogate.*not valid UTF-8"),
])
def test_bad_files(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    err(tmp_path / name, match)


def test_truncated_gzip(tmp_path):
    data = gzip.compress(jsonl_bytes({"text": f"doc {i} " * 20} for i in range(2000)))
    (tmp_path / "t.jsonl.gz").write_bytes(data[: len(data) // 2])
    err(tmp_path / "t.jsonl.gz", r"t\.jsonl\.gz: cannot decompress.*truncated")


@pytest.mark.parametrize("kind", ["parquet", "arrow"])
def test_columnar_missing_or_non_string_text(tmp_path, kind):
    path = write(tmp_path / f"x.{kind}", [{"body": "a", "n": 1}], kind)
    err(path, r"has no column 'text'; its columns are \['body', 'n'\].*--text-field")
    err(path, r"column 'n' has type int64, not string", text_field="n")


def test_parquet_binary_text_is_not_string(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"text": pa.array([b"\xff"], pa.binary())}), path)
    err(path, r"column 'text' has type binary, not string")


def test_bad_batch_bytes(tmp_path):
    (tmp_path / "a.txt").write_text("A")
    err(tmp_path / "a.txt", r"batch_bytes=0 is out of range; pass an int in \[1, ", batch_bytes=0)
