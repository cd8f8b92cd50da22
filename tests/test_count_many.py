"""count_many's input forms give the brute-force oracle's counts, and bad
offsets give one clear error each."""
import numpy as np
import pyarrow as pa
import pytest

import infinigram.engine as engine
from infinigram import format as fmt
from infinigram.errors import QueryError
from conftest import make_index
from naive import naive_count

DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
IDS = [0, 1, 2, 3, 100, 127, 255, 256, 513, 40000, 65534]  # fit int8 up to 127, uint8 up to 255


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    rng = np.random.default_rng(7)
    docs = [list(rng.choice(IDS[:6] if k % 2 else IDS, size=rng.integers(1, 30)))
            for k in range(40)]
    eng = engine.open(make_index(tmp_path_factory.mktemp("cm"), docs, width=2, shards=2,
                                 vocab_size=fmt.separator(2)))
    flat = [t for d in docs for t in d]
    queries = []
    for _ in range(120):
        n = int(rng.integers(1, 7))
        p = int(rng.integers(0, len(flat) - n))
        queries.append([int(t) for t in flat[p:p + n]])
    queries += [[65534, 65534, 65534], [3, 40000, 3], [127]]  # absent ones
    shards = [np.asarray(s.tokens) for s in eng.shards]
    return eng, queries, [naive_count(shards, q) for q in queries]


def fits(q, dtype) -> bool:
    return max(q) <= np.iinfo(dtype).max


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_2d_array_of_every_integer_dtype(setup, dtype):
    eng, queries, want = setup
    rows = [(q, w) for q, w in zip(queries, want) if len(q) == 3 and fits(q, dtype)]
    assert len(rows) >= 5
    arr = np.array([q for q, _ in rows], dtype=dtype)
    assert eng.count_many(arr).tolist() == [w for _, w in rows]
    assert eng.count_many(np.asfortranarray(arr)).tolist() == [w for _, w in rows]


def test_list_forms(setup):
    eng, queries, want = setup
    assert eng.count_many(queries).tolist() == want
    mixed = []
    for i, q in enumerate(queries):  # each query in the next dtype from i that holds it
        dtype = next(d for d in DTYPES[i % 8:] + DTYPES if fits(q, d))
        mixed.append(np.array(q, dtype=dtype))
    assert len({a.dtype for a in mixed}) == 8
    assert eng.count_many(mixed).tolist() == want
    assert eng.count_many(mixed[:5] + queries[5:10]).tolist() == want[:10]  # arrays and lists


@pytest.mark.parametrize("flat_dtype,offsets_dtype", [(np.int64, np.int64), (np.uint16, np.int32),
                                                      (np.int32, np.uint64)])
def test_flat_and_offsets(setup, flat_dtype, offsets_dtype):
    eng, queries, want = setup
    flat = np.array([t for q in queries for t in q], dtype=flat_dtype)
    offsets = np.cumsum([0] + [len(q) for q in queries]).astype(offsets_dtype)
    assert eng.count_many(flat, offsets=offsets).tolist() == want


@pytest.mark.parametrize("value_type", [pa.uint16(), pa.int64()])
def test_pyarrow_list_column(setup, value_type):
    eng, queries, want = setup
    column = pa.array(queries, type=pa.list_(value_type))
    got = eng.count_many(column.values.to_numpy(), offsets=column.offsets.to_numpy())
    assert got.tolist() == want
    assert eng.count_many(column).tolist() == want
    assert eng.count_many(column.slice(7, 20)).tolist() == want[7:27]
    large = pa.array(queries, type=pa.large_list(value_type))
    chunked = pa.chunked_array([large.slice(0, 50), large.slice(50)])
    assert eng.count_many(chunked).tolist() == want


@pytest.mark.parametrize("flat,offsets,message", [
    ([1, 2, 3, 4], [0, 2, 2, 4], r"offsets\[2\]=2 is not above offsets\[1\]=2.*strictly ascending"),
    ([1, 2, 3, 4], [0, 3, 1, 4], r"offsets\[2\]=1 is not above offsets\[1\]=3"),
    ([1, 2, 3, 4], [0, -1, 4], r"offsets\[1\]=-1 is outside \[0, 4\]"),
    ([1, 2, 3, 4], [0, 2, 5], r"offsets\[2\]=5 is outside \[0, 4\]"),
    ([1, 2, 3, 4], [1, 2, 4], r"offsets\[0\]=1; the first offset must be 0"),
    ([1, 2, 3, 4], [0, 1, 3], r"offsets end at 3 but the flat array has 4 ids"),
    ([1, 2, 3, 4], np.array([0.0, 4.0]), r"offsets is an array of shape \(2,\) and dtype float64"),
    ([1, 2, 3, 4], [[0, 4]], r"offsets is an array of shape \(1, 2\)"),
    ([1, 2, 3, 4], [], r"offsets is an array of shape \(0,\)"),
    ([1.0, 2.0], [0, 2], r"with offsets takes a flat 1-D integer array of token ids, not an "
                         r"array of shape \(2,\) and dtype float64"),
])
def test_bad_offsets(setup, flat, offsets, message):
    eng = setup[0]
    with pytest.raises(QueryError, match="count_many " + message):
        eng.count_many(np.array(flat), offsets=offsets)


@pytest.mark.parametrize("queries,what", [([[1, 2], [3]], "a list"),
                                          (np.array([[1, 2], [3, 4]]), "a 2-D array")])
def test_offsets_with_a_list_or_2d_array(setup, queries, what):
    with pytest.raises(QueryError, match=f"count_many got offsets with {what}.*drop offsets="):
        setup[0].count_many(queries, offsets=np.array([0, 2, 4]))


def test_bad_ids_name_query_and_position(setup):
    eng = setup[0]
    with pytest.raises(QueryError, match=r"id 65535 at position 1 of query 1 .*separator"):
        eng.count_many(np.array([1, 2, 1, 65535], np.uint16), offsets=np.array([0, 2, 4]))
    with pytest.raises(QueryError, match=r"id 9223372036854775808 at position 1 of query 1 "):
        eng.count_many([np.array([1], np.uint8), np.array([1, 2**63], np.uint64)])
    with pytest.raises(QueryError, match=r"id -1 at position 0 of query 2 "):
        eng.count_many(pa.array([[1], [2], [-1]]))
    with pytest.raises(QueryError, match=r"True at position 0 is not an integer"):
        eng.count_many([[2, 3], [True, 2]])
    with pytest.raises(QueryError, match=r"query 1 of count_many is empty"):
        eng.count_many(pa.array([[1], []]))
    with pytest.raises(QueryError, match=r"1 null queries"):
        eng.count_many(pa.array([[1], None]))
