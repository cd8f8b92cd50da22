"""The fast byte-level BPE encoder: exactly the tokenizers library's ids, or not used at all."""
import json
import sys
import sysconfig
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

pytest.importorskip("tokenizers", reason="the [hf] extra (tokenizers) is not installed")
from tokenizers import Tokenizer as RustTokenizer, models, normalizers, pre_tokenizers  # noqa: E402

from infinigram.corpus import DocBatch  # noqa: E402
from infinigram.hfbpe import HFBPEEncoder, _classes  # noqa: E402
from infinigram.native import hfbpe as kernel  # noqa: E402
from infinigram.tokenizer import HFTokenizer, encode_stream  # noqa: E402
from test_hf import _bpe  # noqa: E402
from test_tokenizer import SAMPLE, TRICKY  # noqa: E402

STDLIB = Path(sysconfig.get_paths()["stdlib"])
EDGES = [
    "", " ", "  ", "   ", "a", " a", "  a", "   a", "a ", "a  ", "a \n", "a  \n  b", " \n", "\n ",
    "x  y   z    w", "\t a", "\t\ta", "\n\nb", "\r\n", "a\r\nb\r\n\r\n", " \r\n x",
    "it's they're we've I'm you'll he'd don't", "'s 'S ''s x'' ' s 'll'LL 're've'd'm'tx",
    " 's .'s a'sb 1's", "e\u0301 a\u0308 \u0301 alone \u0301\u0301x", "\u0301 a",
    "\U0001F600\U0001F408\u200d\u2B1B \U0001d400\U0001d7ce \U0010FFFF \U0002f800",
    "\u00a0a \u00a0 a\u00a0\u00a0b \u2028x\u2029 \u3000y\u3000\u3000", "a\x0bb \x0c\x0bc",
    "\x1c\x1d\x1e\x1f a\x1cb \x1c a \x85 b\x85c", "\u0661\u0662\u0663 \u0966\u0967 \u00b2\u00bd "
    "\u2160\u2161 \u3007 x\u0661 1a a1 ١x", "\x00 \x01\x7f\x80\x9f", "\u200b\u200d\ufeff zero",
    "    return x  # c\n\n\n    ", "\ufb01 \u2122 \u00e9t\u00e9 \u65e5\u672c\u8a9e \uff21\uff11",
    "word " * 50, " " * 300 + "x", "x" * 3000, "\n" * 40 + " ", ". . .  ..  ...",
]
# what hypothesis draws from, mixed with any other characters
ODD = list(" \t\n\r\x0b\x0c\x1c\x1f\x85\u00a0\u2028\u3000\u200b'sStlmdrev1\u0661\u00b2"
           "\u2160aZ\u00e9\u0301\u4e2d\U0001F600\U0001d400.,!-_\x00\x7f")


def _ids(rust: RustTokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in rust.encode_batch_fast(texts, add_special_tokens=False)]


def _ours(rust: RustTokenizer, tmp_path: Path, name="tokenizer.json") -> HFTokenizer:
    path = tmp_path / name
    rust.save(str(path))
    return HFTokenizer(path)


@pytest.fixture(scope="module", params=[False, True], ids=["no-prefix", "prefix"])
def pair(request, tmp_path_factory):
    rust = _bpe(vocab_size=900)
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=request.param)
    ours = _ours(rust, tmp_path_factory.mktemp("hfbpe"))
    assert ours.fallback_reason == "" and ours.fast_encoder() is not None
    return rust, ours


def test_equal_on_samples_and_edge_cases(pair):
    rust, ours = pair
    texts = SAMPLE + TRICKY + EDGES
    assert [a.tolist() for a in ours.encode_batch(texts)] == _ids(rust, texts)
    assert [ours.encode(t).tolist() for t in EDGES] == _ids(rust, EDGES)


def test_equal_on_the_whole_stdlib(pair):
    """Every stdlib file without the prefix space; every 4th with it (the
    prefix only changes a text's first word, and tokenizers is slow here)."""
    rust, ours = pair
    files = sorted(STDLIB.rglob("*.py"))[::4 if rust.pre_tokenizer.add_prefix_space else 1]
    texts = [p.read_text("utf-8", errors="replace") for p in files]
    assert len(texts) > 500
    for k in range(0, len(texts), 200):  # batches: the word cache carries over
        got = ours.encode_batch(texts[k:k + 200])
        want = _ids(rust, texts[k:k + 200])
        for i, (g, w) in enumerate(zip(got, want)):
            assert g.dtype == np.uint32 and g.tolist() == w, texts[k + i][:80]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.sampled_from(ODD) | st.characters(blacklist_categories=["Cs"]),
                        max_size=40), min_size=1, max_size=5))
def test_equal_on_random_text(pair, texts):
    rust, ours = pair
    assert [a.tolist() for a in ours.encode_batch(texts)] == _ids(rust, texts)


