"""Engine queries against the brute-force oracles of tests/naive.py."""
import concurrent.futures
import dataclasses
import math
import os
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

import infinigram.engine as engine
from infinigram.native import batch, ptrs, tally
from infinigram import format as fmt, results
from infinigram.errors import IndexFormatError, QueryError
from conftest import make_index
from naive import (naive_count, naive_count_cnf, naive_doc_hits, naive_infgram,
                   naive_next_counts)

# ids whose byte order differs from their numeric order at each width
ALPHABET = {1: [0, 1, 2, 7, 128, 254], 2: [0, 1, 2, 255, 256, 257, 513, 65534],
            4: [0, 1, 256, 65536, 16777216, 16777217, 4294967294]}


def shard_arrays(eng):
    return [np.asarray(s.tokens) for s in eng.shards]


def random_docs(rng, width, n_docs, max_len, k=None):
    alpha = ALPHABET[width][:k] if k else ALPHABET[width]
    return [list(rng.choice(alpha, size=rng.integers(0, max_len + 1))) for _ in range(n_docs)]


def queries_for(docs, rng, n=40):
    """n-grams of the corpus, n-grams crossing document boundaries, ends of
    documents, absent ones."""
    out = []
    flat = [t for d in docs for t in d]
    for _ in range(n):
        d = docs[rng.integers(len(docs))]
        if d:
            i = rng.integers(len(d))
            out.append(d[i:i + rng.integers(1, 5)])
    for a, b in zip(docs, docs[1:]):
        if a and b:
            out.append(a[-2:] + b[:2])   # would cross a document boundary
            out.append(a[-1:])
    if docs and docs[-1]:
        out.append(docs[-1][-3:])        # the very end of the last shard
    if flat:
        out.append([flat[0]] * 7)
        out.append(list(rng.choice(flat, size=6)))
    return [q for q in out if q]


def suffix_starts(shard):
    """Token index of each suffix-array entry of ``shard``, in table order."""
    return ptrs.unpack_pointers(np.asarray(shard.table), shard.pointer, 0,
                                shard.n_tokens) // shard.width


def check_ranges(eng, q, f, starts):
    """Every suffix in each of ``f.ranges`` starts with ``q``, and each range
    holds every occurrence in its shard (the oracle's count)."""
    q = np.asarray(q, dtype=np.int64)
    assert [k for k, _, _ in f.ranges] == list(range(len(eng.shards)))
    for (k, b, e), tokens, pos in zip(f.ranges, shard_arrays(eng), starts):
        assert 0 <= b <= e <= len(tokens) and e - b == naive_count([tokens], q), (q, k)
        inside = pos[b:e]
        assert (inside + len(q) <= len(tokens)).all(), (q, k)
        if len(inside):
            win = np.lib.stride_tricks.sliding_window_view(tokens, len(q))
            assert (win[inside] == q).all(), (q, k)


def check_queries(eng, docs, queries):
    shards = shard_arrays(eng)
    starts = [suffix_starts(s) for s in eng.shards]
    counts = eng.count_many(queries)
    for q, c in zip(queries, counts):
        expected = naive_count(shards, q)
        assert eng.count(q) == expected == c, q
        f = eng.find(q)
        assert f.count == expected
        check_ranges(eng, q, f, starts)
        nxt = naive_next_counts(shards, q)
        d = eng.ntd(q)
        assert dict(zip(d.ids.tolist(), d.counts.tolist())) == nxt, q
        assert d.prompt_count == sum(nxt.values()) and d.effective_n == len(q) + 1
        if d.prompt_count:
            assert math.isclose(d.probs.sum(), 1.0)
        for nid in list(nxt)[:3] + [0]:
            p = eng.prob(q, nid)
            assert p.prompt_count == sum(nxt.values()) and p.cont_count == nxt.get(nid, 0)
            assert (math.isnan(p.prob) and p.prompt_count == 0) or p.prob == p.cont_count / p.prompt_count
        L, inf = naive_infgram(shards, q)
        g = eng.infgram_ntd(q)
        assert g.effective_n == L + 1 and dict(zip(g.ids.tolist(), g.counts.tolist())) == inf, q
        nid = next(iter(inf), 0)
        ip = eng.infgram_prob(q, nid)
        assert (ip.effective_n, ip.prompt_count, ip.cont_count) == (L + 1, sum(inf.values()), inf.get(nid, 0))
        hits = eng.search_docs(q, limit=3)
        want = naive_doc_hits(docs, q)
        assert hits.count == expected and hits.n_docs == len(want)
        assert [(h.doc_ix, h.position) for h in hits.docs] == want[:3]


