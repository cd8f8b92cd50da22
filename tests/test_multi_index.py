"""Several index directories opened as one engine answer as one index over
the concatenated corpora (and as the brute-force oracles), for every query."""
import numpy as np
import pytest

import infinigram as ig
from infinigram.errors import IndexFormatError
from conftest import make_index
from naive import (naive_count, naive_count_cnf, naive_doc_hits, naive_infgram,
                   naive_next_counts)

DOCS = [[1, 2, 3, 1, 2], [], [2, 3], [1, 2, 3, 4], [4, 4, 4, 4], [1, 2], [3], [1, 2, 3, 1, 2, 3]]


def _engines(tmp_path, width, cuts):
    """(one engine over several directories split at ``cuts``, one engine
    over a single directory of all documents)."""
    meta = [{"n": i} for i in range(len(DOCS))]
    bounds = [0, *cuts, len(DOCS)]
    dirs = [make_index(tmp_path, DOCS[a:b], width=width, vocab_size=5,
                       metadata=meta[a:b], shards=1 + (k % 2))
            for k, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    whole = make_index(tmp_path, DOCS, width=width, vocab_size=5, metadata=meta)
    return ig.open(dirs), ig.open(whole)


QUERIES = [[1], [1, 2], [1, 2, 3], [2, 3, 1], [4, 4], [3, 4], [0], [2, 3, 4, 4]]


@pytest.mark.parametrize("width", [1, 2, 4])
@pytest.mark.parametrize("cuts", [[3], [1, 2, 6], [4, 5, 7]])
def test_many_equal_one_index_of_the_concatenation(tmp_path, width, cuts):
    many, one = _engines(tmp_path, width, cuts)
    tokens = [np.asarray(s.tokens) for s in one.shards]
    assert many.n_docs == one.n_docs == len(DOCS)
    assert many.n_tokens == one.n_tokens
    assert len(many.shards) == len(cuts) + 1 + sum(k % 2 for k in range(len(cuts) + 1))
    assert many.count_many(QUERIES).tolist() == one.count_many(QUERIES).tolist() == \
        [naive_count(tokens, q) for q in QUERIES]
    for q in QUERIES:
        assert many.count(q) == one.count(q) == naive_count(tokens, q)
        assert many.find(q).count == naive_count(tokens, q)
        assert many.prob(q, 2) == one.prob(q, 2) or np.isnan(one.prob(q, 2).prob)
        d = many.ntd(q)
        assert dict(zip(d.ids.tolist(), d.counts.tolist())) == naive_next_counts(tokens, q)
        i_many, i_one = many.infgram_prob(q, 3), one.infgram_prob(q, 3)
        assert i_many == i_one
        L, expected = naive_infgram(tokens, q)
        d = many.infgram_ntd(q)
        assert d.effective_n == L + 1 and dict(zip(d.ids.tolist(), d.counts.tolist())) == expected
        hits = many.search_docs(q, limit=100)
        assert [(h.doc_ix, h.position) for h in hits.docs] == naive_doc_hits(DOCS, q)
        assert hits == one.search_docs(q, limit=100)
    seq = [1, 2, 3, 1, 2, 3, 4, 4, 0, 2]
    s_many, s_one = many.score(seq), one.score(seq)
    np.testing.assert_array_equal(s_many.probs, s_one.probs)
    np.testing.assert_array_equal(s_many.effective_n, s_one.effective_n)
    np.testing.assert_array_equal(s_many.sparse, s_one.sparse)
    for ix in range(len(DOCS)):
        a, b = many.get_doc(ix), one.get_doc(ix)
        assert a.tokens.tolist() == b.tokens.tolist() == DOCS[ix]
        assert a.metadata == b.metadata == {"n": ix}
    cnf = [[[1, 2]], [[4], [3]]]
    assert many.count_cnf(cnf, window=3) == one.count_cnf(cnf, window=3) == \
        naive_count_cnf(DOCS, cnf, 3)


def test_find_names_the_engines_shards(tmp_path):
    many, _ = _engines(tmp_path, 2, [3])
    f = many.find([1, 2])
    assert [r[0] for r in f.ranges] == list(range(len(many.shards)))
    for k, lo, hi in f.ranges:
        table = np.asarray(many.shards[k].table).reshape(-1, many.shards[k].pointer)
        tokens = np.asarray(many.shards[k].tokens)
        for row in table[lo:hi]:
            p = int.from_bytes(bytes(row), "little") // 2
            assert tokens[p:p + 2].tolist() == [1, 2]


def test_one_directory_in_a_list_is_that_index(tmp_path):
    d = make_index(tmp_path, DOCS, vocab_size=5)
    eng = ig.open([d])
    assert eng.paths == (d,) and eng.count([1, 2]) == ig.open(d).count([1, 2])


def test_ids_only_indexes_take_the_largest_vocabulary(tmp_path):
    a = make_index(tmp_path, [[1, 2]], vocab_size=3)
    b = make_index(tmp_path, [[7, 1]], vocab_size=8)
    eng = ig.open([a, b])
    assert eng.vocab_size == 8 and eng.count([7]) == 1 and eng.count([1]) == 2


@pytest.mark.parametrize("other, named", [
    (dict(width=4), "token width 2 vs 4"),
    (dict(tokenizer="bytes", vocab_size=255), "tokenizer"),
])
def test_incompatible_indexes_are_named(tmp_path, other, named):
    a = make_index(tmp_path, [[1, 2]])
    b = make_index(tmp_path, [[1, 2]], **other)
    with pytest.raises(IndexFormatError, match=named) as e:
        ig.open([a, b])
    assert str(a) in str(e.value) and str(b) in str(e.value)


def test_different_vocabularies_of_one_tokenizer_are_refused(tmp_path):
    a = make_index(tmp_path, [[1, 2]], tokenizer="bytes", vocab_size=255)
    b = make_index(tmp_path, [[1, 2]], tokenizer="bytes", vocab_size=200)
    with pytest.raises(IndexFormatError, match="vocabulary size 255 vs 200"):
        ig.open([a, b])


def test_empty_list_is_refused():
    with pytest.raises(IndexFormatError, match="no index directory"):
        ig.open([])
