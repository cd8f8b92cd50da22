"""Suffix-array kernels (native/sort.py, native/cover.py, native/merge.py,
native/ptrs.py) against the brute-force oracles in naive.py."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infinigram import format as fmt
from infinigram.native import cover as cover_module, doubling
from infinigram.native.cover import PERIOD, compare, cover, rank_sample
from infinigram.native.merge import (PARALLEL_THREADS, PARALLEL_TOKENS, PART_TOKENS, merge_parts,
                                     plan_parts, sort_part, splitters)
from infinigram.native.ptrs import (FIRST_WAVE, pack_in_place, pack_pointers, pointer_at,
                                    unpack_pointers)
from infinigram.native.sort import _ranked_by_sort, alphabet, sort_string, suffix_array
from naive import doubling_suffix_array, naive_suffix_array, with_separators

WIDTHS = (1, 2, 4)


def corpora(width: int) -> dict[str, np.ndarray]:
    """Adversarial and ordinary token arrays of one width (separators included)."""
    rng = np.random.default_rng(width)
    sep = fmt.separator(width)
    dt = fmt.token_dtype(width)
    hi = min(sep, 1000)
    block = [int(v) for v in rng.integers(0, hi, 13)]
    return {
        "random": with_separators([rng.integers(0, hi, rng.integers(0, 60)) for _ in range(30)], width),
        "small_alphabet": with_separators([rng.integers(0, 3, rng.integers(0, 40)) for _ in range(20)], width),
        "one_token_repeated": np.full(700, 5, dt),
        "separators_only": np.full(300, sep, dt),
        "repeated_block": with_separators([block * 25], width),
        "prefix_docs": with_separators([block[:k] for k in range(13, -1, -1)] * 3, width),
        "empty_docs": with_separators([[], [], [1, 2], [], [], [1, 2], []], width),
        "one_token": np.array([3], dt),
        "one_separator": np.array([sep], dt),
        "empty": np.zeros(0, dt),
        "periodic_runs": np.array(([1] * 40 + [2]) * 12 + [1] * 39, dt),
        "fibonacci": _fibonacci(600).astype(dt),
        # short suffixes that are prefixes of longer ones continued by zero tokens
        "zeros_after_prefix": np.array([5] + [0] * 9 + [5, 0, 0, 5, 0, 5, 0, 0, 0, 5], dt),
    }


def _fibonacci(n: int) -> np.ndarray:
    a, b = [0], [0, 1]
    while len(b) < n:
        a, b = b, b + a
    return np.array(b[:n])


CASES = [(w, name) for w in WIDTHS for name in corpora(w)]


@pytest.mark.parametrize("width,name", CASES)
def test_suffix_array_matches_naive(width, name):
    tokens = corpora(width)[name]
    sa = suffix_array(tokens)
    assert sa.dtype == np.int32
    np.testing.assert_array_equal(sa, naive_suffix_array(tokens))


@pytest.mark.parametrize("width", (2, 4))
def test_byte_order_not_numeric_order(width):
    dt = fmt.token_dtype(width)
    tokens = np.array([0x0100, 0x0001, 0x0201, 0x0102, 0x0001, 0x0100, 0x00FF, 0xFF00], dt)
    if width == 4:
        tokens = np.concatenate([tokens, np.array([0x01000000, 0x00000001, 0x00010000], dt)])
    sa = suffix_array(tokens)
    np.testing.assert_array_equal(sa, naive_suffix_array(tokens))
    # 0x0100 (bytes 00 01) sorts before 0x0001 (bytes 01 00)
    rank = np.argsort(sa)
    assert rank[0] < rank[1]


def test_memmap_and_big_endian_input(tmp_path):
    tokens = corpora(2)["random"]
    path = tmp_path / "tokenized.0"
    tokens.tofile(path)
    mapped = np.memmap(path, dtype="<u2", mode="r")
    np.testing.assert_array_equal(suffix_array(mapped), naive_suffix_array(tokens))
    np.testing.assert_array_equal(suffix_array(tokens.astype(">u2")), naive_suffix_array(tokens))


@pytest.mark.parametrize("width", WIDTHS)
def test_larger_repetitive_inputs(width):
    """Several SA-IS levels: long repeats and a big-alphabet Zipfian corpus."""
    rng = np.random.default_rng(7)
    dt = fmt.token_dtype(width)
    block = rng.integers(0, min(fmt.separator(width), 5000), 997).astype(dt)
    zipf = np.minimum(rng.zipf(1.3, 30000), fmt.separator(width) - 1).astype(dt)
    zipf[::500] = fmt.separator(width)
    for tokens in (np.tile(block, 30), np.full(20000, 9, dt), zipf,
                   np.concatenate([np.full(5000, 2, dt), block, np.full(5000, 2, dt)])):
        np.testing.assert_array_equal(suffix_array(tokens), doubling_suffix_array(tokens))


@pytest.mark.parametrize("dtype", ["int16", "float32", "uint64"])
def test_rejects_bad_dtype(dtype):
    with pytest.raises(ValueError, match="uint8, uint16 or uint32"):
        suffix_array(np.zeros(4, dtype))


def test_rejects_2d():
    with pytest.raises(ValueError, match="1-D"):
        suffix_array(np.zeros((2, 2), np.uint16))


@settings(max_examples=150, deadline=None)
@given(width=st.sampled_from(WIDTHS), data=st.data())
def test_property_matches_naive(width, data):
    sep = fmt.separator(width)
    alphabet = data.draw(st.lists(st.integers(0, sep), min_size=1, max_size=5, unique=True))
    seq = data.draw(st.lists(st.sampled_from(alphabet), max_size=120))
    tokens = np.array(seq, fmt.token_dtype(width))
    np.testing.assert_array_equal(suffix_array(tokens), naive_suffix_array(tokens))


def merged_table(tokens, part, D, pointer):
    """The packed table built through sort_part + merge_parts, parts of ``part``
    tokens, comparisons through a sample of period D."""
    n = len(tokens)
    sample = rank_sample(tokens, D)
    parts = [sort_part(tokens, lo, min(lo + part, n), sample) for lo in range(0, n, part)]
    for (lo, p) in zip(range(0, n, part), parts):
        assert sorted(p.tolist()) == list(range(lo, min(lo + part, n)))
    out = np.empty(n * pointer, np.uint8)
    flat = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    done = []
    merge_parts(tokens, flat, [*range(0, n, part), n], sample, pointer, out, done.append)
    assert done == ([n] if n else [])  # one report per CHUNK entries and one at the end
    return out


def packed(sa, width, pointer):
    out = np.empty(len(sa) * pointer, np.uint8)
    pack_pointers(sa, width, pointer, out)
    return out


@pytest.mark.parametrize("width,name", CASES)
@pytest.mark.parametrize("part,D", [(7, 1), (7, 2), (1, 4), (50, 8), (64, PERIOD)])
def test_parts_merge_equal_suffix_array(width, name, part, D):
    tokens = corpora(width)[name]
    pointer = fmt.pointer_width(tokens.nbytes)
    expected = packed(naive_suffix_array(tokens), width, pointer)
    np.testing.assert_array_equal(merged_table(tokens, part, D, pointer), expected)


@settings(max_examples=80, deadline=None)
@given(width=st.sampled_from(WIDTHS), part=st.integers(1, 20), D=st.sampled_from([1, 2, 4, 8]),
       data=st.data())
def test_property_parts_merge(width, part, D, data):
    seq = data.draw(st.lists(st.sampled_from([0, 1, fmt.separator(width)]), max_size=80))
    tokens = np.array(seq, fmt.token_dtype(width))
    expected = packed(naive_suffix_array(tokens), width, 4)
    np.testing.assert_array_equal(merged_table(tokens, part, D, 4), expected)


@pytest.mark.parametrize("D", [1, 2, 3, 7, 16, 64, PERIOD])
def test_cover_holds_every_difference(D):
    res = cover(D)
    assert res[0] == 0 and (np.diff(res) > 0).all() and res[-1] < D
    assert {(int(a) - int(b)) % D for a in res for b in res} == set(range(D))


@pytest.mark.parametrize("width,name", CASES)
@pytest.mark.parametrize("D", [1, 4, 16])
def test_sample_ranks_and_compare_follow_suffix_order(width, name, D):
    tokens = corpora(width)[name]
    n = len(tokens)
    sample = rank_sample(tokens, D)
    rank = np.empty(n + 1, np.int64)
    rank[naive_suffix_array(tokens)] = np.arange(n)
    rank[n] = -1  # the empty suffix
    res = cover(D)
    sampled = [(k // len(res)) * D + int(res[k % len(res)]) for k in range(len(sample[0]))]
    kept = [k for k, x in enumerate(sampled) if x < n]
    assert np.array_equal(np.argsort(sample[0][kept]), np.argsort(rank[[sampled[k] for k in kept]]))
    rng = np.random.default_rng(D)
    for _ in range(200 if n > 1 else 0):
        a, b = (int(v) for v in rng.choice(n, 2, replace=False))
        assert compare(tokens, sample, a, b, 0) == (-1 if rank[a] < rank[b] else 1)


def test_sample_period_must_be_a_power_of_2():
    with pytest.raises(ValueError, match="power of 2"):
        rank_sample(np.zeros(10, np.uint16), 12)


def test_sort_part_orders_a_run_by_length_and_checks_range():
    tokens = corpora(2)["one_token_repeated"]
    sample = rank_sample(tokens)
    p = sort_part(tokens, 690, 700, sample)
    np.testing.assert_array_equal(p, np.arange(699, 689, -1))
    with pytest.raises(ValueError, match="outside"):
        sort_part(tokens, 5, 800, sample)


def test_merge_parts_rejects_missing_parts():
    tokens = corpora(2)["random"]
    with pytest.raises(ValueError, match="pass every part"):
        sample = rank_sample(tokens)
        merge_parts(tokens, sort_part(tokens, 0, 10, sample), [0, 10], sample, 4,
                    np.empty(len(tokens) * 4, np.uint8))


@pytest.mark.parametrize("width", WIDTHS)
def test_plan_parts_cover_and_fit(width):
    n = 10_000_000
    assert plan_parts(n, width, 1 << 40) == [(0, n)]
    assert plan_parts(0, width, 1 << 20) == []
    parts = plan_parts(n, width, n * width + (32 << 20))  # the token file, and 32 MiB
    assert len(parts) > 1
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert all(hi - lo <= parts[0][1] for lo, hi in parts)
    with pytest.raises(ValueError, match="too small"):
        plan_parts(n, width, 1000)


@pytest.mark.parametrize("pointer", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("width", WIDTHS)
def test_pack_unpack_round_trip(pointer, width):
    rng = np.random.default_rng(pointer)
    limit = (1 << (8 * pointer)) // width
    sa = rng.permutation(min(limit, 3000)).astype(np.int64)
    if pointer >= 4:
        sa[:3] = [limit - 1, limit - 2, 2**31 // width]
    out = packed(sa, width, pointer)
    np.testing.assert_array_equal(unpack_pointers(out, pointer, 0, len(sa)), sa * width)
    np.testing.assert_array_equal(unpack_pointers(out, pointer, 5, 9), sa[5:9] * width)
    assert pointer_at(out, 7, pointer) == sa[7] * width
    raw = out.reshape(-1, pointer)
    assert int.from_bytes(raw[1].tobytes(), "little") == sa[1] * width


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("width", WIDTHS)
def test_pack_in_place_equals_pack_pointers(dtype, width):
    rng = np.random.default_rng(width)
    for pointer in range(1, np.dtype(dtype).itemsize + 1):
        limit = min((1 << (8 * pointer)) // width, np.iinfo(dtype).max)
        sa = rng.integers(0, limit, 2000).astype(dtype)
        expected = packed(sa, width, pointer)
        got = pack_in_place(sa.copy(), width, pointer)
        assert got.dtype == np.uint8 and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="pointer"):
        pack_in_place(np.arange(10, dtype=dtype), width, np.dtype(dtype).itemsize + 1)


def test_pack_rejects_bad_arguments():
    sa = np.arange(300)
    with pytest.raises(ValueError, match="does not fit in 1 bytes"):
        pack_pointers(sa, 1, 1, np.empty(300, np.uint8))
    with pytest.raises(ValueError, match="600 bytes"):
        pack_pointers(sa, 1, 2, np.empty(300, np.uint8))
    with pytest.raises(ValueError, match="out of range"):
        pack_pointers(sa, 1, 9, np.empty(2700, np.uint8))
    with pytest.raises(ValueError, match="outside the table"):
        unpack_pointers(np.empty(600, np.uint8), 2, 10, 301)


def test_reduced_alphabet_beyond_u16():
    """A reduced string with more than 2**16 names (wider than any token alphabet),
    and runs of equal LMS substrings across the parallel naming slices."""
    rng = np.random.default_rng(11)
    tokens = rng.integers(0, 60000, 220_000).astype("<u2")
    tokens[100_000:102_000] = np.tile(tokens[:20], 100)
    np.testing.assert_array_equal(suffix_array(tokens), doubling_suffix_array(tokens))


THREADS = (1, 2, 3, 7)


@pytest.mark.parametrize("width,name", CASES)
def test_sample_ranks_equal_for_every_thread_count(width, name):
    tokens = corpora(width)[name]
    for D in (4, PERIOD):
        ranks = rank_sample(tokens, D)[0]
        for t in THREADS[1:]:
            np.testing.assert_array_equal(rank_sample(tokens, D, threads=t)[0], ranks)


@pytest.mark.parametrize("width,name", CASES)
def test_sample_ranks_equal_by_doubling_and_by_sa_is(monkeypatch, width, name):
    """The sample's names ranked by prefix doubling (allowed whatever the
    ties) and by SA-IS (always): the same ranks, on every corpus."""
    tokens = corpora(width)[name]
    for D in (4, PERIOD):
        monkeypatch.setattr(cover_module, "DOUBLING_MAX_TIED", 1.0)
        by_doubling = rank_sample(tokens, D, threads=2)[0]
        monkeypatch.setattr(cover_module, "DOUBLING_MAX_TIED", -1.0)
        np.testing.assert_array_equal(rank_sample(tokens, D, threads=2)[0], by_doubling)


def _terminated(parts: list) -> np.ndarray:
    """Each part of characters >= len(parts) followed by its own index: a
    string whose suffixes all differ, as the sample's names string is."""
    k = len(parts)
    return np.concatenate([np.append(np.asarray(p, np.int64) + k, j)
                           for j, p in enumerate(parts)]).astype(np.int32)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.lists(st.integers(0, 5), max_size=60), min_size=1, max_size=4),
       repeat=st.integers(1, 20))
