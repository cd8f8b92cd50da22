"""Kneser-Ney (infinigram.smoothing) against a brute-force oracle and tokengrams."""
import json
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

import infinigram.engine as engine
from infinigram import smoothing
from infinigram.cli import main
from infinigram.errors import QueryError
from conftest import make_index
from test_engine import ADVERSARIAL


def oracle_dist(docs, vocab, prompt, n, modified=False):
    """Interpolated KN as infinigram.smoothing documents it, by plain counting
    over the documents, recursing over every suffix of the context."""
    grams = [Counter(tuple(d[i:i + k]) for d in docs for i in range(len(d) - k + 1))
             for k in range(n + 1)]

    def delta(k):
        """{times seen: discount} of order k (3 stands for 3 or more)."""
        n1, n2, n3, n4 = (sum(c == j for c in grams[k].values()) for j in (1, 2, 3, 4))
        y = n1 / (n1 + 2 * n2) if n1 and n2 else 1.0
        if modified and n1 and n2 and n3 and n4:
            three = {1: 1 - 2 * y * n2 / n1, 2: 2 - 3 * y * n3 / n2, 3: 3 - 4 * y * n4 / n3}
            if min(three.values()) >= 0:
                return three
        return {1: y, 2: y, 3: y}

    def level(counts, d, lower):
        total = sum(counts.values())
        if not total:
            return lower
        taken = {w: d[min(c, 3)] for w, c in counts.items()}
        out = [sum(taken.values()) / total * lower[w] for w in range(vocab)]
        for w, c in counts.items():
            out[w] += max(c - taken[w], 0) / total
        return out

    def probs(h):
        if not h:
            unigram = Counter(t for d in docs for t in d)
            total = sum(unigram.values())
            base = [(unigram[w] + 1e-9) / (total + 1e-9 * vocab) for w in range(vocab)]
            return level(unigram, delta(1), base)
        nexts = Counter(d[i + len(h)] for d in docs for i in range(len(d) - len(h))
                        if tuple(d[i:i + len(h)]) == h)
        return level(nexts, delta(len(h) + 1), probs(h[1:]))

    context = tuple(prompt[max(len(prompt) - (n - 1), 0):]) if n > 1 else ()
    return np.array(probs(context))


CORPORA = dict(ADVERSARIAL, **{
    "random": [list(np.random.default_rng(3).integers(0, 6, 300)) for _ in range(4)],
    "long repeat": [[1, 2, 3] * 200 + [4] + [1, 2, 3] * 100],
    "zipf": [list(np.random.default_rng(0).zipf(1.6, 1500) % 10)[i:i + 500]
             for i in (0, 500, 1000)],  # modified KN's three discounts at orders 2-5
})


@pytest.mark.parametrize("name", list(CORPORA))
@pytest.mark.parametrize("shards", [1, 2])
def test_kn_matches_oracle(tmp_path, name, shards):
    docs = [[int(t) for t in d] for d in CORPORA[name]]
    if name == "one token repeated":
        docs = [[5] * 3000]
    eng = engine.open(make_index(tmp_path, docs, width=2, shards=shards, vocab_size=10))
    rng = np.random.default_rng(0)
    flat = [t for d in docs for t in d]
    prompts = [[], [9], [5, 5, 5], flat[:7], flat[-5:]] + [
        list(rng.integers(0, 10, rng.integers(1, 6))) for _ in range(6)]
    if name == "zipf":  # not a fallback to one discount per order
        three = smoothing.model(eng).deltas(5, modified=True)
        assert (three[2:, 2] != three[2:, 1]).all(), three
    for n in (1, 2, 3, 5):
        for modified in (False, True):
            many = eng.kn_dist_many(prompts, n, modified=modified)
            for row, p in zip(many, prompts):
                want = oracle_dist(docs, 10, p, n, modified)
                np.testing.assert_allclose(row, want, rtol=0, atol=1e-12)
                assert abs(row.sum() - 1) < 1e-9
            nexts = rng.integers(0, 10, len(prompts))
            np.testing.assert_array_equal(eng.kn_prob_many(prompts, nexts, n, modified),
                                          many[np.arange(len(prompts)), nexts])


def _tokengrams(tmp_path, tokens, vocab):
    tokengrams = pytest.importorskip("tokengrams",
                                     reason="tokengrams (the bench extra) is not installed")
    text = tmp_path / "tokens.u16"
    np.asarray(tokens, "<u2").tofile(text)
    tokengrams.MemmapIndex.build(str(text), str(tmp_path / "tg.idx"), vocab, False)
    return tokengrams.MemmapIndex(str(text), str(tmp_path / "tg.idx"), vocab)


