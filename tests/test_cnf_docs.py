"""find_cnf, search_docs_cnf and get_docs against brute-force scans of the
adversarial corpora (widths 1, 2, 4; one and several shards)."""
import numpy as np
import pytest

from infinigram.errors import QueryError
from naive import naive_cnf_matches
from test_attribution import WIDTHS, _corpora, _index
from test_engine import ADVERSARIAL, ALPHABET

WINDOWS = [0, 1, 10**9]


def _cnfs(docs, width, rng) -> list:
    """CNF queries of n-grams of the corpus (1 to 3 tokens) and absent ones."""
    flat = [t for d in docs for t in d]
    absent = [ALPHABET[width][-1]] * 3

    def gram():
        if not flat:
            return absent
        i = int(rng.integers(len(flat)))
        return flat[i:i + int(rng.integers(1, 4))]
    return [[[gram()]], [[gram()], [gram()]], [[gram(), gram()], [gram()]],
            [[gram()], [gram(), absent], [gram()]], [[absent]], [[gram()], [absent]]]


def _context(docs, d, p, length, c):
    return docs[d][max(0, p - c):p + length + c]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(ADVERSARIAL) + ["random"])
def test_cnf_queries_match_brute_force(tmp_path, width, name):
    docs = _corpora(width)[name]
    rng = np.random.default_rng(11)
    cnfs = _cnfs(docs, width, rng)
    for shards in (1, 3):
        eng = _index(tmp_path, docs, width, shards)
        for cnf in cnfs:
            for window in WINDOWS:
                want = naive_cnf_matches(docs, cnf, window)
                m = eng.find_cnf(cnf, window=window)
                got = list(zip(m.doc_ixs.tolist(), m.positions.tolist()))
                assert m.count == len(want) == eng.count_cnf(cnf, window) == \
                    sum(map(len, m.shard_positions))
                assert got == [(d, p) for d, p, _ in want], (cnf, window)
                first = {}
                for d, p, length in want:
                    first.setdefault(d, (p, length))
                for limit, context in ((0, None), (2, 0), (1000, 3)):
                    r = eng.search_docs_cnf(cnf, limit=limit, window=window, context=context)
                    hits = sorted(first.items())[:limit]
                    assert (r.count, r.n_docs) == (len(want), len(first))
                    assert [(h.doc_ix, h.position) for h in r.docs] == [(d, p) for d, (p, _) in hits]
                    for h, (d, (p, length)) in zip(r.docs, hits):
                        if context is None:
                            assert h.context is None
                        else:
                            assert h.context.tokens.tolist() == _context(docs, d, p, length, context)
                            assert h.context.start == max(0, p - context)
                if len(cnf) == 1 and len(cnf[0]) == 1:
                    assert eng.search_docs(cnf[0][0], limit=1000) == \
                        eng.search_docs_cnf(cnf, limit=1000, window=window)
                if want:  # find_cnf's matches go straight on to get_docs
                    docs_at = eng.get_docs(m.doc_ixs[:50], around=m.positions[:50], window=2)
                    assert [(g.doc_ix, g.start, g.tokens.tolist()) for g in docs_at] == \
                        [(d, max(0, p - 2), docs[d][max(0, p - 2):p + 2]) for d, p, _ in want[:50]]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(ADVERSARIAL) + ["random"])
def test_get_docs_matches_brute_force(tmp_path, width, name):
    docs = _corpora(width)[name]
    rng = np.random.default_rng(5)
    ixs = rng.integers(0, len(docs), 20).tolist() + [0, len(docs) - 1, 0]
    for shards in (1, 3):
        eng = _index(tmp_path, docs, width, shards)
        got = eng.get_docs(ixs)
        assert [(g.doc_ix, g.start, g.tokens.tolist()) for g in got] == \
            [(i, 0, docs[i]) for i in ixs]
        assert [g.tokens.tolist() for g in eng.get_docs(np.array(ixs, dtype=np.uint32))] == \
            [docs[i] for i in ixs]
        around = [int(rng.integers(0, len(docs[i]) + 1)) for i in ixs]
        for window in WINDOWS:
            got = eng.get_docs(ixs, around=around, window=window)
            assert [g.tokens.tolist() for g in got] == \
                [docs[i][max(0, a - window):a + window] for i, a in zip(ixs, around)]
            assert [g.start for g in got] == [max(0, a - window) for a in around]
            one = eng.get_docs(ixs, around=0, window=window)
            assert [g.tokens.tolist() for g in one] == [docs[i][:window] for i in ixs]
            g = eng.get_doc(ixs[0], window=window, around=around[0])
            assert g.tokens.tolist() == got[0].tokens.tolist()
        assert eng.get_docs([]) == []


def test_errors_are_one_line_query_errors(tmp_path):
    docs = [[1, 2, 3], [], [4, 5, 6, 7, 8], [9, 1]]
    eng = _index(tmp_path, docs, 2, 2)
    bad = {
        "empty cnf": lambda: eng.find_cnf([]),
        "empty clause": lambda: eng.search_docs_cnf([[[1]], []]),
        "empty n-gram": lambda: eng.search_docs_cnf([[[1]], [[2], []]]),
        "empty query": lambda: eng.search_docs([]),
        "limit < 0": lambda: eng.search_docs_cnf([[[1]]], limit=-1),
        "window < 0": lambda: eng.find_cnf([[[1]]], window=-1),
        "context < 0": lambda: eng.search_docs([1], context=-1),
        "doc out of range": lambda: eng.get_docs([0, 4]),
        "negative doc": lambda: eng.get_docs([-1]),
        "float doc": lambda: eng.get_docs([0, 1.0]),
        "2-D docs": lambda: eng.get_docs(np.zeros((2, 2), dtype=np.int64)),
        "around past the end": lambda: eng.get_docs([0, 2], around=[1, 6], window=1),
        "negative around": lambda: eng.get_docs([0], around=[-1], window=1),
        "around count": lambda: eng.get_docs([0, 2], around=[1], window=1),
        "around alone": lambda: eng.get_docs([0], around=1),
    }
    messages = {}
    for what, call in bad.items():
        with pytest.raises(QueryError) as e:
            call()
        messages[what] = str(e.value)
        assert "\n" not in messages[what], what
    assert "clause 1, n-gram 1" in messages["empty n-gram"]
    assert "document index 4 (doc_ixs[1])" in messages["doc out of range"]
    assert "doc_ixs[1]=1.0" in messages["float doc"]
    assert "around=6" in messages["around past the end"] and "document 2" in messages["around past the end"]