def test_doubling_equals_sa_is(parts, repeat):
    s = _terminated([p * repeat for p in parts])
    K = int(s.max()) + 1
    want = np.empty(len(s), np.int32)
    sort_string(s, K, want)
    np.testing.assert_array_equal(doubling.suffix_array(s, K, 1.0), want)
    tied = len(s) - len(np.unique(s)) > 0
    assert doubling.suffix_array(s, K, 0.0) is None if tied else \
        (doubling.suffix_array(s, K, 0.0) == want).all()


def test_doubling_on_mostly_distinct_names():
    """The case it is chosen for: most characters distinct, a few long runs."""
    rng = np.random.default_rng(3)
    body = rng.permutation(20_000)
    body[5_000:9_000] = np.tile(body[:40], 100)  # a repeat 100 names long
    s = _terminated([body[:12_000], body[12_000:]])
    K = int(s.max()) + 1
    want = np.empty(len(s), np.int32)
    sort_string(s, K, want)
    np.testing.assert_array_equal(doubling.suffix_array(s, K, 0.25), want)


@pytest.mark.parametrize("width,name", CASES)
def test_ranged_merge_equals_suffix_array_for_every_thread_count(width, name):
    """Parts sorted on worker-thread kernels, merged in output ranges cut at
    splitters on 2, 3 and 7 threads: the same bytes as the naive order."""
    tokens = corpora(width)[name]
    n = len(tokens)
    pointer = fmt.pointer_width(tokens.nbytes)
    expected = packed(naive_suffix_array(tokens), width, pointer)
    for D, part in ((4, 9), (PERIOD, 100)):
        sample = rank_sample(tokens, D, threads=2)
        flat = np.concatenate([sort_part(tokens, lo, min(lo + part, n), sample, parallel=False)
                               for lo in range(0, n, part)] or [np.zeros(0, np.int32)])
        for t in THREADS:
            out = np.zeros(n * pointer, np.uint8)
            done = []
            merge_parts(tokens, flat, [*range(0, n, part), n], sample, pointer, out,
                        done.append, threads=t)
            np.testing.assert_array_equal(out, expected)
            assert done[-1:] == ([n] if n else [])


