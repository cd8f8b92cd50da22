"""Opening an index: every damaged or mismatched index is refused clearly."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import infinigram as ig
from infinigram import format as fmt
from infinigram.errors import IndexFormatError
from naive import naive_count, naive_next_counts, with_separators


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


def _poke(path, at, value):
    """Overwrite the bytes at ``at`` (same size: only content checks see it)."""
    data = bytearray(path.read_bytes())
    data[at:at + len(value)] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
    (lambda d: (d / "manifest.json").write_text("{not json"), "corrupt"),
    (lambda d: (d / "manifest.json").write_bytes(b"\xff\xfe"), "not UTF-8"),
    (lambda d: (d / "manifest.json").write_text("[" * 100_000 + "]" * 100_000), "RecursionError"),
    (lambda d: (d / "manifest.json").write_text("[1]"), "not a JSON object"),
    (lambda d: (d / "table.1").unlink(), "table.1 is missing"),
    (lambda d: (d / "tokenized.0").write_bytes((d / "tokenized.0").read_bytes()[:-3]), "truncated"),
    (lambda d: (d / "table.0").write_bytes((d / "table.0").read_bytes() + b"\0"), "table.0"),
    (lambda d: shutil.copy(d / "table.0", d / "table.9"), "table.9 is not part of this index"),
    # the checks every open runs on the contents
    (lambda d: _poke(d / "offset.0", 0, np.uint64(1).tobytes()), "offset.0 is damaged: the first"),
    (lambda d: _poke(d / "offset.0", (d / "offset.0").stat().st_size - 8,
                     np.uint64(999).tobytes()), "past the end"),
    (lambda d: _poke(d / "offset.0", 8, np.uint64(0).tobytes()), "entry 1 .0. is not above"),
    (lambda d: _poke(d / "offset.0", 8, np.uint64(3).tobytes()), "not the offset of a separator"),
    (lambda d: _poke(d / "tokenized.0", 0, b"a"), "not the offset of a separator"),
    (lambda d: _poke(d / "metaoff.0", 8, np.uint64(3).tobytes()), "metaoff.0 is damaged: entry 1"),
    (lambda d: _poke(d / "metaoff.0", 8, np.uint64(1 << 40).tobytes()), "metaoff.0 is damaged"),
    (lambda d: _poke(d / "metadata.0", (d / "metadata.0").stat().st_size - 1, b"}"),
     "metadata.0 is damaged: its last line"),
])
def test_damaged_index_is_refused(index, damage, message):
    damage(index)
    with pytest.raises(IndexFormatError, match=message) as info:
        ig.open(index)
    assert "\n" not in str(info.value)


def _rewrite(index, m, checksum=True):
    """Write manifest dict ``m`` back, with a matching checksum if asked."""
    if checksum:
        m["checksum"] = fmt._checksum({k: v for k, v in m.items() if k != "checksum"})
    (index / "manifest.json").write_text(json.dumps(m))


def _record(index):
    return json.loads((index / "manifest.json").read_text())["shards"][0]["files"]["table.0"]


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(version=99), "format version 99"),
    (lambda m: m.update(separator=7), "separator 7"),
    (lambda m: m.update(vocab_size=70000), "vocab_size 70000"),
    (lambda m: m.update(vocab_size=0), "vocab_size 0"),
    (lambda m: m.update(token_width=2.7), "token_width is 2.7, not a non-negative integer"),
    (lambda m: m.update(token_width=True), "token_width is True"),
    (lambda m: m.update(token_width=3), "token width 3 is not supported"),
    (lambda m: m.pop("shards"), "shards is None, not a JSON list"),
    (lambda m: m.update(shards=[[]]), "shard 0: files is None"),
    (lambda m: m["shards"][0].update(tokens=1), "records 1"),
    (lambda m: m["shards"][0].update(docs=-1), "docs is -1"),
    (lambda m: m["shards"][0]["files"]["table.0"].pop("size"), "table.0: size is None"),
    (lambda m: m["shards"][0]["files"].update({"table.0": [1, 2]}), "table.0: size is None"),
    (lambda m: m["shards"][0]["files"]["table.0"].update(sha256="zz"), "not 64 hex digits"),
    (lambda m: m["shards"][0]["files"].update({"../x": {}}), "'../x' is not a file of shard 0"),
    (lambda m: m["shards"][0]["files"].update({"table.1": {}}), "'table.1' is not a file of"),
    (lambda m: m.update(tokenizer={"kind": "wordpiece"}), "unknown tokenizer"),
    (lambda m: m.update(tokenizer={"kind": "sentencepiece", "file": "/etc/x", "sha256": "0" * 64}),
     "not a file name inside the index"),
    (lambda m: m.update(tokenizer=[]), "unknown tokenizer"),
    (lambda m: m.update(build=[]), "build is \\[\\], not a JSON object"),
    (lambda m: m.update(extra=1), "unknown field"),
])
def test_mismatched_manifest_is_refused(index, edit, message):
    m = json.loads((index / "manifest.json").read_text())
    edit(m)
    _rewrite(index, m)
    with pytest.raises(IndexFormatError, match=message) as info:
        ig.open(index)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ['"tokens": 1e999', '"tokens": 1.0', '"tokens": "5"'])
def test_non_integer_counts_are_refused(index, text):
    raw = (index / "manifest.json").read_text()
    m = json.loads(raw)
    body = raw.replace(f'"tokens": {m["shards"][0]["tokens"]}', text, 1)
    assert body != raw
    (index / "manifest.json").write_text(body)
    with pytest.raises(IndexFormatError, match="tokens is"):
        ig.open(index)


def test_checksum_catches_any_edit(index):
    m = json.loads((index / "manifest.json").read_text())
    m["build"]["text_field"] = "body"
    _rewrite(index, m, checksum=False)
    with pytest.raises(IndexFormatError, match="checksum does not match"):
        ig.open(index)
    m.pop("checksum")
    _rewrite(index, m, checksum=False)  # a manifest written before checksums still opens
    assert ig.open(index).count("abc") == 60


def test_manifestless_index_needs_a_width(index):
    (index / "manifest.json").unlink()
    with pytest.raises(IndexFormatError, match="token_width"):
        ig.open(index, token_width=None)
    eng = ig.open(index, token_width=1, tokenizer="bytes")
    assert eng.count("abc") == 60


def test_manifestless_index_with_a_wrong_width_is_refused(index_factory):
    d = index_factory([[1, 2, 3], [4, 5]], width=2)
    (d / "manifest.json").unlink()
    with pytest.raises(IndexFormatError, match="table.0 has 7 bytes, expected 14"):
        ig.open(d, token_width=1)
    with pytest.raises(IndexFormatError, match="not a multiple of the token width 4"):
        ig.open(d, token_width=4)


def test_manifestless_index_with_a_truncated_metaoff_is_refused(index_factory):
    d = index_factory([[1, 2], [3]], width=2, metadata=[{"a": 1}, {"a": 2}])
    (d / "manifest.json").unlink()
    (d / "metaoff.0").write_bytes((d / "metaoff.0").read_bytes()[:-1])
    with pytest.raises(IndexFormatError, match="metaoff.0 is damaged: it has 15 bytes"):
        ig.open(d, token_width=2)


def test_missing_directory(tmp_path):
    with pytest.raises(IndexFormatError, match="does not exist"):
        ig.open(tmp_path / "nowhere")


def test_damaged_metadata_line_is_a_clear_error(index):
    text = (index / "metadata.0").read_bytes()
    (index / "metadata.0").write_bytes(b"x" + text[1:])
    eng = ig.open(index)
    assert eng.get_doc(1).metadata is not None
    with pytest.raises(IndexFormatError, match="metadata.0: the line of document 0 is not a "
                                               "JSON object .*rebuild the index"):
        eng.get_doc(0)


def test_shards_hold_no_file_descriptors(index_factory):
    """An index of 1,100 shards (5,500 files, with metadata) opens and
    answers like the oracle in a process limited to 1,024 descriptors, and
    holds none of them after open."""
    rng = np.random.default_rng(5)
    docs = [rng.integers(0, 6, rng.integers(1, 12)).tolist() for _ in range(2200)]
    d = index_factory(docs, width=2, vocab_size=8, shards=1100,
                      metadata=[{"i": i} for i in range(2200)])
    queries = [[int(t) for t in rng.integers(0, 6, n)] for n in (1, 1, 2, 2, 3, 4)] + [[7]]
    script = ("import json, os, resource, sys, infinigram as ig\n"
              "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
              "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))\n"
              "eng = ig.open(sys.argv[1])\n"
              "fds = len(os.listdir('/proc/self/fd'))\n"
              "qs = json.loads(sys.argv[2])\n"
              "ntd = [eng.ntd(q[:1]) for q in ([[]] + qs)]\n"
              "print(json.dumps([len(eng.shards), fds, [eng.count(q) for q in qs],\n"
              "                  eng.count_many(qs).tolist(), eng.get_doc(2199).metadata,\n"
              "                  [dict(zip(n.ids.tolist(), n.counts.tolist())) for n in ntd]]))\n")
    out = subprocess.run([sys.executable, "-c", script, str(d), json.dumps(queries)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    shards, fds, counts, many, meta, ntds = json.loads(out.stdout)
    tokens = [with_separators(docs, 2)]
    assert (shards, meta) == (1100, {"i": 2199})
    assert fds < 20  # the index's 5,500 files: no descriptor kept
    assert counts == many == [naive_count(tokens, q) for q in queries]
    assert [{int(k): v for k, v in n.items()} for n in ntds] == \
        [naive_next_counts(tokens, q[:1]) for q in [[]] + queries]
