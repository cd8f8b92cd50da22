"""The fast BPE encoder: exactly sentencepiece's ids, or not used at all."""
import io
import sysconfig
from pathlib import Path

import pytest
import sentencepiece as spm
from hypothesis import given, settings, strategies as st

from infinigram.bpe import BPEEncoder
from infinigram.corpus import DocBatch
from infinigram.errors import TokenizerError
from infinigram.tokenizer import SentencePieceTokenizer, encode_stream, train_sentencepiece

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TEXT = [(STDLIB / n).read_text("utf-8") for n in ("bisect.py", "heapq.py", "colorsys.py")]
TEXT.append("Ünïcode: naïve café, 中文, emoji 😀, digits 1234567890.\tTabs\r\nand  runs   of  "
            "spaces.\n" * 20)
ADVERSARIAL = [
    "", " ", "  ", "\n", "\t", "a", "  leading", "trailing  ", "in   between", "\n\n\n\t\t  \n",
    "\t\tdef f(x):\r\n    return x  # done\n", "1234567890 3.14159 0x1F",
    "never seen: ℵ ∮ 𝔘 ᚠᛇᚻ ☃ 🐈‍⬛ \U0010FFFF", "\x00\x01\x7f\x80\x9f control", "a\u2028b\x0bc\x0c",
    "\u2581 itself, \u2581\u2581 twice, \u2581 a\u2581b", "x" * 5000, "word " * 2000,
    " " * 300 + "x", "é" * 100, "中文" * 50, "😀" * 30, "ab" * 1000, "\n" * 100,
]


def _train(path: Path, **options) -> Path:
    opts = dict(model_type="bpe", vocab_size=700, byte_fallback=True, character_coverage=1.0,
                normalization_rule_name="identity", remove_extra_whitespaces=False,
                allow_whitespace_only_pieces=True, num_threads=2, minloglevel=2)
    opts.update(options)
    model = io.BytesIO()
    lines = [line for t in TEXT for line in t.splitlines(keepends=True)]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, **opts)
    path.write_bytes(model.getvalue())
    return path


# the bench's settings (dummy prefix, frozen newline and tab, digits split), no
# dummy prefix, and our trainer's default
ELIGIBLE = {
    "frozen": dict(user_defined_symbols=["\n", "\t"], split_digits=True),
    "no-prefix": dict(add_dummy_prefix=False),
}
INELIGIBLE = {
    "unigram": dict(model_type="unigram"),
    "char": dict(model_type="char"),
    "nfkc": dict(normalization_rule_name="nmt_nfkc"),
    "extra-spaces": dict(remove_extra_whitespaces=True),
    "no-byte-fallback": dict(byte_fallback=False),
    "long-symbol": dict(user_defined_symbols=["<tag>"]),
    "suffix-space": dict(treat_whitespace_as_suffix=True),
}


@pytest.fixture(scope="module", params=[*ELIGIBLE, "ours"])
def model(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bpe") / "bpe.model"
    if request.param == "ours":
        train_sentencepiece(TEXT, 700, path, threads=2)  # the default: BPE
        return path
    return _train(path, **ELIGIBLE[request.param])


@pytest.fixture(scope="module")
def pair(model):
    sp = spm.SentencePieceProcessor(model_file=str(model))
    enc = BPEEncoder.of(model.read_bytes(), sp)
    assert enc is not None
    return sp, enc


def _same(sp, enc, texts):
    got = [g.tolist() for g in enc.encode_batch(texts)]
    want = sp.encode(texts, add_bos=False, add_eos=False)
    for text, g, w in zip(texts, got, want):
        assert g == w, (text[:80], g[:20], w[:20])


def test_adversarial_texts(pair):
    sp, enc = pair
    _same(sp, enc, ADVERSARIAL)
    _same(sp, enc, TEXT)
    for text in ADVERSARIAL:  # alone, not only in a batch
        _same(sp, enc, [text])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=60), max_size=6))
def test_any_text(pair, texts):
    _same(*pair, texts)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=" \t\n\u2581ab1é😀_.(", max_size=80), max_size=4))
def test_dense_whitespace_and_symbols(pair, texts):
    _same(*pair, texts)


def test_tokenizer_takes_the_fast_path(model, pair):
    sp, _ = pair
    tok = SentencePieceTokenizer(model, threads=2)
    assert tok.bpe_encoder() is not None
    texts = ADVERSARIAL + TEXT
    assert [a.tolist() for a in tok.encode_batch(texts)] == sp.encode(texts)
    batches = [DocBatch(texts[:10], ["{}"] * 10), DocBatch(texts[10:], ["{}"] * (len(texts) - 10))]
    streamed = [a.tolist() for _, ids in encode_stream(iter(batches), tok, 2) for a in ids]
    assert streamed == sp.encode(texts)
    with pytest.raises(TokenizerError, match="lone surrogate"):
        tok.encode_batch(["fine", "bad \ud800 text"])
    with pytest.raises(TokenizerError, match="pass a str"):
        tok.encode_batch(["fine", 42])


@pytest.mark.parametrize("name", INELIGIBLE)
def test_other_models_keep_sentencepiece(name, tmp_path):
    path = _train(tmp_path / "m.model", **INELIGIBLE[name])
    sp = spm.SentencePieceProcessor(model_file=str(path))
    assert BPEEncoder.of(path.read_bytes(), sp) is None
    tok = SentencePieceTokenizer(path, threads=2)
    assert [a.tolist() for a in tok.encode_batch(ADVERSARIAL)] == sp.encode(ADVERSARIAL)
    batch = DocBatch(ADVERSARIAL, ["{}"] * len(ADVERSARIAL))
    streamed = [a.tolist() for _, ids in encode_stream(iter([batch]), tok, 2) for a in ids]
    assert streamed == sp.encode(ADVERSARIAL)


def test_unreadable_model_bytes_give_none():
    sp = spm.SentencePieceProcessor()
    assert BPEEncoder.of(b"\xff\xff\xff", sp) is None
