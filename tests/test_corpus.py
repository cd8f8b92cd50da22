"""Corpus reading: every format, batching, metadata, and every error."""
import gzip
import json

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from infinigram.corpus import DocBatch, iter_batches, list_files, split_metadata, total_bytes
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


def fields_and_sources(metas):
    pairs = [split_metadata(m) for m in metas]
    return [f for f, _ in pairs], [s for _, s in pairs]


@pytest.mark.parametrize("kind,name", [
    ("jsonl", "c.jsonl"), ("json", "c.json"), ("jsonl.gz", "c.jsonl.gz"),
    ("jsonl.zst", "c.jsonl.zst"), ("parquet", "c.parquet"), ("arrow", "c.arrow"),
    ("arrow", "c.feather"), ("arrows", "c.arrow")])
@pytest.mark.parametrize("batch_bytes", [1, 10, 1 << 20])
def test_formats_texts_and_metadata(tmp_path, kind, name, batch_bytes):
    path = write(tmp_path / name, RECORDS, kind)
    batches, texts, metas = read_all(path, batch_bytes=batch_bytes)
    assert texts == EXPECTED_TEXTS
    fields, sources = fields_and_sources(metas)
    assert sources == [{"path": str(path), "linenum": i} for i in range(len(RECORDS))]
    assert fields == [{k: v for k, v in r.items() if k != "text"} for r in RECORDS]
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
    assert [(m["path"].rsplit("/", 1)[1], m["linenum"], m["metadata"]) for m in metas] == [
        ("a.txt", 0, {}), ("b.txt", 0, {}), ("d.jsonl", 0, {}), ("d.jsonl", 3, {})]


def test_text_field_and_extra_fields(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"content": "abc", "meta": {"k": [1, 2.5, null]}, "n": 1}\n'
                    '{"content": "d", "other": "only here"}\n')
    _, texts, metas = read_all(path, text_field="content")
    assert texts == ["abc", "d"]
    assert metas[0] == {"path": str(path), "linenum": 0,
                        "metadata": {"meta": {"k": [1, 2.5, None]}, "n": 1}}
    assert metas[1] == {"path": str(path), "linenum": 1, "metadata": {"other": "only here"}}


# User fields named like our provenance, nested, unicode, null: one schema,
# so the columnar formats can hold them too.
COLLIDING = [
    {"text": "first", "path": "src/app/main.py", "line": 17, "linenum": 99,
     "metadata": {"k": ["ü", None]}, "source": {"file": "x", "row": 2}, "ünï 中": "😀 ok",
     "flag": True, "x": 0.5},
    {"text": "second", "path": None, "line": None, "linenum": -1,
     "metadata": None, "source": None, "ünï 中": None, "flag": False, "x": None},
]


@pytest.mark.parametrize("kind,name", [
    ("jsonl", "c.jsonl"), ("jsonl.gz", "c.jsonl.gz"), ("jsonl.zst", "c.jsonl.zst"),
    ("parquet", "c.parquet"), ("arrow", "c.arrow"), ("arrow", "c.feather"),
    ("arrows", "c.arrow")])
def test_user_fields_come_back_exactly_beside_the_provenance(tmp_path, kind, name):
    path = write(tmp_path / name, COLLIDING, kind)
    _, texts, metas = read_all(path)
    fields, sources = fields_and_sources(metas)
    assert texts == ["first", "second"]
    assert fields == [{k: v for k, v in r.items() if k != "text"} for r in COLLIDING]
    assert [type(f["line"]) for f in fields] == [int, type(None)]
    assert sources == [{"path": str(path), "linenum": i} for i in range(2)]


def test_json_values_keep_their_json_types(tmp_path):
    line = ('{"text": "t", "i": 1, "f": 1.0, "big": 123456789012345678901234567890, '
            '"neg": -0.0, "e": 1e300, "s": "1", "b": false, "n": null, "l": [], "o": {}, '
            '"deep": {"a": [{"b": [null, {"c": "\\u00e9\\ud83d\\ude00"}]}]}}\n')
    path = tmp_path / "c.jsonl"
    path.write_text(line)
    fields, _ = fields_and_sources(read_all(path)[2])
    want = json.loads(line)
    del want["text"]
    assert fields == [want]
    assert [type(fields[0][k]) for k in ("i", "f", "big", "b")] == [int, float, int, bool]
    assert json.dumps(fields[0]) == json.dumps(want)


def test_split_metadata_reads_other_layouts_whole():
    assert split_metadata({"path": "p", "linenum": 3, "metadata": {"a": 1}}) == (
        {"a": 1}, {"path": "p", "linenum": 3})
    for other in ({"path": "p", "line": 3, "a": 1}, {"path": "p", "linenum": 3, "metadata": 5},
                  {"path": "p", "linenum": 3, "metadata": {}, "x": 1}, [1, 2], "s"):
        assert split_metadata(other) == (other, None)


