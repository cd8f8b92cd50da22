"""interpolate.py: the mixture, the λ fit and the report, against hand-computed values."""
import math

import numpy as np
import pytest

from infinigram import engine as ig
from infinigram.errors import QueryError
from infinigram.interpolate import Lambdas, argmax_hits, fit, improvement, mix, report
from naive import naive_infgram


def nll(p_inf, p_nn, lam):
    with np.errstate(divide="ignore"):
        return -np.mean(np.log(lam * p_inf + (1 - lam) * p_nn))


# ---------------------------------------------------------------- mix

def test_mix_per_token_by_hand():
    out = mix([1.0, 0.0, 0.5], [0.2, 0.4, 0.5], [True, True, False], 0.8, 0.3)
    np.testing.assert_allclose(out, [0.84, 0.08, 0.5])


def test_mix_distributions_pick_lambda_per_row():
    p_inf = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    p_nn = np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    out = mix(p_inf, p_nn, np.array([True, False]), 0.9, 0.25)
    np.testing.assert_allclose(out, [[0.92, 0.03, 0.05], [0.2, 0.2, 0.6]])
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_mix_extreme_lambdas_return_inputs():
    p_inf, p_nn, s = [0.3, 1.0], [0.6, 0.1], [False, True]
    np.testing.assert_array_equal(mix(p_inf, p_nn, s, 1.0, 1.0), p_inf)
    np.testing.assert_array_equal(mix(p_inf, p_nn, s, 0.0, 0.0), p_nn)


@pytest.mark.parametrize("args, match", [
    (([0.5, 0.5], [0.5], [True, False]), "shape"),
    (([0.5, np.nan], [0.5, 0.5], [True, False]), "nan"),
    (([0.5, 1.5], [0.5, 0.5], [True, False]), "1.5"),
    (([0.5, 0.5], [-0.1, 0.5], [True, False]), "-0.1"),
    (([0.5, np.inf], [0.5, 0.5], [True, False]), "inf"),
    (([0.5, 0.5], [0.5, 0.5], [True]), "sparse has shape"),
    (([0.5, 0.5], [0.5, 0.5], [0.5, 1.0]), "sparse has dtype"),
    (([], [], []), "non-empty"),
    (([[[0.5]]], [[[0.5]]], [True]), "shape"),
])
def test_mix_rejects_bad_inputs(args, match):
    with pytest.raises(QueryError, match=match):
        mix(*args, 0.5, 0.5)


@pytest.mark.parametrize("lam", [-0.1, 1.01, float("nan")])
def test_mix_rejects_bad_lambda(lam):
    with pytest.raises(QueryError, match="lam_dense"):
        mix([0.5], [0.5], [False], 0.5, lam)


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        mix([0.5], [2.0], [False], 0.5, 0.5)


# ---------------------------------------------------------------- fit

def test_fit_by_hand():
    # sparse: NLL = -(2 log λ + log(1-λ))/3, minimised at λ = 2/3;
    # dense: P∞ always at least P_nn, so λ = 1.
    p_inf = np.array([1.0, 1.0, 0.0, 0.9, 0.6])
    p_nn = np.array([0.0, 0.0, 1.0, 0.2, 0.6])
    lam = fit(p_inf, p_nn, [True, True, True, False, False])
    assert lam.sparse == pytest.approx(2 / 3, abs=1e-9)
    assert lam.dense == 1.0


def test_fit_pure_neural_when_infgram_never_helps():
    lam = fit([0.0, 0.1, 0.0], [0.5, 0.2, 0.3], [False, False, True])
    assert lam == Lambdas(sparse=0.0, dense=0.0)