def check_score(eng, seq, max_context=None, positions=None, reach=None):
    """``score`` against the brute-force ∞-gram at every position (or at
    ``positions``); ``reach``, when given, bounds the longest suffix that can
    match, so the oracle reads only that much context."""
    r = eng.score(seq, max_context=max_context)
    shards = shard_arrays(eng)
    ctx_len = min(x for x in (max_context, reach, len(seq)) if x is not None)
    for t in range(len(seq)) if positions is None else positions:
        L, nxt = naive_infgram(shards, seq[max(0, t - ctx_len):t])
        total, cont = sum(nxt.values()), nxt.get(int(seq[t]), 0)
        assert (r.effective_n[t], r.prompt_counts[t], r.cont_counts[t]) == \
            (L + 1, total, cont), (seq, t)
        assert r.probs[t] == cont / total if total else math.isnan(r.probs[t])
        assert r.sparse[t] == (len(nxt) == 1)


@pytest.mark.parametrize("width", [1, 2, 4])
@pytest.mark.parametrize("shards", [1, 3])
def test_random_corpora(tmp_path, width, shards):
    rng = np.random.default_rng(width * 10 + shards)
    for k in (2, None):
        docs = random_docs(rng, width, 12, 30, k)
        eng = engine.open(make_index(tmp_path, docs, width=width, shards=shards,
                                     vocab_size=fmt.separator(width)))
        check_queries(eng, docs, queries_for(docs, rng))
        for d in docs[:4]:
            check_score(eng, d + list(rng.choice(ALPHABET[width], 5)))
        check_score(eng, docs[0] + docs[1], max_context=2)
        assert eng.n_tokens == sum(map(len, docs)) and eng.n_docs == len(docs)


ADVERSARIAL = {
    "one token repeated": [[5] * 100_000],
    "repeated document": [[1, 2, 3, 4, 2, 3]] * 50,
    "prefix documents": [[1, 2, 3, 4, 5][:k] for k in range(6)] + [[1, 2, 3, 4, 5][:k] for k in range(5, 0, -1)],
    "empty documents": [[], [], [3, 3], [], [3], []],
    "one token": [[7]],
    "repeated block": [[1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1], [2, 1, 2]],
}


def test_score_many_and_a_sequence_of_100k_tokens(tmp_path):
    """score_many equals score of each sequence; a 100k-token sequence is
    scored in one pass and matches the brute-force ∞-gram at sampled
    positions (no match is longer than a document, so the oracle needs only
    the last ``reach`` tokens of context)."""
    rng = np.random.default_rng(5)
    docs = random_docs(rng, 2, 40, 60, 3)
    eng = engine.open(make_index(tmp_path, docs, width=2, shards=2, vocab_size=fmt.separator(2)))
    long = rng.choice(ALPHABET[2][:4], size=100_000)
    seqs = [long[:50], [t for d in docs[:2] for t in d], long]
    many = eng.score_many(seqs)
    assert isinstance(many, list) and len(many) == len(seqs)
    for r, s in zip(many, seqs):
        one = eng.score(s)
        for field in ("probs", "effective_n", "prompt_counts", "cont_counts", "sparse"):
            np.testing.assert_array_equal(getattr(r, field), getattr(one, field))
    assert len(many[2].probs) == 100_000
    positions = sorted(set(rng.integers(0, 100_000, 150).tolist()) | {0, 1, 99_999})
    check_score(eng, long, positions=positions, reach=max(map(len, docs)))
    assert eng.score_many([]) == []


