"""InfiniGramLogitsProcessor: the ∞-gram mixture as log-probabilities for generation."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is the optional 'torch' extra; "
                            "pip install torch==2.13.0 to run these tests")

from infinigram import engine as ig  # noqa: E402
from infinigram.errors import QueryError  # noqa: E402
from infinigram.interpolate import mix  # noqa: E402
from infinigram.torch import InfiniGramLogitsProcessor  # noqa: E402
from naive import naive_infgram  # noqa: E402

DOCS = [[1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 0], [5, 5, 5, 2], [2, 3, 4, 5, 6, 7, 1, 1]]
VOCAB = 9


@pytest.fixture
def eng(index_factory):
    return ig.open(index_factory(DOCS, vocab_size=VOCAB, shards=2))


def test_matches_numpy_mixture(eng):
    ids = torch.tensor([[1, 2, 3], [5, 5, 5], [4, 2, 3]])
    scores = torch.randn(3, VOCAB, generator=torch.Generator().manual_seed(0))
    out = InfiniGramLogitsProcessor(eng, 0.7, 0.2)(ids, scores)
    assert out.dtype == scores.dtype and out.shape == scores.shape
    shards = [np.asarray(s.tokens) for s in eng.shards]
    p_inf = np.zeros((len(ids), VOCAB))
    for row, context in zip(p_inf, ids.tolist()):  # the brute-force ∞-gram
        nxt = naive_infgram(shards, context)[1]
        row[list(nxt)] = np.array(list(nxt.values())) / sum(nxt.values())
    sparse = (p_inf > 0).sum(axis=1) == 1
    assert sparse.tolist() == [False, True, False]  # [1 2 3] -> {4, 0}; [5 5 5] -> {2}
    want = mix(p_inf, torch.softmax(scores.double(), 1).numpy(), sparse, 0.7, 0.2)
    np.testing.assert_allclose(out.exp().numpy(), want, rtol=1e-6, atol=1e-7)
    exact = InfiniGramLogitsProcessor(eng, 0.7, 0.2)(ids, scores.double())
    np.testing.assert_allclose(exact.exp().numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(out.exp().sum(1).numpy(), 1.0, rtol=1e-6)


def test_extreme_lambdas(eng):
    ids = torch.tensor([[2, 3, 4]])
    scores = torch.randn(1, VOCAB, dtype=torch.float64)
    neural = InfiniGramLogitsProcessor(eng, 0.0, 0.0)(ids, scores)
    torch.testing.assert_close(neural, torch.log_softmax(scores, 1))
    pure = InfiniGramLogitsProcessor(eng, 1.0, 1.0)(ids, scores)
    # [2 3 4] is followed only by 5: log 1 there, -inf elsewhere
    assert pure[0, 5] == 0.0
    assert torch.isneginf(pure[0, torch.arange(VOCAB) != 5]).all()


def test_greedy_generation_follows_the_corpus(eng):
    proc = InfiniGramLogitsProcessor(eng, 1.0, 0.9)
    ids = torch.tensor([[2, 3, 4]])
    for _ in range(4):
        scores = torch.zeros(1, VOCAB)  # an uninformed model
        nxt = proc(ids, scores).argmax(dim=1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
    assert ids[0].tolist() == [2, 3, 4, 5, 6, 7, 1]


def test_max_context_truncates(eng):
    ids = torch.tensor([[5, 5, 1, 2, 3]])
    scores = torch.randn(1, VOCAB)
    short = InfiniGramLogitsProcessor(eng, 0.6, 0.4, max_context=1)(ids, scores)
    same = InfiniGramLogitsProcessor(eng, 0.6, 0.4)(ids[:, -1:], scores)
    torch.testing.assert_close(short, same)
    none = InfiniGramLogitsProcessor(eng, 0.6, 0.4, max_context=0)(ids, scores)
    unigram = InfiniGramLogitsProcessor(eng, 0.6, 0.4)(ids[:, :0], scores)
    torch.testing.assert_close(none, unigram)


def test_vocab_mismatch_is_a_clear_error(eng):
    with pytest.raises(QueryError, match=r"scores 12 tokens but the index has vocab_size 9"):
        InfiniGramLogitsProcessor(eng, 0.5, 0.5)(torch.tensor([[1]]), torch.zeros(1, 12))


@pytest.mark.parametrize("ids, scores, match", [
    (torch.tensor([1, 2]), torch.zeros(1, VOCAB), "input_ids"),
    (torch.tensor([[1.0, 2.0]]), torch.zeros(1, VOCAB), "input_ids"),
    (torch.tensor([[1, 2]]), torch.zeros(2, VOCAB), "one row per sequence"),
    (torch.tensor([[1, 2]]), torch.zeros(VOCAB), "scores has shape"),
])
def test_bad_inputs(eng, ids, scores, match):
    with pytest.raises(QueryError, match=match):
        InfiniGramLogitsProcessor(eng, 0.5, 0.5)(ids, scores)


def test_bad_settings(eng):
    with pytest.raises(QueryError, match="lam_sparse"):
        InfiniGramLogitsProcessor(eng, 1.5, 0.5)
    with pytest.raises(QueryError, match="max_context"):
        InfiniGramLogitsProcessor(eng, 0.5, 0.5, max_context=-1)


def test_ids_outside_the_index_vocabulary(eng):
    with pytest.raises(QueryError):
        InfiniGramLogitsProcessor(eng, 0.5, 0.5)(torch.tensor([[VOCAB + 3]]),
                                                 torch.zeros(1, VOCAB))
