"""The fast BPE encoder: exactly sentencepiece's ids, or not used at all."""
import io
import logging
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from hypothesis import given, settings, strategies as st

from infinigram.bpe import BPEEncoder
from infinigram.native import normalize as norm_kernel
from infinigram.corpus import DocBatch
from infinigram.errors import TokenizerError
from infinigram.tokenizer import SentencePieceTokenizer, encode_stream, train_sentencepiece

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TEXT = [(STDLIB / n).read_text("utf-8") for n in ("bisect.py", "heapq.py", "colorsys.py")]
TEXT.append("Ünïcode: naïve café, 中文, emoji 😀, digits 1234567890.\tTabs\r\nand  runs   of  "
            "spaces.\n" * 20)
TEXT.append("Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ１２３, ﬁne ﬂow, ①②③ ㎏ ™ ½ Ⅻ, Straße ΣΑΣ, ｶﾞ\u3000x\n" * 10)
ADVERSARIAL = [
    "", " ", "  ", "\n", "\t", "a", "  leading", "trailing  ", "in   between", "\n\n\n\t\t  \n",
    "\t\tdef f(x):\r\n    return x  # done\n", "1234567890 3.14159 0x1F",
    "never seen: ℵ ∮ 𝔘 ᚠᛇᚻ ☃ 🐈‍⬛ \U0010FFFF", "\x00\x01\x7f\x80\x9f control", "a\u2028b\x0bc\x0c",
    "\u2581 itself, \u2581\u2581 twice, \u2581 a\u2581b", "x" * 5000, "word " * 2000,
    " " * 300 + "x", "é" * 100, "中文" * 50, "😀" * 30, "ab" * 1000, "\n" * 100,
    "ᚠᛇ", "ᚻᚠ x ᚠ", "\x01", "\x02\x01",  # unknown: a run is one <unk>, within a document
]
# what normalization changes: full-width and compatibility characters, ligatures,
# combining marks, odd whitespace (alone, in runs, leading, trailing), case
NORMALIZING = [
    "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ１２３！", "ﬁ ﬂ ﬃ ﬄ ligatures", "① ㎏ ™ ½ ² Ⅻ ㍿ ﷺ ℌ ℵ",
    "e\u0301 a\u0308 o\u0302\u0323 \u0301 alone at a word start, \u0301", "\u0301" * 20,
    "\u3000lead\u3000\u3000ing", "nb\u00a0sp \u2009thin \u200b zero \ufeff bom \u200d",
    "\u3000 \u00a0 \u2002\u2003 ", "trailing\u3000\u3000", " \u3000 x \u3000 ",
    "\r\n\x0b\x0c\x85\u2028\u2029 controls \x01\x1f\x7f", "CASE Straße ΣΑΣ İı ẞ Ǆǅǆ",
    "ｶﾞｷﾞ ﾊﾟ half-width, 가각 \u1100\u1161\u11a8 jamo",
    "\U0001d400\U0001d7ce \U0001F468\u200d\U0001F469",
    "\u2581 a\u2581 \u2581\u2581", "\x00 nul \x00\x00", "Ａ" * 500 + "\u3000" * 300,
    "\ufdfa" * 300 + "㍿" * 300,  # normalized, 6x longer than its UTF-8: the output grows
]
# odd characters as hypothesis draws them, mixed with any others
ODD = list(" \t\n\r\u3000\u00a0\u2009\u200b\ufeffＡｚ０！ﬁﬃ①㎏™½²Ⅻ\u0301\u0308\u0323éÅßΣİｶﾞ가"
           "\U0001d400😀\u2581\x00\x7fAbZ")


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
# dummy prefix; every built-in normalization rule (sentencepiece's defaults:
# extra whitespace removed, dummy prefix), spaces kept, a custom rule, no byte
# fallback (unknown characters as <unk>), and user-defined symbols that a rule
# would change
RULES = ("nmt_nfkc", "nfkc", "nmt_nfkc_cf", "nfkc_cf")
ELIGIBLE = {
    "frozen": dict(user_defined_symbols=["\n", "\t"], split_digits=True),
    "no-prefix": dict(add_dummy_prefix=False),
    **{rule: dict(normalization_rule_name=rule, remove_extra_whitespaces=True,
                  allow_whitespace_only_pieces=False) for rule in RULES},
    "identity-squeezed": dict(remove_extra_whitespaces=True),
    "nmt_nfkc-spaces-kept": dict(normalization_rule_name="nmt_nfkc"),
    "nfkc-no-prefix": dict(normalization_rule_name="nfkc", add_dummy_prefix=False,
                           remove_extra_whitespaces=True),
    "custom-rule": dict(normalization_rule_tsv="RULE", remove_extra_whitespaces=True),
    "no-byte-fallback": dict(byte_fallback=False, add_dummy_prefix=False),
    "nmt_nfkc-no-byte-fallback": dict(normalization_rule_name="nmt_nfkc", byte_fallback=False,
                                      remove_extra_whitespaces=True),
    "nmt_nfkc-frozen": dict(normalization_rule_name="nmt_nfkc", remove_extra_whitespaces=True,
                            user_defined_symbols=["\n", "\t", "Ａ", "\u3000"]),
}
INELIGIBLE = {
    "unigram": (dict(model_type="unigram"), "unigram model"),
    "char": (dict(model_type="char"), "char model"),
    "long-symbol": (dict(user_defined_symbols=["<tag>"]), "user-defined symbols longer"),
    "suffix-space": (dict(treat_whitespace_as_suffix=True), "whitespace as a suffix"),
}
# a custom rule: a character to a string with spaces, two characters to two,
# a letter to another
RULE = "FF21\t20 58 20\n66 69\t46 49\n41\t61\n"