@pytest.mark.parametrize("name", list(ADVERSARIAL))
@pytest.mark.parametrize("shards", [1, 2])
def test_adversarial(tmp_path, name, shards):
    docs = ADVERSARIAL[name]
    eng = engine.open(make_index(tmp_path, docs, width=2, shards=shards, vocab_size=10))
    rng = np.random.default_rng(1)
    queries = queries_for(docs, rng, 10) + [[9], [5] * 1000, [1, 2, 1]]
    if name == "one token repeated":
        queries = [[5], [5] * 2, [5] * 99_999, [5] * 100_000, [5] * 100_001, [4, 5], [9]]
        assert eng.count([5] * 3) == 99_998
    check_queries(eng, docs, queries)
    seq = [t for d in docs[:3] for t in d][:60] + [9, 1, 2]
    check_score(eng, seq)
    check_score(eng, seq, max_context=3)


def test_empty_prompt_is_unigram(tmp_path):
    docs = [[1, 2, 2], [], [3, 2]]
    eng = engine.open(make_index(tmp_path, docs, shards=2))
    d = eng.ntd([])
    assert (d.ids.tolist(), d.counts.tolist(), d.prompt_count) == ([1, 2, 3], [1, 3, 1], 5)
    assert eng.prob([], 2) == results.ProbResult(0.6, 5, 3)
    assert eng.infgram_prob([3, 3, 3], 2).effective_n == 2
    assert np.allclose(eng.infgram_ntd_many([[], [3]], dense=True), [[0, .2, .6, .2], [0, 0, 1, 0]])


@pytest.mark.parametrize("width", [1, 2, 4])
@pytest.mark.parametrize("shards", [1, 2])
def test_ntd_with_thousands_of_distinct_next_tokens(tmp_path, width, shards):
    """Thousands of groups through each width's tally (width 1: key order,
    2: a counting pass by the id's high byte, 4: a sort): exact, ids
    ascending, the cache unharmed."""
    rng = np.random.default_rng(width)
    vocab = 250 if width == 1 else 12000
    nxt = rng.integers(2, vocab, 40000)
    nxt[::7] = rng.integers(2, 40, len(nxt[::7]))  # some frequent next tokens
    docs = [[t for x in part for t in (1, int(x))] for part in np.array_split(nxt, 4)]
    eng = engine.open(make_index(tmp_path, docs, width=width, vocab_size=vocab, shards=shards))
    arrays = shard_arrays(eng)
    for prompt in ([1], []):
        d = eng.ntd(prompt)
        assert dict(zip(d.ids.tolist(), d.counts.tolist())) == naive_next_counts(arrays, prompt)
        assert (np.diff(d.ids) > 0).all() and d.prompt_count == d.counts.sum()
    d = eng.ntd([])
    try:
        d.counts[0] = 0
    except ValueError:  # one shard: the cached unigram tally itself, read-only
        assert shards == 1
    assert eng.ntd([]).prompt_count == sum(map(len, docs))


def test_prob_nan_when_prompt_never_continues(tmp_path):
    eng = engine.open(make_index(tmp_path, [[1, 2], [2, 1]], vocab_size=4))
    r = eng.prob([1, 2], 1)   # only at the end of a document
    assert math.isnan(r.prob) and (r.prompt_count, r.cont_count) == (0, 0)
    assert eng.infgram_prob([1, 2], 1) == results.InfGramProb(1.0, 1, 1, 2)


