"""``verify`` and ``infinigram index``: every damaged file is reported, and
following the advice never blesses bad data."""
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import infinigram as ig
from infinigram import builder, format as fmt
from infinigram.cli import main
from infinigram.errors import IndexFormatError
from naive import naive_count, with_separators

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A two-shard index with a trained tokenizer and metadata: every kind of file."""
    d = tmp_path_factory.mktemp("verify")
    rng = np.random.default_rng(0)
    docs = [" ".join(rng.choice(WORDS, 30)) for _ in range(120)]
    src = d / "c.jsonl"
    src.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(docs)))
    out = ig.build([src], d / "idx", vocab_size=280, shard_tokens=1500, quiet=True)
    assert len(fmt.read_manifest(out).shards) >= 2
    return out


@pytest.fixture
def index(built, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(built, dst)
    return dst


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(res):
    assert res.exit_code == 1, res.output
    assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    return res.output


def _flip_token(index):
    """Change one real token of tokenized.0 into another real token."""
    tokens = np.fromfile(index / "tokenized.0", dtype="<u2")
    i = int(np.flatnonzero(tokens != 0xFFFF)[5])
    tokens[i] = (tokens[i] + 1) % 280
    tokens.tofile(index / "tokenized.0")


def _n_files(index):
    """Files with a recorded sha256: every shard file and tokenizer.model."""
    return sum(len(s.files) for s in fmt.read_manifest(index).shards) + 1


def _token_arrays(index):
    return [np.fromfile(p, dtype="<u2") for p in sorted(index.glob("tokenized.*"))]


def test_sound_index_verifies(index):
    report = ig.verify(index)
    assert report.ok, report.problems
    n = _n_files(index)
    assert n == 5 * len(_token_arrays(index)) + 1
    assert f"sha256 of {n} of {n} files" in report.checked


def test_following_verify_advice_never_blesses_corrupt_tokens(index):
    q = ig.open(index).tokenize("alpha beta")
    n = _n_files(index)
    _flip_token(index)
    report = ig.verify(index)
    problems = [p for p in report.problems if p.startswith("tokenized.0")]
    assert problems and "rebuild the index from the corpus" in problems[0]
    assert "infinigram index" not in problems[0]
    assert f"sha256 of {n - 1} of {n} files" in report.checked
    # even the old advice (delete table.0, run index) is refused now
    (index / "table.0").unlink()
    with pytest.raises(IndexFormatError, match="tokenized.0 differs from the sha256"):
        builder.index_tables(index, quiet=True)
    assert "tokenized.0 differs" in _one_line_error(run("index", index))
    assert not ig.verify(index).ok
    # tokens changed on purpose: said explicitly, the index is rebuilt around them
    shards = list(range(len(_token_arrays(index))))
    assert builder.index_tables(index, tokens_changed=True, quiet=True) == shards
    assert ig.verify(index).ok
    assert ig.open(index).count(q) == naive_count(_token_arrays(index), q) > 0


def test_a_bad_table_is_rebuilt_by_following_the_advice(index, built):
    table = bytearray((index / "table.1").read_bytes())
    table[0], table[1] = table[1], table[0]
    (index / "table.1").write_bytes(bytes(table))
    report = ig.verify(index)
    assert len(report.problems) == 2  # its sha256 and its suffix order
    assert all("delete table.1 (if present) and run `infinigram index" in p
               for p in report.problems)
    (index / "table.1").unlink()
    assert builder.index_tables(index, quiet=True) == [1]
    assert ig.verify(index).ok
    assert (index / "table.1").read_bytes() == (built / "table.1").read_bytes()


@pytest.mark.parametrize("name", ["tokenizer.model", "metadata.0", "metaoff.1", "offset.1"])
def test_verify_reports_every_file(index, name):
    data = bytearray((index / name).read_bytes())
    data[len(data) // 2] ^= 0x40
    (index / name).write_bytes(bytes(data))
    report = ig.verify(index)
    assert any(p.startswith(f"{name}: sha256 differs") for p in report.problems), report.problems
    n = _n_files(index)
    assert f"sha256 of {n - 1} of {n} files" in report.checked


def test_verify_reports_a_missing_tokenizer_and_a_non_canonical_manifest(index):
    (index / "tokenizer.model").unlink()
    text = (index / "manifest.json").read_text()
    (index / "manifest.json").write_text(text.replace("\n", "\r\n", 1))
    report = ig.verify(index)
    assert any(p.startswith("tokenizer.model is missing") for p in report.problems)
    assert any("manifest.json is not as infinigram writes it" in p for p in report.problems)


@pytest.mark.parametrize("edit", [
    lambda m: m["shards"][0]["files"]["table.0"].pop("size"),
    lambda m: m["shards"][0]["files"].update({"table.0": [1, 2]}),
    lambda m: m["shards"][0].update(tokens=float("inf")),
    lambda m: m.update(token_width=2.7),
])
def test_verify_reports_a_bad_manifest_without_crashing(index, edit):
    m = json.loads((index / "manifest.json").read_text())
    edit(m)
    (index / "manifest.json").write_text(json.dumps(m))
    report = ig.verify(index)
    assert len(report.problems) == 1 and "\n" not in report.problems[0]
    assert "manifest.json" in report.problems[0]
    res = run("verify", index)
    assert res.exit_code == 1 and "Traceback" not in res.output


def test_doc_after_damaged_metadata_is_one_line(index):
    data = bytearray((index / "metadata.0").read_bytes())
    data[0] = ord("[")
    (index / "metadata.0").write_bytes(bytes(data))
    assert "metadata.0: the line of document 0" in _one_line_error(run("doc", index, 0))
    off = np.fromfile(index / "metaoff.0", dtype="<u8")
    off[1] += 1
    off.tofile(index / "metaoff.0")
    assert "metaoff.0 is damaged" in _one_line_error(run("doc", index, 0))


@pytest.fixture
def tokenized(tmp_path):
    """A manifest-less directory of width-2 tokens (ids up to 3999) and offsets."""
    d = tmp_path / "tok"
    d.mkdir()
    tokens = with_separators([[1, 2, 3], [3999, 2], [], [7, 1, 2]], 2)
    tokens.tofile(d / "tokenized.0")
    (np.flatnonzero(tokens == 0xFFFF).astype("<u8") * 2).tofile(d / "offset.0")
    return d


@pytest.mark.parametrize("vocab, message", [
    (0, "vocab_size=0 is out of range"), (-1, "vocab_size=-1 is out of range"),
    (70000, "vocab_size=70000 is out of range"), (65536, "vocab_size=65536 is out of range"),
    (100, "above the largest id present .3999."),
])
def test_index_checks_the_vocabulary_against_the_tokens(tokenized, vocab, message):
    with pytest.raises(ValueError, match=message):  # ArgumentError or IndexFormatError
        builder.index_tables(tokenized, token_width=2, vocab_size=vocab, quiet=True)
    assert message.split(" .")[0] in _one_line_error(
        run("index", tokenized, "--token-width", 2, "--vocab-size", vocab))
    assert not (tokenized / "manifest.json").exists()


def test_index_accepts_a_fitting_vocabulary(tokenized):
    assert builder.index_tables(tokenized, token_width=2, vocab_size=4000, quiet=True) == [0]
    assert ig.open(tokenized).vocab_size == 4000 and ig.verify(tokenized).ok


@pytest.mark.parametrize("damage, width, message", [
    (lambda d: np.array([0, 8, 2], "<u8").tofile(d / "offset.0"), 2, "entry 2 .2. is not above"),
    (lambda d: np.array([0, 9, 20], "<u8").tofile(d / "offset.0"), 2, "not the offset of a sep"),
    (lambda d: np.array([4, 8], "<u8").tofile(d / "offset.0"), 2, "does not start at byte 0"),
    (lambda d: np.array([0, 8, 14, 99], "<u8").tofile(d / "offset.0"), 2, "past the end"),
    (lambda d: np.array([0, 8, 14], "<u8").tofile(d / "offset.0"), 2, "holds 4 separators"),
    (lambda d: (d / "offset.0").write_bytes(b"\0" * 9), 2, "not a multiple of 8"),
    (lambda d: None, 1, "holds 8 separators"),
    (lambda d: None, 4, "entry 0 .byte 0. is not the offset of a separator"),
    (lambda d: (d / "tokenized.0").write_bytes((d / "tokenized.0").read_bytes() + b"\1"), 2,
     "not a multiple of 2"),
])
def test_index_refuses_garbage_offsets_and_wrong_widths(tokenized, damage, width, message):
    damage(tokenized)
    with pytest.raises(IndexFormatError, match=message):
        builder.index_tables(tokenized, token_width=width, quiet=True)
    assert "--token-width" in _one_line_error(run("index", tokenized, "--token-width", width))
    assert not (tokenized / "table.0").exists()


def test_index_refuses_a_width_other_than_the_manifest(index):
    with pytest.raises(IndexFormatError, match="token width 4 was given"):
        builder.index_tables(index, token_width=4, quiet=True)


def test_index_refuses_unrecorded_shard_files(index):
    m = fmt.read_manifest(index)
    m.shards[0].files.pop("metaoff.0")
    fmt.write_manifest(index, m)
    with pytest.raises(IndexFormatError, match="metaoff.0 is not recorded"):
        builder.index_tables(index, quiet=True)


def test_index_rewrites_a_manifest_that_lacks_its_checksum(index):
    m = json.loads((index / "manifest.json").read_text())
    m.pop("checksum")
    (index / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    assert not ig.verify(index).ok
    assert builder.index_tables(index, quiet=True) == []
    assert ig.verify(index).ok


FLIPS_PER_KIND = 400


def _flips_refused_by_open(index, path, count, rng) -> int:
    """Flip ``count`` random bytes of ``path`` one at a time (XOR with a
    random non-zero value); each must be reported by verify, and open may
    only refuse it with a one-line IndexFormatError. Returns the refusals."""
    original = path.read_bytes()
    refused = 0
    for at in rng.integers(0, len(original), count):
        data = bytearray(original)
        data[at] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(data))
        assert not ig.verify(index).ok, (path.name, int(at))
        try:
            ig.open(index)
        except IndexFormatError as e:
            assert "\n" not in str(e)
            refused += 1
    path.write_bytes(original)
    return refused


def test_every_flipped_byte_of_every_file_is_reported(built, tmp_path):
    """Property: FLIPS_PER_KIND flips over the files of each kind (a shard
    file kind, manifest.json, tokenizer.model) are all reported by verify."""
    index = tmp_path / "flip"
    shutil.copytree(built, index)
    rng = np.random.default_rng(14)
    kinds = {}
    for path in sorted(index.iterdir()):
        kind = path.name.split(".")[0] if path.name[-1].isdigit() else path.name
        kinds.setdefault(kind, []).append(path)
    assert set(kinds) == {"tokenized", "table", "offset", "metadata", "metaoff",
                          "manifest.json", "tokenizer.model"}
    for kind, paths in sorted(kinds.items()):
        per_file = FLIPS_PER_KIND // len(paths)
        refused = sum(_flips_refused_by_open(index, p, per_file, rng) for p in paths)
        print(f"{kind}: {per_file * len(paths)} flips, all reported by verify, "
              f"{refused} refused by open")  # figures for the record (pytest -s)
    assert ig.verify(index).ok


@pytest.mark.parametrize("damage, entry", [
    (lambda off, n: off.__setitem__(3, off[3] + 1), 3),        # not a token boundary
    (lambda off, n: off.__setitem__(4, 2 * (n + 2)), 4),       # past the end of the tokens
    (lambda off, n: off.__setitem__(6, off[5]), 6),            # repeats an earlier entry
])
def test_verify_names_a_bad_offset_and_a_duplicate_entry(index, damage, entry):
    """A table entry that is no token boundary, points past the tokens or
    repeats an earlier one is named by its index."""
    n = len(np.fromfile(index / "tokenized.0", dtype="<u2"))
    raw = (index / "table.0").read_bytes()
    pointer = len(raw) // n
    offsets = [int.from_bytes(raw[i * pointer:(i + 1) * pointer], "little") for i in range(n)]
    damage(offsets, n)
    (index / "table.0").write_bytes(b"".join(o.to_bytes(pointer, "little") for o in offsets))
    report = ig.verify(index, checksums=False)
    assert not report.ok
    assert any(f"table.0: entry {entry} is out of suffix order or not a valid pointer" in p
               for p in report.problems), report.problems
