"""The shard sort by output ranges (native/ranges.py): the same table as the
oracle on every adversarial corpus, width and thread count, whether it
resolves long repeats itself or gives up on them; builds fall back to
another sort when it gives up."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import infinigram as ig
from infinigram import format as fmt
from infinigram.native import cover, keys, merge, ranges
from naive import naive_suffix_array
from test_native_sort import THREADS, WIDTHS, corpora, packed


def _sorted(tokens, threads, emitted=None, align=1):
    """sort_ranges' table (emitted slices put in place), whether it was
    trusted, and the oracle's; ``emitted`` collects (first entry, bytes, address)."""
    pointer = fmt.pointer_width(tokens.nbytes)
    out = np.zeros(len(tokens) * pointer, np.uint8)

    def emit(i, data):
        out[i * pointer:i * pointer + len(data)] = data
        if emitted is not None:
            emitted.append((i, len(data), data.ctypes.data))
    sample = cover.rank_sample(tokens)
    which = ranges.classify_all(tokens, sample, threads)
    ok = ranges.sort_ranges(tokens, sample, which, pointer, emit, threads, align=align)
    return ok, out.tobytes(), packed(naive_suffix_array(tokens), tokens.itemsize,
                                     pointer).tobytes()


@pytest.mark.parametrize("width", WIDTHS)
def test_every_oracle_corpus_and_thread_count(monkeypatch, width):
    for name, tokens in corpora(width).items():
        for threads in THREADS:
            monkeypatch.setattr(ranges, "MAX_DEEP", 2.0)  # never gives up: repeats compared
            ok, got, expected = _sorted(tokens, threads)
            assert ok and got == expected, (name, threads)
            monkeypatch.setattr(ranges, "MAX_DEEP", 0.1)  # gives up, or is right
            ok, got, expected = _sorted(tokens, threads)
            assert not ok or got == expected, (name, threads)


@settings(max_examples=60, deadline=None)
@given(width=st.sampled_from(WIDTHS), threads=st.sampled_from([1, 2]),
       alphabet=st.integers(1, 4), data=st.data())
def test_random_token_arrays(width, threads, alphabet, data):
    sep = fmt.separator(width)
    high = data.draw(st.lists(st.sampled_from([0xFFFE, 0xFFFF, 0x10000, 0x10001, 0x20001]),
                              max_size=3)) if width == 4 else []  # past 2 bytes, or not
    ids = data.draw(st.lists(st.sampled_from([*range(alphabet), sep, *high]), max_size=600))
    runs = data.draw(st.lists(st.tuples(st.integers(0, len(ids)), st.integers(1, 120)),
                              max_size=3))
    for at, length in runs:  # long runs of one token: ties past every round of keys
        ids[at:at] = [ids[at - 1] if 0 < at <= len(ids) else 0] * length
    tokens = np.array(ids, dtype=fmt.token_dtype(width))
    ranges.MAX_DEEP, before = 2.0, ranges.MAX_DEEP
    try:
        ok, got, expected = _sorted(tokens, threads)
    finally:
        ranges.MAX_DEEP = before
    assert ok and got == expected


def test_narrow_ids_only_where_two_bytes_order_every_id():
    sep = fmt.separator(4)
    for ids, narrow in (([0, 5, sep], True), ([0xFFFE, sep], True), ([0xFFFF], False),
                        ([1, 0x10001], False), ([0x20000], False)):
        assert keys.narrow_ids(np.array(ids, np.uint32)) == narrow, ids
    assert not keys.narrow_ids(np.array([1, 2], np.uint16))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([0, 1, 2, 0x00FF, 0x0100, 0xFFFE, 0xFFFFFFFF]), max_size=300))
def test_narrowed_tokens_keep_the_suffix_order(ids):
    tokens = np.array(ids, np.uint32)
    assert list(naive_suffix_array(keys.narrowed(tokens))) == list(naive_suffix_array(tokens))


@pytest.mark.parametrize("high", [0xFFFE, 0x1FFFF], ids=["narrow", "wide"])
def test_u32_builds_on_one_and_two_threads(tmp_path, monkeypatch, high):
    monkeypatch.setattr(merge, "PARALLEL_TOKENS", 1000)
    rng = np.random.default_rng(1)
    ids = rng.choice([0, 1, 2, 0x100, 0x101, high], size=20000).astype(np.uint32)
    np.save(tmp_path / "ids.npy", ids)
    for threads in (1, 2):
        out = ig.build([tmp_path / "ids.npy"], tmp_path / f"t{threads}", token_width=4,
                       threads=threads, quiet=True)
        tokens = np.fromfile(out / "tokenized.0", np.uint32)
        pointer = fmt.pointer_width(tokens.nbytes)
        assert (out / "table.0").read_bytes() == \
            packed(naive_suffix_array(tokens), 4, pointer).tobytes(), threads


@pytest.mark.parametrize("align", [1, 8, 4096])
def test_each_entry_is_emitted_once_at_its_alignment(monkeypatch, align):
    monkeypatch.setattr(ranges, "MAX_DEEP", 2.0)
    tokens = np.tile(corpora(2)["random"], 20)
    pointer = fmt.pointer_width(tokens.nbytes)
    emitted = []
    ok, got, expected = _sorted(tokens, 3, emitted, align)
    entries = np.zeros(len(tokens), np.int64)
    for i, size, address in emitted:
        assert size % pointer == 0 and (address - i * pointer) % align == 0
        entries[i:i + size // pointer] += 1
    assert ok and got == expected and (entries == 1).all() and len(emitted) > 1


def _corpus(tmp_path, repetitive):
    rng = np.random.default_rng(0)
    docs = [" ".join(f"w{k}" for k in rng.integers(0, 97, size=150)) for _ in range(40)]
    if repetitive:
        docs += ["ab" * 4000, "a" * 6000]
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    return src


@pytest.mark.parametrize("repetitive", [False, True])
def test_builds_by_ranges_or_fall_back(tmp_path, monkeypatch, capsys, repetitive):
    """From 2 threads a large shard is sorted by ranges; where they give up
    (long repeats), by one SA-IS run or in parts: the same table either way."""
    src = _corpus(tmp_path, repetitive)
    one = ig.build([src], tmp_path / "one", tokenizer="bytes", threads=1, quiet=True)
    monkeypatch.setattr(merge, "PARALLEL_TOKENS", 1000)
    for threads in (2, 3):
        capsys.readouterr()
        out = ig.build([src], tmp_path / f"t{threads}", tokenizer="bytes", threads=threads)
        err = capsys.readouterr().err
        assert "classify] started" in err and "sort ranges] started" in err
        assert ("long repeats: sorting another way" in err) == repetitive
        assert (out / "table.0").read_bytes() == (one / "table.0").read_bytes()