def test_no_real_tokens(tmp_path):
    eng = engine.open(make_index(tmp_path, [[], []], vocab_size=3))
    assert eng.count([1]) == 0 and eng.n_tokens == 0
    assert math.isnan(eng.infgram_prob([1], 1).prob)
    r = eng.score([1, 2])
    assert np.isnan(r.probs).all() and (r.prompt_counts == 0).all() and not r.sparse.any()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(docs=st.lists(st.lists(st.integers(0, 3), max_size=12), min_size=1, max_size=6),
       queries=st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=4), min_size=1, max_size=8),
       width=st.sampled_from([1, 2, 4]), shards=st.integers(1, 3))
def test_count_property(tmp_path, docs, queries, width, shards):
    scale = {1: 1, 2: 257, 4: 16843009}[width]   # every byte of the id differs from 0
    docs = [[t * scale for t in d] for d in docs]
    queries = [[t * scale for t in q] for q in queries]
    eng = engine.open(make_index(tmp_path, docs, width=width, shards=shards,
                                 vocab_size=fmt.separator(width)))
    shards_t = shard_arrays(eng)
    assert [eng.count(q) for q in queries] == [naive_count(shards_t, q) for q in queries]
    assert eng.count_many(queries).tolist() == [naive_count(shards_t, q) for q in queries]
    check_score(eng, queries[0] + [t for d in docs for t in d][:10])


def test_count_many_forms(tmp_path):
    docs = [[1, 2, 3, 1, 2], [2, 3, 3]]
    eng = engine.open(make_index(tmp_path, docs, shards=2))
    arr = np.array([[1, 2], [2, 3], [3, 3], [3, 1]], dtype=np.uint16)
    assert eng.count_many(arr).tolist() == [2, 2, 1, 1]
    assert eng.count_many(list(arr)).tolist() == [2, 2, 1, 1]
    assert eng.count_many([[1], np.array([2, 3]), (3,)]).tolist() == [2, 2, 3]
    assert eng.count_many([]).tolist() == []


@pytest.mark.parametrize("window", [0, 1, 2, 5])
def test_count_cnf(tmp_path, window):
    rng = np.random.default_rng(window)
    docs = [list(rng.integers(0, 4, rng.integers(0, 25))) for _ in range(10)]
    eng = engine.open(make_index(tmp_path, docs, shards=2, vocab_size=4))
    for cnf in ([[[1]]], [[[1, 2]], [[3]]], [[[0], [1]], [[2, 2]], [[3], [0, 1]]], [[[1], [1, 2]]],
                [[[0, 0, 0, 0, 0, 0]], [[1]]]):
        assert eng.count_cnf(cnf, window=window) == naive_count_cnf(docs, cnf, window), cnf


def test_get_doc(tmp_path):
    docs = [[1, 2, 3], [], [4, 5, 6, 7, 8], [9]]
    meta = [{"id": i, "path": "x.jsonl"} for i in range(4)]
    eng = engine.open(make_index(tmp_path, docs, shards=2, metadata=meta))
    for i, d in enumerate(docs):
        g = eng.get_doc(i)
        assert g.doc_ix == i and g.tokens.tolist() == d and g.metadata == meta[i] and g.text is None
    assert eng.get_doc(2, window=1, around=2).tokens.tolist() == [5, 6]
    assert eng.get_doc(2, window=10, around=0).tokens.tolist() == [4, 5, 6, 7, 8]
    assert eng.get_doc(np.int64(3)).tokens.tolist() == [9]
    eng2 = engine.open(make_index(tmp_path, docs))
    assert eng2.get_doc(1).metadata is None
    for bad in (-1, 4, 1.0, "0", True, None):
        with pytest.raises(QueryError):
            eng.get_doc(bad)
    with pytest.raises(QueryError):
        eng.get_doc(0, window=2)
    with pytest.raises(QueryError):
        eng.get_doc(0, window=-1, around=0)


def test_search_docs_limit(tmp_path):
    docs = [[1, 2]] * 7 + [[2, 1, 2]]
    eng = engine.open(make_index(tmp_path, docs, shards=3, vocab_size=5))
    r = eng.search_docs([1, 2], limit=2)
    assert (r.count, r.n_docs, r.docs) == (8, 8, (results.DocHit(0, 0), results.DocHit(1, 0)))
    assert eng.search_docs([2], limit=100).docs[-1] == results.DocHit(7, 0)
    assert eng.search_docs([3], limit=0) == results.SearchResult(0, 0, ())
    with pytest.raises(QueryError):
        eng.search_docs([1], limit=-1)