@pytest.mark.parametrize("seed", range(3))
def test_kn_equals_tokengrams_on_one_document(tmp_path, seed):
    """One document: tokengrams' token stream is our document (its file is
    our tokenized.0 without the leading separator), so they agree."""
    rng = np.random.default_rng(seed)
    vocab = 3000
    doc = list(rng.zipf(1.3, 20_000) % vocab)
    eng = engine.open(make_index(tmp_path, [doc], width=2, vocab_size=vocab))
    tokens = np.fromfile(eng.path / "tokenized.0", "<u2")[1:]
    assert tokens.tolist() == doc
    tg = _tokengrams(tmp_path, tokens, vocab)
    n = 5
    tg.estimate_deltas(n)
    starts = rng.integers(0, len(doc) - 10, 40)
    prompts = [doc[s:s + rng.integers(0, 5)] for s in starts] + [[2999, 2998], [1, 2999, 3, 4]]
    ours = eng.kn_dist_many(prompts, n)
    theirs = np.array(tg.batch_get_smoothed_probs([[int(t) for t in p] for p in prompts]))
    assert np.abs(ours - theirs).max() < 1e-9
    deltas = eng._kneser_ney.deltas(n)[1:, 1]
    assert all(0 < d < 1 for d in deltas), deltas  # tokengrams' D < 1 branch at every order
    three = eng._kneser_ney.deltas(n, modified=True)[1:, 1:]
    assert (three >= 0).all() and (three < [1, 2, 3]).all(), three  # none fell back to D_k:
    assert np.allclose(three[:, 0], deltas) and (three[:, 1:] != deltas[:, None]).all()  # D1 = Y
    modified = eng.kn_dist_many(prompts, n, modified=True)  # its own three discounts everywhere
    assert np.abs(modified.sum(axis=1) - 1).max() < 1e-9 and np.abs(modified - ours).max() > 1e-4


def test_sample_is_deterministic_and_follows_the_corpus(tmp_path):
    docs = [[1, 2, 3, 4] * 20, [1, 2, 5]]
    eng = engine.open(make_index(tmp_path, docs, width=2, vocab_size=8))
    a = eng.sample([1, 2], 50, n=3, smoothed=False, seed=7)
    assert a.tolist() == eng.sample([1, 2], 50, n=3, smoothed=False, seed=7).tolist()
    seq = [1, 2] + a.tolist()
    seen = {tuple(d[i:i + 3]) for d in docs for i in range(len(d) - 2)}
    # unsmoothed: every step is a seen trigram, or backs off where the context ends a document
    for i in range(len(seq) - 2):
        assert tuple(seq[i:i + 3]) in seen or eng.ntd(seq[i:i + 2]).prompt_count == 0
    b = eng.sample([1], 200, n=2, smoothed=True, seed=1)
    assert b.tolist() == eng.sample([1], 200, n=2, smoothed=True, seed=1).tolist()
    bigrams = {tuple(d[i:i + 2]) for d in docs for i in range(len(d) - 1)}
    steps = set(zip([1] + b.tolist(), b.tolist()))
    assert steps - bigrams  # lower orders give unseen bigrams mass
    assert len(eng.sample([], 0, n=1, seed=0)) == 0


def test_kn_bad_input(tmp_path):
    eng = engine.open(make_index(tmp_path, [[1, 2, 3]], width=2, vocab_size=4))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(QueryError, match="n="):
            eng.kn_dist([1], bad)
        with pytest.raises(QueryError, match="n="):
            eng.sample([1], 3, n=bad)
    with pytest.raises(QueryError, match="4"):
        eng.kn_prob([1], 4, 2)
    with pytest.raises(QueryError, match="7"):
        eng.kn_dist([7], 2)
    with pytest.raises(QueryError, match="next ids"):
        eng.kn_prob_many([[1]], [1, 2], 2)
    with pytest.raises(QueryError, match="next_ids="):
        eng.kn_prob_many([[1]], 1, 2)
    for bad in (-1, 1.5, "x", True):
        with pytest.raises(QueryError, match="seed="):
            eng.sample([1], 3, n=2, seed=bad)
    with pytest.raises(QueryError, match="smoothed="):
        eng.sample([1], 3, n=2, smoothed="no")
    for call in (lambda: eng.kn_dist([1], 2, modified=1), lambda: eng.kn_prob([1], 2, 2, "x"),
                 lambda: eng.sample([1], 3, n=2, modified=None)):
        with pytest.raises(QueryError, match="modified="):
            call()


def test_ppl_cli(tmp_path):
    docs = [list(b"abcabcabd abca"), list(b"bca cab")]
    index = make_index(tmp_path, docs, width=2, tokenizer="bytes")
    held = tmp_path / "held.jsonl"
    held.write_text('{"text": "abcab"}\n{"text": "zab"}\n')
    r = CliRunner().invoke(main, ["ppl", str(index), str(held), "--kn", "3", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    eng = engine.open(index)
    seqs = [list(b"abcab"), list(b"zab")]
    p_inf = [eng.infgram_prob(s[:t], s[t]).prob for s in seqs for t in range(len(s))]
    mixed = [0.99 * p + 0.01 / eng.vocab_size for p in p_inf]
    assert got["tokens"] == 8 and got["infgram_zero_tokens"] == p_inf.count(0.0) == 1
    assert abs(got["infgram_ppl"] - np.exp(-np.mean(np.log(mixed)))) < 1e-9
    kn = [oracle_dist(docs, eng.vocab_size, s[:t], 3)[s[t]] for s in seqs for t in range(len(s))]
    assert abs(got["kn_ppl"] - np.exp(-np.mean(np.log(kn)))) < 1e-6 * got["kn_ppl"]
    r = CliRunner().invoke(main, ["ppl", str(index), str(held), "--kn", "3", "--modified"])
    assert r.exit_code == 0 and "modified kn-3 ppl" in r.output, r.output
    modified = [oracle_dist(docs, eng.vocab_size, s[:t], 3, True)[s[t]]
                for s in seqs for t in range(len(s))]
    assert f"{np.exp(-np.mean(np.log(modified))):.6g}" in r.output
    bad = CliRunner().invoke(main, ["ppl", str(index), str(held), "--kn", "0"])
    assert bad.exit_code == 1 and bad.output.count("\n") == 1 and "n=0" in bad.output
