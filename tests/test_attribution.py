"""creativity and attribute against brute-force scans and infini-gram's engine."""
import numpy as np
import pytest

import infinigram.engine as engine
from infinigram import format as fmt
from infinigram.errors import QueryError
from conftest import make_index
from infinigram import attribution
from naive import naive_attribute, naive_creativity, naive_occurrences, naive_overlap
from test_engine import ADVERSARIAL, ALPHABET, random_docs, shard_arrays

WIDTHS = [1, 2, 4]

NO_PEER = "infini-gram (the oracle here; the bench extra) is not installed"


def _corpora(width):
    """The adversarial corpora (ids mapped onto ``width``'s alphabet, whose
    byte order differs from numeric order) and a random one."""
    alpha = ALPHABET[width]
    out = {k: [[alpha[t % len(alpha)] for t in d] for d in docs] for k, docs in ADVERSARIAL.items()}
    out["random"] = random_docs(np.random.default_rng(width), width, 30, 40, 3)
    return out


def _inputs(docs, width, rng):
    """Texts to attribute: pieces of the corpus (also across documents),
    absent ids and runs of one token, mixed."""
    alpha = ALPHABET[width]
    flat = [t for d in docs for t in d]
    pieces = []
    for _ in range(6):
        if flat:
            i = int(rng.integers(len(flat)))
            pieces.append(flat[i:i + int(rng.integers(1, 30))])
        pieces.append([int(x) for x in rng.choice(alpha, size=int(rng.integers(1, 5)))])
    run = [flat[0]] * 40 if flat else [alpha[0]] * 3
    return [[t for p in pieces for t in p], run, flat[:50] or [alpha[1]]]


def _index(tmp_path, docs, width, shards):
    vocab = max(ALPHABET[width]) + 1
    return engine.open(make_index(tmp_path, docs, width=width, shards=shards, vocab_size=vocab))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(ADVERSARIAL) + ["random"])