BAD_QUERIES = ["", b"\xff\xfe", b"abc", "text", [], [[1, 2]], [1.5], [True], [1, "2"], [-1], [10],
               [2**64], [65535], np.array([1.0]), np.array([True]), np.array([[1]]),
               np.array([1], dtype=object), np.array([70000], dtype=np.uint32),
               np.array([-3], dtype=np.int8), np.array([], dtype=np.int64), {1: 2}, None, 3]


@pytest.mark.parametrize("q", BAD_QUERIES, ids=repr)
def test_bad_queries_raise(tmp_path, q):
    eng = engine.open(make_index(tmp_path, [[1, 2, 3]], vocab_size=10))
    calls = [eng.count, eng.find, eng.search_docs, lambda x: eng.count_many([x]),
             lambda x: eng.count_cnf([[x]])]
    if not (isinstance(q, (list, np.ndarray)) and len(q) == 0):
        calls += [eng.ntd, eng.infgram_ntd, eng.score, lambda x: eng.prob(x, 1),
                  lambda x: eng.infgram_prob(x, 1)]
    for call in calls:
        with pytest.raises(QueryError):
            call(q)


def test_bad_query_messages(tmp_path):
    eng = engine.open(make_index(tmp_path, [[1, 2, 3]], vocab_size=10))
    with pytest.raises(QueryError, match=r"query id 65535 at position 1 .*separator"):
        eng.count([1, 65535])
    with pytest.raises(QueryError, match=r"query id 12 at position 0 of query 1 .*\[0, 10\)"):
        eng.count_many(np.array([[1, 2], [12, 1]]))
    with pytest.raises(QueryError, match="no tokenizer"):
        eng.count("hello")
    for bad in (1.0, -1, 10, True):
        with pytest.raises(QueryError, match="next_id"):
            eng.prob([1], bad)
    for bad_args in ((np.zeros((2, 2), float),), (np.zeros((2, 0), int),), ("ab",),
                     ([[1], []],), ([np.array([1]), np.array([], np.int64)],)):
        with pytest.raises(QueryError):
            eng.count_many(*bad_args)
    for cnf in ([], [[]], [1], [[[1]], []]):
        with pytest.raises(QueryError):
            eng.count_cnf(cnf)
    with pytest.raises(QueryError):
        eng.count_cnf([[[1]]], window=-2)
    with pytest.raises(QueryError):
        eng.score([1, 2], max_context=-1)


def test_manifestless_index(tmp_path):
    docs = [[1, 2, 3], [3, 2, 1, 2]]
    path = make_index(tmp_path, docs, shards=2)
    os.remove(path / fmt.MANIFEST)
    with pytest.raises(IndexFormatError, match="token_width"):
        engine.open(path)
    eng = engine.open(path, token_width=2)
    assert eng.manifest is None and eng.tokenizer is None
    assert eng.count([1, 2]) == 2 and eng.vocab_size == 65535 and eng.n_docs == 2
    assert eng.ntd([2]).counts.tolist() == [1, 1]
    with pytest.raises(IndexFormatError):
        engine.open(make_index(tmp_path, docs), token_width=4)


def test_threads_count_in_parallel(tmp_path):
    rng = np.random.default_rng(3)
    docs = [list(rng.integers(0, 50, 2000)) for _ in range(5)]
    eng = engine.open(make_index(tmp_path, docs, shards=2, vocab_size=50))
    queries = [docs[i % 5][i:i + 1 + i % 4] for i in range(400)]
    expected = [eng.count(q) for q in queries]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(eng.count, queries))
        many = list(pool.map(eng.count_many, [queries] * 8))
    assert got == expected and all(m.tolist() == expected for m in many)