def test_fit_empty_group_and_impossible_positions():
    # no sparse positions -> 0; a position where both are 0 does not move the optimum
    lam = fit([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [False, False, False])
    assert lam.sparse == 0.0
    assert lam.dense == pytest.approx(0.5, abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_fit_matches_grid_search(seed):
    rng = np.random.default_rng(seed)
    n = 300
    sparse = rng.random(n) < 0.4
    # ∞-gram: often exactly right (1) or absent (0), else spread; neural: smooth
    p_inf = np.where(rng.random(n) < 0.5, rng.choice([0.0, 1.0], n), rng.random(n))
    p_nn = rng.beta(1 + seed, 3, n)
    lam = fit(p_inf, p_nn, sparse)
    grid = np.linspace(0, 1, 10001)
    for got, m in ((lam.sparse, sparse), (lam.dense, ~sparse)):
        losses = np.array([nll(p_inf[m], p_nn[m], g) for g in grid])
        best = grid[np.argmin(losses)]
        assert abs(got - best) <= 1e-4
        assert nll(p_inf[m], p_nn[m], got) <= losses.min() + 1e-12


def test_fit_rejects_distributions():
    with pytest.raises(QueryError, match="actual tokens"):
        fit(np.full((2, 3), 1 / 3), np.full((2, 3), 1 / 3), [True, False])


# ---------------------------------------------------------------- report

def test_improvement_formula():
    assert improvement(5.0, 3.0) == pytest.approx(0.5)
    assert improvement(5.0, 5.0) == 0.0
    assert improvement(5.0, 1.0) == 1.0


def test_report_by_hand():
    p_inf = np.array([1.0, 0.0, 0.5, 0.25])
    p_nn = np.array([0.5, 0.5, 0.25, 0.25])
    sparse = np.array([True, True, False, False])
    eff = np.array([40, 3, 1, 2])
    r = report(p_inf, p_nn, sparse, eff, Lambdas(0.5, 0.5))
    mixed = np.array([0.75, 0.25, 0.375, 0.25])
    assert r.tokens == 4
    assert r.ppl_neural == pytest.approx(math.exp(-np.mean(np.log(p_nn))))
    assert r.ppl_interpolated == pytest.approx(math.exp(-np.mean(np.log(mixed))))
    assert r.ppl_neural_sparse == pytest.approx(2.0)
    assert r.ppl_interpolated_sparse == pytest.approx(1 / math.sqrt(0.75 * 0.25))
    assert r.ppl_neural_dense == pytest.approx(1 / math.sqrt(0.25 * 0.25))
    assert r.improvement == pytest.approx(
        1 - (r.ppl_interpolated - 1) / (r.ppl_neural - 1))
    assert r.sparse_share == 0.5 and r.sparse_tokens == 2
    # without hits: P∞ > 0.5 proxy
    assert not r.accuracy_exact
    assert r.accuracy_sparse == 0.5 and r.accuracy_dense == 0.0
    by = {b.label: (b.tokens, b.hits) for b in r.buckets}
    assert by["1"] == (1, 0) and by["2"] == (1, 0) and by["3–4"] == (1, 0)
    assert by["33–64"] == (1, 1) and by["≥65"] == (0, 0)
    assert sum(b.tokens for b in r.buckets) == 4


def test_report_with_exact_hits_and_markdown():
    p_inf = np.array([1.0, 0.0, 0.5, 0.25])
    p_nn = np.full(4, 0.5)
    hits = np.array([True, False, True, True])
    r = report(p_inf, p_nn, [True, True, False, False], np.array([100, 1, 5, 9]),
               Lambdas(0.9, 0.1), hits=hits)
    assert r.accuracy_exact
    assert r.accuracy_dense == 1.0
    md = r.to_markdown()
    assert "| ≥65 | 1 | 100.0% |" in md
    assert "| 9–16 | 1 | 100.0% |" in md
    assert "λ sparse = 0.9000" in md
    assert "| 17–32 | 0 | – |" in md


def test_report_infinite_perplexity_when_a_token_is_impossible():
    r = report([0.0, 1.0], [0.5, 0.5], [True, True], np.array([2, 2]), Lambdas(1.0, 0.0))
    assert r.ppl_interpolated == math.inf
    assert r.improvement == -math.inf


@pytest.mark.parametrize("kw, match", [
    (dict(effective_n=np.array([0, 1])), "effective_n"),
    (dict(effective_n=np.array([1.0, 2.0])), "effective_n"),
    (dict(effective_n=np.array([1])), "effective_n"),
    (dict(hits=np.array([1, 0])), "hits"),
    (dict(hits=np.array([True])), "hits"),
])
def test_report_rejects_bad_inputs(kw, match):
    args = dict(p_inf=[0.5, 0.5], p_nn=[0.5, 0.5], sparse=[True, False],
                effective_n=np.array([1, 2]), lambdas=Lambdas(0.5, 0.5))
    args.update(kw)
    with pytest.raises(QueryError, match=match):
        report(**args)


# ---------------------------------------------------------------- end to end on an index

def _shards(path, n_shards, width):
    return [np.fromfile(path / f"tokenized.{s}", dtype=f"<u{width}") for s in range(n_shards)]


def _oracle_hits(shards, ids):
    """Brute force: argmax (ties to the smallest id) of the naive ∞-gram ntd == ids[t]."""
    out = []
    for t in range(len(ids)):
        _, counts = naive_infgram(shards, list(ids[:t]))
        best = max(counts.values())
        out.append(min(k for k, c in counts.items() if c == best) == ids[t])
    return np.array(out)


CORPORA = {
    "random": ([list(np.random.default_rng(1).integers(0, 6, 40)) for _ in range(5)], 1, 2),
    "one token repeated": ([[3] * 300], 1, 1),
    "repeated block": ([[1, 2, 3, 4, 5] * 20, [1, 2, 3, 4, 5]], 2, 2),
    "prefix documents + empty": ([[4, 2, 4], [4, 2, 4, 1], [], [4, 2, 4, 1, 0, 0], [2]], 3, 4),
}


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_score_mix_fit_report_end_to_end(index_factory, name):
    docs, n_shards, width = CORPORA[name]
    path = index_factory(docs, width=width, shards=n_shards, vocab_size=8)
    eng = ig.open(path)
    rng = np.random.default_rng(7)
    query = np.concatenate([np.asarray(docs[0][:12], dtype=np.int64),
                            rng.integers(0, 8, 10), [4, 2, 4, 1, 3, 3, 3]])
    res = eng.score(query)
    # a "neural" model: add-one smoothed unigram over the index's documents
    flat = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs if len(d)])
    unigram = (np.bincount(flat, minlength=8) + 1) / (len(flat) + 8)
    p_nn = unigram[query]

    lam = fit(res.probs, p_nn, res.sparse)
    mixed = mix(res.probs, p_nn, res.sparse, lam.sparse, lam.dense)
    hits = argmax_hits(eng, query, res)
    r = report(res.probs, p_nn, res.sparse, res.effective_n, lam, hits=hits)

    assert r.ppl_interpolated == pytest.approx(math.exp(-np.mean(np.log(mixed))))
    assert r.ppl_interpolated <= r.ppl_neural * (1 + 1e-12)  # λ = 0 was available
    assert r.sparse_share == pytest.approx(res.sparse.mean())
    np.testing.assert_array_equal(hits, _oracle_hits(_shards(path, n_shards, width), query))
    assert sum(b.tokens for b in r.buckets) == len(query)
    # distributions: mixing the dense ∞-gram ntd keeps rows normalised
    p_inf_rows = eng.infgram_ntd_many([query[:t] for t in range(len(query))], dense=True)
    rows = mix(p_inf_rows, np.tile(unigram, (len(query), 1)), res.sparse, lam.sparse, lam.dense)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0)
    np.testing.assert_allclose(rows[np.arange(len(query)), query], mixed)


def test_argmax_hits_rejects_mismatched_result(index_factory):
    eng = ig.open(index_factory([[1, 2, 3]]))
    res = eng.score([1, 2, 3])
    with pytest.raises(QueryError, match="engine.score"):
        argmax_hits(eng, [1, 2], res)