def test_field_types_may_change_between_records(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}", "id": i}) + "\n" for i in range(1000))
                    + '{"text": "last", "id": "a string now"}\n')
    _, texts, metas = read_all(path, batch_bytes=100)
    assert len(texts) == 1001 and metas[-1]["metadata"]["id"] == "a string now"


def test_parquet_non_text_types_become_json(tmp_path):
    import datetime
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": ["a"], "when": [datetime.date(2024, 1, 2)],
                             "blob": [b"\x00\x01"]}), path)
    _, texts, metas = read_all(path)
    assert texts == ["a"] and metas[0]["metadata"]["when"] == "2024-01-02"


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
    assert texts == docs and [m["linenum"] for m in metas] == list(range(5000))
    assert len(batches) > 4
    assert max(b.nbytes for b in batches) < 3 * (1 << 16)  # reads at least 64 KiB at a time


# ---- errors ---------------------------------------------------------------

def err(paths, match, **kw):
    with pytest.raises(CorpusError, match=match) as info:
        list(iter_batches(paths, **kw))
    assert len(str(info.value).splitlines()) == 1


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
    ("x.jsonl", b'{"text": "a\\ud800b"}\n', r"x\.jsonl line 1:.*lone surrogate.*not valid UTF-8"),
])
def test_bad_files(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    err(tmp_path / name, match)


@pytest.mark.parametrize("name,kind,match", [
    ("x.jsonl", "jsonl.gz", r"x\.jsonl is gzip-compressed, not JSON Lines.*end in \.jsonl\.gz"),
    ("x.json", "jsonl.zst", r"x\.json is zstd-compressed, not JSON Lines.*\.jsonl\.zst"),
    ("x.jsonl", "parquet", r"x\.jsonl is a Parquet file, not JSON Lines.*\.parquet"),
    ("x.jsonl", "arrow", r"x\.jsonl is an Arrow IPC file, not JSON Lines.*\.arrow"),
    ("x.jsonl", "arrows", r"x\.jsonl is an Arrow IPC stream, not JSON Lines.*\.arrow"),
    ("x.txt", "jsonl.gz", r"x\.txt is gzip-compressed, not text as its suffix says"),
    ("x.txt", "arrows", r"x\.txt is an Arrow IPC stream, not text"),
    ("x.arrow", "parquet", r"x\.arrow is neither an Arrow IPC file nor stream"),
    ("x.parquet", "arrow", r"x\.parquet is not a Parquet file"),
    ("x.jsonl.gz", "jsonl.zst", r"x\.jsonl\.gz is not gzip-compressed"),
])
def test_content_that_is_not_what_the_suffix_says(tmp_path, name, kind, match):
    err(write(tmp_path / name, RECORDS, kind), match)


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


@pytest.mark.parametrize("at,match", [
    (4, r"x\.parquet: cannot read record 0 onward \(.*page header failed\. \); the file is"),
    (-40, r"x\.parquet is not a readable Parquet file \(.*\); re-write it")])
def test_corrupt_parquet_is_one_line(tmp_path, at, match):
    path = write(tmp_path / "x.parquet", RECORDS * 50, "parquet")
    data = bytearray(path.read_bytes())
    data[at:at + 30] = b"\xff" * 30  # a page header, or the footer
    path.write_bytes(bytes(data))
    err(path, match)


def test_error_from_a_file_name_with_a_line_break_is_one_line(tmp_path):
    path = tmp_path / "two\nlines.jsonl"
    path.write_bytes(b"not json\n")
    err(path, r"two lines\.jsonl line 1 is not JSON")


def index_dir(path):
    path.mkdir(parents=True)
    for name in ("tokenized.0", "table.0", "offset.0"):
        (path / name).write_bytes(b"")
    (path / "manifest.json").write_text('{"version": 1}\n')
    return path


def test_index_directories_found_in_a_search_are_skipped(tmp_path, capsys):
    (tmp_path / "a.jsonl").write_text('{"text": "a"}\n')
    index_dir(tmp_path / "idx")
    index_dir(tmp_path / ".idx2.building-123")
    (tmp_path / "idx" / "sub").mkdir()
    (tmp_path / "idx" / "sub" / "b.jsonl").write_text('{"text": "b"}\n')
    assert list_files(tmp_path) == [tmp_path / "a.jsonl"]
    note = capsys.readouterr().err
    assert f"skipping {tmp_path / 'idx'}: it holds an index" in note
    assert ".idx2.building-123: it holds an index" in note


@pytest.mark.parametrize("name", ["idx", "idx/manifest.json"])
def test_an_index_directory_named_as_input_is_an_error(tmp_path, name):
    index_dir(tmp_path / "idx")
    err(tmp_path / name, r"idx is an index directory \(it holds tokenized\.0\), not corpus input")


def test_a_corpus_file_named_beside_an_index_is_read(tmp_path):
    index_dir(tmp_path / "idx")
    (tmp_path / "idx" / "text.jsonl").write_text('{"text": "a"}\n')
    assert list_files(tmp_path / "idx" / "text.jsonl") == [tmp_path / "idx" / "text.jsonl"]