@pytest.mark.parametrize("ranges", [2, 5, 40])
def test_splitters_ascend_in_suffix_order(ranges):
    tokens = corpora(2)["random"]
    sample = rank_sample(tokens, 4)
    cut = splitters(sample, ranges)
    assert 1 <= len(cut) <= ranges - 1
    rank = np.empty(len(tokens), np.int64)
    rank[naive_suffix_array(tokens)] = np.arange(len(tokens))
    assert (np.diff(rank[cut]) > 0).all()
    assert len(splitters(sample, 1)) == 0


def test_plan_parts_count_every_part_in_flight():
    n, budget = 2_000_000, 12 << 20  # the whole shard needs ~16 MB
    one, four = plan_parts(n, 2, budget), plan_parts(n, 2, budget, threads=4)
    assert len(four) > len(one) > 1
    # four parts in flight take about what one part takes alone
    assert 3 * (four[0][1] - four[0][0]) <= one[0][1] - one[0][0]
    with pytest.raises(ValueError, match="on 64 thread"):
        plan_parts(n, 2, budget, threads=64)


def test_plan_parts_split_for_threads_only_from_the_parallel_sizes():
    assert plan_parts(PARALLEL_TOKENS - 1, 2, None, threads=8) == [(0, PARALLEL_TOKENS - 1)]
    for threads in (1, PARALLEL_THREADS - 1):
        assert plan_parts(PARALLEL_TOKENS, 2, None, threads) == [(0, PARALLEL_TOKENS)]
    n = 5 * PART_TOKENS + 3
    for threads in (PARALLEL_THREADS, 8):
        parts = plan_parts(max(n, PARALLEL_TOKENS), 2, None, threads=threads)
        assert len(parts) >= threads
        assert all(hi - lo <= PART_TOKENS for lo, hi in parts)


