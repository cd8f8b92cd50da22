"""Opening an index: every damaged or mismatched index is refused clearly."""
import json
import shutil

import pytest

import infinigram as ig
from infinigram import format as fmt
from infinigram.errors import IndexFormatError


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("fmt")
    src = d / "c.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["abc abd", "abc", "zz"] * 30))
    return ig.build([src], d / "idx", tokenizer="bytes", shard_tokens=100, quiet=True)


@pytest.fixture
def index(built, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(built, dst)
    return dst


def test_widths_and_separators():
    assert [fmt.token_width(v) for v in (255, 256, 65535, 65536)] == [1, 2, 2, 4]
    assert [fmt.separator(w) for w in (1, 2, 4)] == [0xFF, 0xFFFF, 0xFFFFFFFF]
    assert fmt.pointer_width(2 ** 24) == 3 and fmt.pointer_width(2 ** 24 + 1) == 4
    with pytest.raises(IndexFormatError, match="vocabulary size"):
        fmt.token_width(2 ** 32)


def test_opens_and_counts(index):
    assert ig.open(index).count("abc") == 60


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
    (lambda d: (d / "manifest.json").write_text("{not json"), "corrupt"),
    (lambda d: (d / "manifest.json").write_bytes(b"\xff\xfe"), "not UTF-8"),
    (lambda d: (d / "table.1").unlink(), "table.1 is missing"),
    (lambda d: (d / "tokenized.0").write_bytes((d / "tokenized.0").read_bytes()[:-3]), "truncated"),
    (lambda d: (d / "table.0").write_bytes((d / "table.0").read_bytes() + b"\0"), "table.0"),
    (lambda d: shutil.copy(d / "table.0", d / "table.9"), "table.9 is not part of this index"),
])
def test_damaged_index_is_refused(index, damage, message):
    damage(index)
    with pytest.raises(IndexFormatError, match=message):
        ig.open(index)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(version=99), "format version 99"),
    (lambda m: m.update(separator=7), "separator 7"),
    (lambda m: m.update(vocab_size=70000), "vocab_size 70000"),
    (lambda m: m.pop("shards"), "corrupt"),
    (lambda m: m["shards"][0].update(tokens=1), "records 1"),
    (lambda m: m.update(tokenizer={"kind": "wordpiece"}), "unknown tokenizer"),
])
def test_mismatched_manifest_is_refused(index, edit, message):
    m = json.loads((index / "manifest.json").read_text())
    edit(m)
    (index / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IndexFormatError, match=message):
        ig.open(index)


def test_manifestless_index_needs_a_width(index):
    (index / "manifest.json").unlink()
    with pytest.raises(IndexFormatError, match="token_width"):
        ig.open(index, token_width=None)
    eng = ig.open(index, token_width=1, tokenizer="bytes")
    assert eng.count("abc") == 60


def test_missing_directory(tmp_path):
    with pytest.raises(IndexFormatError, match="does not exist"):
        ig.open(tmp_path / "nowhere")