@pytest.fixture(scope="module", params=[*ELIGIBLE, "ours"])
def model(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bpe") / "bpe.model"
    if request.param == "ours":
        train_sentencepiece(TEXT, 700, path, threads=2)  # the default: BPE
        return path
    options = dict(ELIGIBLE[request.param])
    if options.get("normalization_rule_tsv"):
        rule = path.with_suffix(".tsv")
        rule.write_text(RULE)
        options["normalization_rule_tsv"] = str(rule)
    return _train(path, **options)


@pytest.fixture(scope="module")
def pair(model):
    sp = spm.SentencePieceProcessor(model_file=str(model))
    enc, why = BPEEncoder.of(model.read_bytes(), sp)
    assert enc is not None and why == ""
    return sp, enc


def _same(sp, enc, texts):
    got = [g.tolist() for g in enc.encode_batch(texts)]
    want = sp.encode(texts, add_bos=False, add_eos=False)
    for text, g, w in zip(texts, got, want):
        assert g == w, (text[:80], g[:20], w[:20])


def test_adversarial_texts(pair):
    sp, enc = pair
    _same(sp, enc, ADVERSARIAL + NORMALIZING)
    _same(sp, enc, TEXT)
    for text in ADVERSARIAL + NORMALIZING:  # alone, not only in a batch
        _same(sp, enc, [text])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=60), max_size=6))
def test_any_text(pair, texts):
    _same(*pair, texts)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=" \t\n\u2581ab1é😀_.(", max_size=80), max_size=4))
def test_dense_whitespace_and_symbols(pair, texts):
    _same(*pair, texts)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from(ODD)),
                        max_size=60), max_size=6))
def test_text_that_normalization_changes(pair, texts):
    _same(*pair, texts)


def test_malformed_utf8_is_one_replacement_character_per_byte():
    """Sentencepiece's rule for bytes no str can hold: U+FFFD, one byte consumed."""
    data = np.frombuffer(b"a\xffb\xe2\x82 c\xed\xa0\x80\xef\xbf\xbd", dtype=np.uint8)
    none = (np.zeros(0, np.int64), np.zeros(1, np.uint32), np.zeros(1, np.int64), 0)
    cps, bounds = norm_kernel.normalize(data, np.array([0, data.size]), *none,
                                        np.zeros(1, np.uint8), True, True)
    assert bounds.tolist() == [0, cps.size]
    assert "".join(map(chr, cps)) == "\u2581a\ufffdb\ufffd\ufffd\u2581c" + "\ufffd" * 4


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
def test_other_models_keep_sentencepiece(name, tmp_path, caplog):
    options, reason = INELIGIBLE[name]
    path = _train(tmp_path / "m.model", **options)
    sp = spm.SentencePieceProcessor(model_file=str(path))
    enc, why = BPEEncoder.of(path.read_bytes(), sp)
    assert enc is None and reason in why
    tok = SentencePieceTokenizer(path, threads=2)
    texts = ADVERSARIAL + NORMALIZING
    with caplog.at_level(logging.WARNING):
        assert [a.tolist() for a in tok.encode_batch(texts)] == sp.encode(texts)
        batch = DocBatch(texts, ["{}"] * len(texts))
        streamed = [a.tolist() for _, ids in encode_stream(iter([batch]), tok, 2) for a in ids]
    assert streamed == sp.encode(texts)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: {why}, so sentencepiece's own (slower) encoder is used"]


def test_a_disagreement_on_a_probe_keeps_sentencepiece(model, monkeypatch, caplog):
    """Any probe text encoded differently: no fast encoder, one warning."""
    real = BPEEncoder.encode_batch
    monkeypatch.setattr(BPEEncoder, "encode_batch", lambda self, texts: [
        a[::-1] if t == "tab\there\n\nnew" else a for t, a in zip(texts, real(self, texts))])
    tok = SentencePieceTokenizer(model, threads=2)
    with caplog.at_level(logging.WARNING):
        assert tok.bpe_encoder() is None and tok.bpe_encoder() is None
    assert [r.getMessage() for r in caplog.records] == [
        f"{model}: the fast BPE encoder disagrees with it on 'tab\\there\\n\\nnew', so "
        "sentencepiece's own (slower) encoder is used"]
    texts = ["tab\there\n\nnew"] + NORMALIZING
    want = spm.SentencePieceProcessor(model_file=str(model)).encode(texts)
    assert [a.tolist() for a in tok.encode_batch(texts)] == want


def test_unreadable_model_bytes_give_none():
    sp = spm.SentencePieceProcessor()
    assert BPEEncoder.of(b"\xff\xff\xff", sp) == (None, "its model file could not be parsed "
                                                     "(IndexError)")