def test_creativity_and_attribute_match_brute_force(tmp_path, width, name):
    docs = _corpora(width)[name]
    rng = np.random.default_rng(7)
    for shards in (1, 3):
        eng = _index(tmp_path, docs, width, shards)
        toks = shard_arrays(eng)
        for q in _inputs(docs, width, rng):
            got = eng.creativity(q)
            lengths = naive_creativity(toks, q)
            assert got.dtype == np.int64 and got.tolist() == lengths
            delims = [q[len(q) // 2]]
            for min_len, max_count, delim in [(1, None, ()), (2, 3, ()), (3, None, delims),
                                              (1, 1, delims)]:
                r = eng.attribute(q, min_len=min_len, max_count=max_count, delimiters=delim,
                                  docs=1000)
                want = naive_attribute(toks, q, min_len, max_count, delim, lengths)
                assert [(s.start, s.end, s.count) for s in r.spans] == want
                for s in r.spans:  # every occurrence, or 1000 of them
                    hits = sorted(zip(s.doc_ixs.tolist(), s.positions.tolist()))
                    every = naive_occurrences(toks, q[s.start:s.end])
                    assert len(hits) == min(1000, len(every)) and set(hits) <= set(every)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(ADVERSARIAL) + ["random"])
def test_overlap_matches_brute_force(tmp_path, width, name, monkeypatch):
    """Per document and overall, also when the n-grams are counted in
    batches smaller than a document."""
    docs = _corpora(width)[name]
    eng = _index(tmp_path, docs, width, 2)
    toks = shard_arrays(eng)
    tests = _inputs(docs, width, np.random.default_rng(3)) + [[], [ALPHABET[width][1]]]
    for n in (1, 3, 13):
        for batch in (attribution.OVERLAP_BATCH, 7):
            monkeypatch.setattr(attribution, "OVERLAP_BATCH", batch)
            r = eng.overlap(tests, n=n)
            sizes, found = naive_overlap(toks, tests, n)
            assert (r.n, r.ngrams.tolist(), r.found.tolist()) == (n, sizes, found)
            assert r.contaminated.tolist() == [f > 0 for f in found]
            assert r.fraction == pytest.approx(sum(found) / sum(sizes))
            assert np.isnan(r.fractions[-2]) and r.fractions[0] == pytest.approx(found[0] / sizes[0])
    assert np.isnan(eng.overlap([[]]).fraction) and len(eng.overlap([]).ngrams) == 0


def test_attribute_document_sample(tmp_path):
    """``docs`` bounds the sample; each hit is a real occurrence, whose
    document holds the span at that offset."""
    docs = [[1, 2, 3, 4]] * 5 + [[], [9, 1, 2, 3]]
    eng = _index(tmp_path, docs, 2, 2)
    r = eng.attribute([1, 2, 3, 4, 7, 1, 2], docs=3)
    assert [(s.start, s.end, s.count, s.length) for s in r.spans] == [(0, 4, 5, 4), (5, 7, 6, 2)]
    assert r.ids.tolist() == [1, 2, 3, 4, 7, 1, 2]
    for s in r.spans:
        assert len(s.doc_ixs) == len(s.positions) == 3
        for doc_ix, at in zip(s.doc_ixs, s.positions):
            d = eng.get_doc(doc_ix).tokens.tolist()
            assert d[at:at + s.length] == r.ids[s.start:s.end].tolist()
    assert len(eng.attribute([1, 2, 3], docs=0).spans[0].doc_ixs) == 0
    assert eng.attribute([5, 6]).spans == ()


def test_long_repeats(tmp_path):
    """A 3000-token input on a corpus of one repeated token: matches of
    thousands of tokens at every start."""
    eng = _index(tmp_path, [[5] * 5000], 2, 1)
    got = eng.creativity([5] * 3000 + [7] + [5] * 10)
    assert got.tolist() == list(range(3000, 0, -1)) + [0] + list(range(10, 0, -1))
    spans = eng.attribute([5] * 3000 + [7] + [5] * 10).spans
    assert [(s.start, s.end, s.count) for s in spans] == [(0, 3000, 2001), (3001, 3011, 4991)]


@pytest.mark.parametrize("call, message", [
    (lambda e: e.attribute([1], min_len=0), "min_len=0 is out of range"),
    (lambda e: e.attribute([1], max_count=0), "max_count=0 is out of range"),
    (lambda e: e.attribute([1], docs=-1), "docs=-1 is out of range"),
    (lambda e: e.attribute([1], delimiters=[70000]), "delimiters id 70000"),
    (lambda e: e.attribute([]), "the query is empty"),
    (lambda e: e.creativity([]), "the query is empty"),
    (lambda e: e.creativity([1, 65535]), "document separator"),
    (lambda e: e.creativity([1, 99]), "id 99 at position 1 is outside the vocabulary"),
    (lambda e: e.overlap([[1, 2]], n=0), "n=0 is out of range"),
    (lambda e: e.attribute([1], whole_words=1), "whole_words=1 must be True or False"),
    (lambda e: e.overlap([[1, 2], [3, 10]]), "id 10 at position 1"),
])
def test_bad_input(tmp_path, call, message):
    eng = engine.open(make_index(tmp_path, [[1, 2, 3]], vocab_size=10))
    with pytest.raises(QueryError, match=message):
        call(eng)


def test_same_answers_as_infinigram(tmp_path):
    """infini-gram's engine on the same index is the oracle: its ``rs`` are
    start + our creativity, and its attribution spans and their documents
    (shard, byte offset) are ours, in the same order. Inputs avoid the one
    case where it differs (a match of the suffix that sorts first; README)."""
    ig = pytest.importorskip("infini_gram.engine", reason=NO_PEER)
    rng = np.random.default_rng(2)
    block = [int(v) for v in rng.integers(1, 300, 50)]
    docs = [rng.integers(1, 200, rng.integers(0, 300)).tolist() for _ in range(60)] + \
        [block * 20, [7] * 500, []]
    path = make_index(tmp_path, docs, width=2, shards=2, vocab_size=fmt.separator(2))
    eng = engine.open(path)
    theirs = ig.InfiniGramEngine(index_dir=str(path), eos_token_id=65534, vocab_size=65535,
                                 token_dtype="u16")
    flat = [t for d in docs for t in d]
    inputs = [block[10:] + block * 2 + [400, 401] + [7] * 30,
              [int(x) for x in rng.integers(1, 260, 200)],
              flat[1000:1100] + flat[5000:5150]]
    starts = [eng.shards[s].offsets for s in range(2)]
    for q in inputs:
        ours = eng.creativity(q)
        assert theirs.creativity(q)["rs"] == (np.arange(len(q)) + ours).tolist()
        for min_len, max_count, delims in [(1, 10**9, []), (3, 20, []), (2, 10**9, [q[5], q[40]])]:
            want = theirs.attribute(q, delims, min_len, max_count, False)["spans"]
            got = eng.attribute(q, min_len=min_len, max_count=max_count, delimiters=delims,
                                docs=10**9).spans
            assert [(s.start, s.end, s.count) for s in got] == \
                [(s["l"], s["r"], s["count"]) for s in want]
            for g, w in zip(got, want):
                hits = []
                for d in w["docs"]:
                    local = int(np.searchsorted(starts[d["s"]], d["ptr"], side="right")) - 1
                    base = sum(eng.shards[k].n_docs for k in range(d["s"]))
                    hits.append((base + local, (d["ptr"] - int(starts[d["s"]][local])) // 2 - 1))
                assert list(zip(g.doc_ixs.tolist(), g.positions.tolist())) == hits


def test_where_infinigram_differs(tmp_path):
    """A text whose suffix sorts before every suffix of the corpus: infini-gram
    inspects no neighbour (its unsigned rank - 1 wraps) and reports 0; the
    longest match is 1 token."""
    ig = pytest.importorskip("infini_gram.engine", reason=NO_PEER)
    path = make_index(tmp_path, [[0, 1], [2]], width=2, vocab_size=fmt.separator(2))
    theirs = ig.InfiniGramEngine(index_dir=str(path), eos_token_id=65534, vocab_size=65535,
                                 token_dtype="u16")
    assert theirs.creativity([0, 0])["rs"] == [0, 2]  # rs[i] = i + length: [1, 2] is right
    assert engine.open(path).creativity([0, 0]).tolist() == [1, 1]


def test_whole_words(tmp_path):
    """whole_words on a sentencepiece index: spans start at a word's first
    piece and end before the next word's (brute force), as infini-gram's
    enforce_bow with the same word-start ids; an index without
    sentencepiece refuses it."""
    from infinigram.tokenizer import SentencePieceTokenizer, train_sentencepiece
    rng = np.random.default_rng(4)
    words = ["cat", "sat", "on", "the", "mat", "dog", "ran", "away", "quickly", "home"]
    text = [" ".join(rng.choice(words, size=int(rng.integers(3, 40)))) for _ in range(60)]
    model = tmp_path / "tok.model"
    train_sentencepiece(text, 300, model, threads=1)
    tok = SentencePieceTokenizer(model, threads=1)
    docs = [tok.encode(t).tolist() for t in text]
    path = make_index(tmp_path, docs, width=2, shards=2, tokenizer=str(model))
    eng = engine.open(path)
    bow = set(np.flatnonzero(tok.word_starts()).tolist())
    assert bow and all(tok._sp.id_to_piece(i).startswith("\u2581") for i in bow)
    toks = shard_arrays(eng)
    queries = [" ".join(rng.choice(words, size=12)) for _ in range(5)] + [text[0] + " dog sat"]
    spans = [[(s.start, s.end) for s in eng.attribute(q, whole_words=w).spans]
             for q in queries for w in (False, True)]
    assert spans[0::2] != spans[1::2]  # word boundaries change the answer
    for q in queries:
        ids = eng.tokenize(q).tolist()
        for min_len, delims in [(1, ()), (3, (ids[2],))]:
            got = eng.attribute(q, min_len=min_len, delimiters=delims, whole_words=True)
            assert [(s.start, s.end, s.count) for s in got.spans] == \
                naive_attribute(toks, ids, min_len, None, delims, bow=bow)
    ig = pytest.importorskip("infini_gram.engine", reason=NO_PEER)
    (tmp_path / "bow.txt").write_text("".join(f"{i}\n" for i in sorted(bow)))
    theirs = ig.InfiniGramEngine(index_dir=str(path), eos_token_id=65534, vocab_size=65535,
                                 token_dtype="u16", bow_ids_path=str(tmp_path / "bow.txt"))
    for q in queries:
        ids = eng.tokenize(q).tolist()
        want = theirs.attribute(ids, [], 1, 10**9, True)["spans"]
        got = eng.attribute(ids, whole_words=True).spans
        assert [(s.start, s.end, s.count) for s in got] == [(s["l"], s["r"], s["count"]) for s in want]
    with pytest.raises(QueryError, match="whole_words=True needs a sentencepiece tokenizer"):
        engine.open(make_index(tmp_path, [[1, 2]])).attribute([1, 2], whole_words=True)