def test_classes_match_the_pattern_on_every_code_point():
    """Each code point's class as the tokenizers library's pre-tokenizer
    (Oniguruma) sees it: it joins a letter, a number, a punctuation mark or
    a tab in one piece exactly when it has that class. Unassigned code
    points (in Python's Unicode version) are unknown: their texts are left
    to tokenizers."""
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    cls = _classes()
    lead = {kernel.LETTER: "a", kernel.NUMBER: "1", kernel.OTHER: ".", kernel.SPACE: "\t"}
    wrong = []
    for c in range(sys.maxunicode + 1):
        k = int(cls[c])
        if k == kernel.UNKNOWN or 0xD800 <= c < 0xE000:  # unassigned, surrogates
            continue
        joins = {j: len(pre.pre_tokenize_str(s + chr(c))) == 1 for j, s in lead.items()}
        if not joins[k] or sum(joins.values()) != 1:
            wrong.append((hex(c), unicodedata.category(chr(c)), k, joins))
    assert wrong == []
    assert cls[0x1C89] == cls[0x10FFFF] == kernel.UNKNOWN  # Cn in Unicode 14, a letter in 16


def test_unassigned_code_points_go_to_tokenizers(pair):
    rust, ours = pair
    texts = ["a\u1c89b x", "plain", " \u1c89", "\U0010FFFF", "x\u0378y z"]
    assert [a.tolist() for a in ours.encode_batch(texts)] == _ids(rust, texts)
    assert ours.fast_encoder().encode_batch(texts)[1] == [0, 2, 3, 4]


def test_added_tokens_in_the_text(tmp_path):
    """<s> and </s> are added tokens: texts holding one go to tokenizers."""
    rust = _bpe()
    ours = _ours(rust, tmp_path)
    fast = ours.fast_encoder()
    texts = ["a <s> b", "plain", "x</s>", "<s", "s>", "<s><s>", "def f(): pass"]
    assert [a.tolist() for a in ours.encode_batch(texts)] == _ids(rust, texts)
    assert fast.encode_batch(texts)[1] == [0, 2, 5]
    assert _ids(rust, ["<s>"]) == [[0]]


def _wide(tmp_path: Path, n=70_000) -> Path:
    """A byte-level BPE tokenizer.json whose merges make ids above 65,535."""
    from infinigram.hfbpe import _byte_symbols
    vocab = {s: i for i, s in enumerate(_byte_symbols())}
    vocab |= {f"<pad{i}>": i for i in range(256, n - 3)}
    merges = [["a", "b"], ["ab", "c"], ["\u0120", "ab"]]
    vocab |= {"ab": n - 3, "abc": n - 2, "\u0120ab": n - 1}
    spec = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
            "normalizer": None, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                 "use_regex": True}]},
            "post_processor": None, "decoder": None,
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": vocab, "merges": merges}}
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec))
    return path


def test_a_vocabulary_above_65535(tmp_path):
    path = _wide(tmp_path)
    ours, rust = HFTokenizer(path), RustTokenizer.from_file(str(path))
    assert ours.fallback_reason == ""
    texts = ["abc ab abcab", "ab", "xabc"]
    got = ours.encode_batch(texts)
    assert [a.tolist() for a in got] == _ids(rust, texts)
    assert got[0].dtype == np.uint32 and got[0].tolist()[:2] == [69_998, 69_999]


@pytest.mark.parametrize("change, why", [
    (lambda t: setattr(t, "normalizer", normalizers.NFKC()), "it has a normalizer"),
    (lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.ByteLevel(use_regex=False)),
     "not ByteLevel with GPT-2's pattern"),
    (lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.Whitespace()),
     "not ByteLevel with GPT-2's pattern"),
    (lambda t: t.enable_truncation(8), "it has a truncation"),
    (lambda t: setattr(t.model, "dropout", 0.5), "its BPE model has dropout 0.5"),
    (lambda t: setattr(t.model, "byte_fallback", True), "its BPE model has byte_fallback set"),
])
def test_unsupported_configurations_fall_back(tmp_path, change, why):
    rust = _bpe()
    change(rust)
    ours = _ours(rust, tmp_path)
    assert ours.fast_encoder() is None and why in ours.fallback_reason
    if "dropout" not in why:  # dropout is random
        texts = SAMPLE[:2] + EDGES
        assert [a.tolist() for a in ours.encode_batch(texts)] == _ids(rust, texts)


def test_other_models_and_disagreement_fall_back(tmp_path):
    word = RustTokenizer(models.WordLevel({"a": 0, "b": 1}, unk_token="a"))
    assert "its model is WordLevel, not BPE" in _ours(word, tmp_path, "w.json").fallback_reason
    rust = _bpe()
    spec = json.loads(rust.to_str())
    spec["model"]["merges"] = spec["model"]["merges"][::-1]  # ranks reversed: tokenizers and we
    path = tmp_path / "r.json"                                # still agree
    path.write_text(json.dumps(spec))
    assert HFTokenizer(path).fallback_reason == ""
    enc = HFBPEEncoder.of(json.dumps(spec), rust)  # but not with the original's ids
    assert enc[0] is None and "disagrees with it on" in enc[1]


def test_encode_stream_runs_the_fast_encoder_on_every_core(pair):
    rust, ours = pair
    assert ours.stream_workers is None and ours.unit_chars == 1 << 16
    batches = [DocBatch(SAMPLE + EDGES, [])] * 3
    got = [ids for _, out in encode_stream(iter(batches), ours, threads=2) for ids in out]
    assert [a.tolist() for a in got] == _ids(rust, SAMPLE + EDGES) * 3