def test_threads_ntd_reusing_scratch(tmp_path):
    """Each thread reuses its own scratch for tallies of every size (a wide
    tally, then narrow ones, then wide again): every answer exact."""
    rng = np.random.default_rng(4)
    docs = [[t for x in rng.integers(2, 6000, 3000) for t in (1, int(x))] for _ in range(4)]
    docs += [list(rng.integers(0, 40, 3000))]
    eng = engine.open(make_index(tmp_path, docs, vocab_size=6000))
    arrays = shard_arrays(eng)
    prompts = [[1]] + [[int(t)] for t in docs[4][:30]] + [[1], [int(t) for t in docs[4][:2]], [1]]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(eng.ntd, prompts * 4))
    for p, d in zip(prompts * 4, got):
        assert dict(zip(d.ids.tolist(), d.counts.tolist())) == naive_next_counts(arrays, p)


def test_properties(tmp_path):
    eng = engine.open(make_index(tmp_path, [[1, 2], [3]], width=4, shards=2, vocab_size=100))
    assert (eng.n_tokens, eng.n_docs, eng.vocab_size, eng.token_width, eng.separator) == \
        (3, 2, 100, 4, 2**32 - 1)
    assert len(eng.shards) == 2 and eng.manifest.vocab_size == 100
    with pytest.raises(QueryError):
        eng.decode([1])


def test_count_many_any_visiting_order(tmp_path):
    rng = np.random.default_rng(7)
    docs = [list(rng.integers(0, 3, rng.integers(0, 40))) for _ in range(8)]
    eng = engine.open(make_index(tmp_path, docs, width=2, vocab_size=3))
    queries = [list(rng.integers(0, 3, rng.integers(1, 5))) for _ in range(300)]
    queries += queries[:50] + [q[:1] for q in queries[:20]]   # repeats and prefixes
    flat = np.concatenate([np.array(q, dtype=np.int64) for q in queries])
    bounds = np.concatenate([[0], np.cumsum([len(q) for q in queries])])
    want = [naive_count(shard_arrays(eng), q) for q in queries]
    s = eng.searchers[0]
    hint = batch.visit_order(flat, bounds, 2)
    assert sorted(hint.tolist()) == list(range(len(queries)))
    for order in (hint, hint[::-1].copy(), rng.permutation(len(queries)), np.arange(len(queries))):
        assert s.count_many(flat, bounds, order).tolist() == want


def test_text_queries_bytes_index(tmp_path):
    texts = ["hello world", "", "héllo wörld, hello", "lo"]
    docs = [list(t.encode()) for t in texts]
    path = make_index(tmp_path, docs, width=1, tokenizer="bytes", shards=2)
    for eng in (engine.open(path), engine.open(path, token_width=1, tokenizer="bytes")):
        shards = shard_arrays(eng)
        assert eng.tokenizer is not None and eng.vocab_size == 255
        for q in ("lo", "hello", "ö", "o w", "xyz", "lo\u00e9"):
            assert eng.count(q) == naive_count(shards, list(q.encode())) == eng.count(q.encode())
        assert eng.count_many(["lo", b"he", [104]]).tolist() == [4, 2, 3]
        assert eng.get_doc(2).text == texts[2] and eng.get_doc(1).text == ""
        assert eng.decode(eng.tokenize("wörld")) == "wörld"
        assert eng.ntd("hell").ids.tolist() == [ord("o")]
        with pytest.raises(QueryError, match="UTF-8"):
            eng.count("ö".encode()[:1])
        with pytest.raises(QueryError):
            eng.count("\ud800")
    os.remove(path / fmt.MANIFEST)
    with pytest.raises(QueryError, match="no tokenizer"):
        engine.open(path, token_width=1).count("lo")


