"""The whole interpolation protocol with a real model: a randomly initialised
GPT-2 (from a config, no download) generating through ``transformers``'
``generate()`` with :class:`InfiniGramLogitsProcessor`, over an index built
with a byte-level BPE tokenizer.json trained here."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is the optional 'torch' extra")
transformers = pytest.importorskip("transformers", reason="transformers is in the test extra")
pytest.importorskip("tokenizers", reason="the [hf] extra (tokenizers) is not installed")

import infinigram as ig  # noqa: E402
from infinigram.torch import InfiniGramLogitsProcessor  # noqa: E402
from naive import naive_infgram  # noqa: E402
from test_hf import _bpe  # noqa: E402
from test_tokenizer import SAMPLE  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(engine, model) sharing one vocabulary: the tokenizer.json is trained on
    the corpus, the index built with it, the model sized to it."""
    root = tmp_path_factory.mktemp("gpt2")
    tok_path = root / "tokenizer.json"
    _bpe(vocab_size=400).save(str(tok_path))
    corpus = root / "corpus"
    corpus.mkdir()
    for i, text in enumerate(SAMPLE):  # a .txt file is one document
        (corpus / f"{i}.txt").write_text(text, encoding="utf-8")
    ig.build([corpus], root / "idx", tokenizer=tok_path, quiet=True)
    eng = ig.open(root / "idx")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=eng.vocab_size, n_positions=128, n_embd=32,
                                     n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(config).eval()
    return eng, model


def _p_inf(eng, context: list[int]) -> np.ndarray:
    """The brute-force ∞-gram next-token distribution of ``context``."""
    nxt = naive_infgram([np.asarray(s.tokens) for s in eng.shards], context)[1]
    p = np.zeros(eng.vocab_size)
    p[list(nxt)] = np.array(list(nxt.values())) / sum(nxt.values())
    return p


def _generate(model, eng, prompt: list[int], lam_sparse, lam_dense, steps: int):
    out = model.generate(
        torch.tensor([prompt]), max_new_tokens=steps, do_sample=False, num_beams=1,
        logits_processor=transformers.LogitsProcessorList(
            [InfiniGramLogitsProcessor(eng, lam_sparse, lam_dense)]),
        pad_token_id=0, eos_token_id=None, output_scores=True, return_dict_in_generate=True)
    return out.sequences[0].tolist(), out.scores


@pytest.mark.parametrize("sparse", [True, False])
def test_generate_scores_are_the_mixture(setup, sparse):
    """Every step's processed scores are log(λ·P∞ + (1-λ)·softmax(model
    logits)), with P∞ from the oracle and the logits from a separate forward
    pass; greedy decoding picks their argmax. The first prompt has one
    continuation in the corpus (λ_sparse), the second many (λ_dense)."""
    eng, model = setup
    prompt = eng.tokenize(SAMPLE[3])[:6].tolist() if sparse else eng.tokenize("\n").tolist()
    assert ((_p_inf(eng, prompt) > 0).sum() == 1) == sparse
    seq, scores = _generate(model, eng, prompt, 0.8, 0.4, steps=5)
    assert len(seq) == len(prompt) + 5 and len(scores) == 5
    for step, processed in enumerate(scores):
        context = seq[:len(prompt) + step]
        with torch.no_grad():
            logits = model(torch.tensor([context])).logits[0, -1].double()
        p_inf = _p_inf(eng, context)
        lam = 0.8 if (p_inf > 0).sum() == 1 else 0.4
        want = lam * p_inf + (1 - lam) * torch.softmax(logits, 0).numpy()
        np.testing.assert_allclose(processed[0].double().exp().numpy(), want,
                                   rtol=1e-4, atol=1e-6)
        assert seq[len(context)] == int(np.argmax(want))


def test_pure_infgram_generation_continues_the_corpus(setup):
    """With λ = 1 the random model has no say: greedy generation from a
    prompt that occurs once in the corpus copies the text that follows it."""
    eng, model = setup
    doc = eng.tokenize(SAMPLE[0]).tolist()
    start = next(i for i in range(len(doc) - 20)
                 if eng.count(doc[i:i + 8]) == 1)  # a prompt found once
    seq, _ = _generate(model, eng, doc[start:start + 8], 1.0, 1.0, steps=10)
    assert seq == doc[start:start + 18]
    assert eng.decode(seq) in SAMPLE[0]