@pytest.mark.parametrize("dtype,pointer", [(np.int32, 3), (np.int64, 5), (np.int64, 8),
                                           (np.int32, 4)])
def test_pack_in_place_in_parallel_waves(dtype, pointer):
    """Past the first wave the in-place packing runs in parallel waves; a
    wave that wrote over entries not yet read would show here."""
    rng = np.random.default_rng(pointer)
    sa = rng.integers(0, 1 << 23, 5 * FIRST_WAVE + 7).astype(dtype)
    np.testing.assert_array_equal(pack_in_place(sa.copy(), 2, pointer), packed(sa, 2, pointer))


@pytest.mark.parametrize("top", [70_000, (1 << 22) - 1, 1 << 22, 2**32 - 2])
def test_u32_ranks_by_table_equal_ranks_by_sort(top):
    """Ids below 2**22 are ranked through a table, others by sorting: both
    give the same alphabet, and the suffix array is the byte order's."""
    rng = np.random.default_rng(top % 97)
    ids = [0, 1, 255, 256, 65535, 65536, 65537, top] + [int(v) for v in rng.integers(0, top, 20)]
    tokens = with_separators([rng.choice(ids, rng.integers(0, 40)) for _ in range(40)], 4)
    for t in (tokens, tokens[tokens != fmt.separator(4)], tokens[1:2]):
        for parallel in (False, True):
            s, k = alphabet(t, parallel)
            s2, k2 = _ranked_by_sort(t, parallel)
            assert k == k2 and np.array_equal(s, s2), top
    np.testing.assert_array_equal(suffix_array(tokens), naive_suffix_array(tokens))