def repacked(shard, pointer):
    """``shard``'s table rewritten with ``pointer``-byte entries."""
    offsets = ptrs.unpack_pointers(np.asarray(shard.table), shard.pointer, 0, shard.n_tokens)
    out = np.empty(shard.n_tokens * pointer, np.uint8)
    ptrs.pack_pointers(offsets // shard.width, shard.width, pointer, out)
    return out


@pytest.mark.parametrize("pointer", [4, 5, 8])
def test_wide_table_entries(tmp_path, pointer):
    """Tables of 4-byte entries (token files of 16 MiB to 4 GiB; the kernels
    read them as uint32), 5 and 8 bytes (the byte paths), repacked from a
    small index: every query still matches the oracles."""
    rng = np.random.default_rng(pointer)
    docs = random_docs(rng, 2, 12, 40)
    small = engine.open(make_index(tmp_path, docs, width=2, shards=2, vocab_size=fmt.separator(2)))
    shards = [dataclasses.replace(s, table=repacked(s, pointer), pointer=pointer) for s in small.shards]
    eng = engine.Engine(small.paths, shards, 2, fmt.separator(2), {"kind": "none"}, (None,))
    for s in eng.searchers:
        assert s._table.dtype == (np.uint32 if pointer == 4 else np.uint8)
        s.step, s.bucket_min = 2, 0
        s.prepare()
    check_queries(eng, docs, queries_for(docs, rng, 20))
    check_score(eng, [t for d in docs for t in d][:40])


@pytest.mark.parametrize("width", [1, 2, 4])
@pytest.mark.parametrize("pointer", [None, 5])
def test_ntd_many_next_tokens(tmp_path, width, pointer):
    """A prompt followed by thousands of distinct tokens (width 1: all 255 ids
    below the separator):
    every bisection level has far more open intervals than the prefetch
    distance (``tally.PROBES_AHEAD``), and the tally still matches the oracle."""
    rng = np.random.default_rng(width)
    top = fmt.separator(width)
    follow = rng.integers(0, min(top, 5000), size=(8, 3000)) * (top // min(top, 5000))
    docs = [[t for f in row for t in (5, int(f))] for row in follow]
    eng = engine.open(make_index(tmp_path, docs, width=width, vocab_size=top))
    if pointer:
        shards = [dataclasses.replace(s, table=repacked(s, pointer), pointer=pointer)
                  for s in eng.shards]
        eng = engine.Engine(eng.paths, shards, width, top, {"kind": "none"}, (None,))
    for step in (16, 2):
        for s in eng.searchers:
            s.step, s.bucket_min, s._search = step, 0, None
            s.prepare()
        d = eng.ntd([5])
        assert len(d.ids) > 2 * tally.PROBES_AHEAD
        assert dict(zip(d.ids.tolist(), d.counts.tolist())) == \
            naive_next_counts(shard_arrays(eng), [5])


@pytest.mark.parametrize("width", [1, 2, 4])
@pytest.mark.parametrize("step", [1, 2, 3])
def test_sampled_search_small_strides(tmp_path, width, step):
    """The key sample at strides far below the default (so that almost every
    search, tally and back-off goes through it): answers match the oracles,
    on a small alphabet (long runs of equal keys) and the adversarial corpora."""
    rng = np.random.default_rng(width * 100 + step)
    corpora = [random_docs(rng, width, 10, 60, 3), random_docs(rng, width, 6, 40, 2),
               ADVERSARIAL["repeated block"], ADVERSARIAL["prefix documents"],
               [[ALPHABET[width][1]] * 300]]
    for docs in corpora:
        for shards in (1, 2):
            eng = engine.open(make_index(tmp_path, docs, width=width, shards=shards,
                                         vocab_size=fmt.separator(width)))
            for s in eng.searchers:
                s.step, s.bucket_min = step, 0
                s.prepare()
            check_queries(eng, docs, queries_for(docs, rng, 20))
            flat = [t for d in docs for t in d]
            check_score(eng, flat[:25] + [ALPHABET[width][0]] + flat[-10:])


def test_fast_path_rejects_what_the_general_path_rejects(tmp_path):
    eng = engine.open(make_index(tmp_path, [[1, 2, 3]], vocab_size=10))
    for bad in ([1, True], [1, 2.0], [1, 2**70], [1, 10], [-1, 1], np.array([1, 10])):
        with pytest.raises(QueryError):
            eng.count(bad)
        with pytest.raises(QueryError):
            eng.infgram_prob(bad, 1)
    assert eng.count(np.array([1, 2])) == eng.count((1, 2)) == eng.count([np.int32(1), 2]) == 1


def test_fast_path_counts_ids_0_and_1(tmp_path):
    """Lists go to the kernels as array('q'), which also takes bools, so
    lists holding ids 0 or 1 are checked again by the general path."""
    eng = engine.open(make_index(tmp_path, [[0, 1, 0, 1, 2], [1, 0]], vocab_size=10))
    for q in ([0, 1], [1, 0], [0], [1, 2], [2, 0]):
        assert eng.count(q) == eng.count(np.array(q)) == naive_count(shard_arrays(eng), q), q
        assert eng.infgram_prob(q, 1) == eng.infgram_prob(np.array(q), 1), q
    assert eng.count([0, 1]) == 2 and eng.infgram_prob([0], 1).cont_count == 2


def scanned_buckets(tokens: np.ndarray) -> np.ndarray:
    """The bucket table by a scan of every token: where each first-token key
    (the token's little-endian bytes read big-endian) starts."""
    keys = tokens.astype(np.int64).byteswap().view(np.int64) >> (64 - 8 * tokens.itemsize) \
        if tokens.itemsize > 1 else tokens.astype(np.int64)
    keys &= (1 << (8 * tokens.itemsize)) - 1
    counts = np.bincount(keys, minlength=1 << (8 * tokens.itemsize))
    return np.concatenate([[0], np.cumsum(counts)])


@pytest.mark.parametrize("width", [1, 2, 4])
def test_bucket_bounds_by_bisection_equal_the_scan(tmp_path, width):
    """Bucket bounds found by bisection from the key sample equal those of a
    scan of the tokens, at strides from 1 to beyond the shard, on the
    oracle corpora (separators, absent ids, long runs of one key)."""
    from infinigram.native import search as ks
    rng = np.random.default_rng(width)
    corpora = [random_docs(rng, width, 10, 60, 3), random_docs(rng, width, 30, 200),
               ADVERSARIAL["repeated block"], ADVERSARIAL["prefix documents"],
               ADVERSARIAL["empty documents"], [[ALPHABET[width][1]] * 300],
               [[ALPHABET[width][-1]]]]
    for docs in corpora:
        eng = engine.open(make_index(tmp_path, docs, width=width,
                                     vocab_size=fmt.separator(width)))
        s = eng.searchers[0]
        for step in (1, 2, 3, 16, s.n + 1):
            s.step, s._search = step, None
            s.prepare()
            sample = s._search.sample
            for kernel in ks.buckets:  # on this thread, and on every core
                got = kernel(s._plain._replace(sample=sample, step=step))
                if width == 4:
                    assert got.shape == (0,)
                else:
                    assert got.tolist() == scanned_buckets(s._tokens).tolist(), (docs[:2], step)


def test_sample_is_built_in_the_background(tmp_path):
    """The first search of a shard runs without the sample (no query waits
    for it) and queues it; the background thread then builds it, and the
    answers are the same before and after."""
    rng = np.random.default_rng(5)
    docs = random_docs(rng, 2, 40, 300)
    eng = engine.open(make_index(tmp_path, docs, width=2, vocab_size=fmt.separator(2)))
    s = eng.searchers[0]
    queries = queries_for(docs, rng, 30)
    assert s._search is None
    before = [eng.count(q) for q in queries]
    deadline = time.monotonic() + 30
    while s._search is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s._search is not None and s._search.sample.shape[0] > 0
    assert [eng.count(q) for q in queries] == before == \
        [naive_count(shard_arrays(eng), q) for q in queries]
