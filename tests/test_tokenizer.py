"""Tokenizers: round trips, model loading and checks, training, encode_stream."""
import shutil
import sysconfig
import threading
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from hypothesis import given, settings, strategies as st

from infinigram.corpus import DocBatch, iter_batches
from infinigram.errors import CorpusError, TokenizerError
from infinigram.format import TOKENIZER_FILE, sha256_file
from infinigram.tokenizer import (ByteTokenizer, NoTokenizer, SentencePieceTokenizer, Tokenizer,
                                  _sentences, encode_stream, load_tokenizer, resolve_tokenizer,
                                  train_sentencepiece)

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SAMPLE = [(STDLIB / n).read_text("utf-8") for n in
          ("bisect.py", "heapq.py", "keyword.py", "colorsys.py", "abc.py")]
SAMPLE.append("Ünïcode text: naïve café, 中文, emoji 😀. Tabs\tand\r\nCRLF lines.\n" * 20)

TRICKY = ["", " ", "  leading spaces", "trailing  ", "\n\n\n", "\t\tdef f(x):\r\n    return x\n",
          "emoji 😀 中文 ünïcode never seen: ℵ ∮ 𝔘", "\x00\x01\x7f control", "a\u2028b\x0bc",
          "x" * 10000, "word " * 3000]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "tok.model"
    train_sentencepiece(SAMPLE, 500, path, threads=2)
    return path


@pytest.fixture(scope="module")
def sp(model) -> SentencePieceTokenizer:
    return SentencePieceTokenizer(model, threads=2)


# ---- bytes ----------------------------------------------------------------

def test_byte_tokenizer_round_trip_and_spec():
    tok = ByteTokenizer()
    for text in TRICKY:
        ids = tok.encode(text)
        assert ids.dtype == np.uint32 and tok.decode(ids) == text
        assert ids.tolist() == list(text.encode())
    assert tok.kind == "bytes" and tok.vocab_size == 255 and tok.spec() == {"kind": "bytes"}
    assert [a.tolist() for a in tok.encode_batch(["ab", ""])] == [[97, 98], []]


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_byte_tokenizer_never_emits_separator(text):
    tok = ByteTokenizer()
    try:
        ids = tok.encode(text)
    except TokenizerError:  # lone surrogates have no UTF-8 encoding
        return
    assert ids.size == 0 or ids.max() < 255
    assert tok.decode(ids) == text


def test_byte_decode_replaces_broken_utf8_and_rejects_separator():
    tok = ByteTokenizer()
    assert tok.decode([0x68, 0xC3]) == "h\ufffd"
    with pytest.raises(TokenizerError, match=r"id 255 at position 1 is outside the vocabulary"):
        tok.decode([1, 255])
    with pytest.raises(TokenizerError, match="flat sequence of integer ids"):
        tok.decode([[1, 2]])
    with pytest.raises(TokenizerError, match="flat sequence of integer ids"):
        tok.decode([1.5])


def test_lone_surrogate_and_non_str_are_refused(sp):
    for tok in (ByteTokenizer(), sp):
        with pytest.raises(TokenizerError, match="lone surrogate"):
            tok.encode("a\ud800b")
        with pytest.raises(TokenizerError, match="lone surrogate"):
            tok.encode_batch(["ok", "a\ud800b"])
        with pytest.raises(TokenizerError, match="pass a str"):
            tok.encode(5)


def test_no_tokenizer():
    tok = load_tokenizer({"kind": "none"}, ".")
    assert isinstance(tok, NoTokenizer) and tok.kind == "none" and tok.spec() == {"kind": "none"}
    with pytest.raises(TokenizerError, match="query it with token ids"):
        tok.encode("text")
    with pytest.raises(TokenizerError, match="no tokenizer"):
        tok.decode([1])


# ---- sentencepiece ----------------------------------------------------------

def test_sentencepiece_round_trips(sp):
    assert sp.kind == "sentencepiece" and sp.vocab_size == 500
    for text in TRICKY + SAMPLE:
        ids = sp.encode(text)
        assert ids.dtype == np.uint32 and sp.decode(ids) == text
        assert sp.decode(ids.tolist()) == text
        assert ids.size == 0 or ids.max() < sp.vocab_size
    assert sp._sp.unk_id() not in sp.encode(TRICKY[6]).tolist()  # byte fallback, no <unk>
    assert len(sp.encode(SAMPLE[0])) < len(SAMPLE[0]) * 0.6  # it learned pieces


@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\u2581")))
def test_sentencepiece_round_trip_any_text(sp, text):
    """Any text but U+2581, sentencepiece's own whitespace mark, which it
    decodes as a space (sentencepiece itself does: '\u2581' -> ' ')."""
    assert sp.decode(sp.encode(text)) == text


def test_encode_batch_matches_encode(sp, model):
    """Every path of encode_batch gives sentencepiece's own ids: the fast BPE
    encoder (which ignores ``threads``), and without it sentencepiece on the
    tokenizer's pool (threads=None) or on 1 and 2 threads of its own."""
    texts = TRICKY + SAMPLE + [""] * 3
    want = spm.SentencePieceProcessor(model_file=str(model)).encode(texts)
    slow = SentencePieceTokenizer(model, threads=2)
    slow._bpe = None  # no fast encoder: the threads decide the path
    assert sp.bpe_encoder() is not None
    for tok, threads in [(sp, None), (slow, None), (slow, 1), (slow, 2)]:
        out = tok.encode_batch(texts, threads=threads)
        assert len(out) == len(texts)
        for a, w in zip(out, want):
            assert a.dtype == np.uint32 and a.tolist() == w, threads
    assert sp.encode_batch([]) == [] and slow.encode_batch([], threads=2) == []


def test_no_bos_eos_even_if_model_has_them(tmp_path):
    prefix = tmp_path / "be"
    spm.SentencePieceTrainer.train(sentence_iterator=iter("".join(SAMPLE).splitlines()),
                                   model_prefix=str(prefix), vocab_size=200, minloglevel=2)
    tok = SentencePieceTokenizer(f"{prefix}.model")
    bos, eos = tok._sp.bos_id(), tok._sp.eos_id()
    assert bos >= 0 and eos >= 0
    for ids in [tok.encode("def f(): pass"), *tok.encode_batch(["def f(): pass", "x"])]:
        assert bos not in ids.tolist() and eos not in ids.tolist()


def test_decode_out_of_range(sp):
    with pytest.raises(TokenizerError, match=r"id 500 at position 0 is outside the vocabulary \[0, 500\)"):
        sp.decode([500])
    with pytest.raises(TokenizerError, match=r"id -1 at position 2"):
        sp.decode(np.array([1, 2, -1]))


def test_spec_load_and_sha(sp, model, tmp_path):
    spec = sp.spec()
    assert spec == {"kind": "sentencepiece", "file": TOKENIZER_FILE, "sha256": sha256_file(model)}
    shutil.copy(model, tmp_path / TOKENIZER_FILE)
    tok = load_tokenizer(spec, tmp_path)
    assert np.array_equal(tok.encode(SAMPLE[1]), sp.encode(SAMPLE[1]))
    with pytest.raises(TokenizerError, match=r"sha256 .* manifest records 0+.*rebuild the index"):
        load_tokenizer({**spec, "sha256": "0" * 64}, tmp_path)
    with pytest.raises(TokenizerError, match=r"unknown tokenizer entry .*'bytes', 'sentencepiece'"):
        load_tokenizer({"kind": "wordpiece"}, tmp_path)
    assert isinstance(load_tokenizer({"kind": "bytes"}, tmp_path), ByteTokenizer)


def test_missing_and_bad_model(tmp_path):
    spec = {"kind": "sentencepiece", "file": TOKENIZER_FILE, "sha256": "0" * 64}
    with pytest.raises(TokenizerError, match=r"cannot read sentencepiece model .*tokenizer\.model"):
        load_tokenizer(spec, tmp_path)
    (tmp_path / TOKENIZER_FILE).write_bytes(b"this is not a model")
    with pytest.raises(TokenizerError, match=r"tokenizer\.model is not a valid sentencepiece model"):
        load_tokenizer(spec, tmp_path)
    with pytest.raises(TokenizerError, match="is not a valid sentencepiece model"):
        resolve_tokenizer(tmp_path / TOKENIZER_FILE)
    with pytest.raises(TokenizerError, match=r"'nope\.model' is neither 'bytes' nor an existing"):
        resolve_tokenizer("nope.model")
    with pytest.raises(TokenizerError, match="cannot read sentencepiece model"):
        SentencePieceTokenizer(tmp_path / "absent.model")


def test_truncated_and_garbled_model(model, tmp_path):
    """One-line errors that name the file and the fix, wherever it is cut."""
    data = model.read_bytes()
    bad = tmp_path / "bad.model"
    for cut in (1, 2, 10, len(data) // 3, len(data) // 2, len(data) - 1):
        bad.write_bytes(data[:cut])
        with pytest.raises(TokenizerError, match=r"bad\.model is not a valid sentencepiece model "
                           r"\(.+\): it is truncated or damaged; give a \.model file") as e:
            resolve_tokenizer(bad)
        assert "\n" not in str(e.value)
    # sentencepiece names a bad byte piece in an error text that is no longer UTF-8
    assert data.count(b"<0x41>") == 1
    bad.write_bytes(data.replace(b"<0x41>", b"<0x4\x97>"))
    with pytest.raises(TokenizerError, match=r"bad\.model is not a valid sentencepiece model "
                       r"\(garbled\): it is truncated or damaged"):
        resolve_tokenizer(bad)


def test_resolve_tokenizer(sp, model):
    assert resolve_tokenizer(sp) is sp
    assert isinstance(resolve_tokenizer("bytes"), ByteTokenizer)
    assert isinstance(resolve_tokenizer(None), NoTokenizer)
    assert isinstance(resolve_tokenizer("none"), NoTokenizer)
    tok = resolve_tokenizer(str(model), threads=1)
    assert isinstance(tok, SentencePieceTokenizer) and tok.threads == 1
    assert tok.sha256 == sp.sha256
    with pytest.raises(TokenizerError, match="is not understood"):
        resolve_tokenizer(42)


# ---- training ---------------------------------------------------------------

def test_training_errors(tmp_path):
    with pytest.raises(TokenizerError, match=r"vocab_size 50000 is too large .* at most \d+; lower vocab_size or train on more text"):
        train_sentencepiece(SAMPLE, 50000, tmp_path / "m.model")
    with pytest.raises(TokenizerError, match=r"vocab_size 100 is too small.*at least \d+; raise vocab_size"):
        train_sentencepiece(SAMPLE, 100, tmp_path / "m.model")
    with pytest.raises(TokenizerError, match="sample is empty"):
        train_sentencepiece(["", ""], 500, tmp_path / "m.model")
    for bad in (0, -5, 1.5, "8000", True):
        with pytest.raises(TokenizerError, match="vocab_size=.* (is not an integer|is out of range)"):
            train_sentencepiece(SAMPLE, bad, tmp_path / "m.model")
    assert not (tmp_path / "m.model").exists()


def test_training_sentences_keep_every_character():
    texts = ["short\nlines\n", "y" * 10000 + "\nafter", "a\n" * 5000, ""]
    out = list(_sentences(texts, 1 << 30))
    assert "".join(out) == "".join(texts)
    assert max(map(len, out)) <= 4096
    assert "".join(_sentences(["abcdef", "ghi"], 4)) == "abcd"  # stops at the sample size


def test_training_on_long_lines_and_sample(tmp_path):
    texts = ["z" * 50000 + " end", *SAMPLE]  # a line far over sentencepiece's limit
    tok = train_sentencepiece(iter(texts), 400, tmp_path / "m.model", sample_bytes=60000, threads=1)
    assert tok.vocab_size == 400 and (tmp_path / "m.model").is_file()
    assert tok.decode(tok.encode(texts[0])) == texts[0]
    assert any(set(tok._sp.id_to_piece(i)) == {"z"} and len(tok._sp.id_to_piece(i)) > 1
               for i in range(tok.vocab_size))  # the long line was trained on


# ---- encode_stream ------------------------------------------------------------

def make_batches(n=12):
    docs = TRICKY + SAMPLE
    return [DocBatch([docs[(i * 3 + j) % len(docs)] for j in range(i % 4)],
                     [f'{{"b":{i},"j":{j}}}' for j in range(i % 4)]) for i in range(n)]


@pytest.mark.parametrize("threads", [None, 1, 2])
def test_encode_stream_equals_per_document_encode(sp, threads):
    batches = make_batches()
    for tok in (sp, ByteTokenizer()):
        got = list(encode_stream(iter(batches), tok, threads=threads, prefetch=1))
        assert [b for b, _ in got] == batches  # same order, same objects
        for batch, ids in got:
            assert len(ids) == len(batch.texts)
            for a, t in zip(ids, batch.texts):
                assert np.array_equal(a, tok.encode(t))


def test_encode_stream_over_corpus_files(sp, tmp_path):
    for i, text in enumerate(SAMPLE):
        (tmp_path / f"{i}.txt").write_text(text)
    out = list(encode_stream(iter_batches(tmp_path, batch_bytes=5000), sp))
    texts = [t for b, _ in out for t in b.texts]
    assert sorted(texts) == sorted(SAMPLE)
    assert all(np.array_equal(a, sp.encode(t)) for b, ids in out for a, t in zip(ids, b.texts))


def test_encode_stream_raises_after_earlier_batches(sp):
    def batches():
        yield DocBatch(["a"], ["{}"])
        yield DocBatch(["b"], ["{}"])
        raise CorpusError("bad file x.jsonl line 3")

    it = encode_stream(batches(), sp)
    assert [b.texts for b, _ in (next(it), next(it))] == [["a"], ["b"]]
    with pytest.raises(CorpusError, match="x.jsonl line 3"):
        next(it)


def test_encode_stream_encoding_error_propagates(sp):
    with pytest.raises(TokenizerError, match="lone surrogate"):
        list(encode_stream(iter([DocBatch(["ok"], ["{}"]), DocBatch(["\ud800"], ["{}"])]), sp))


def test_encode_stream_stops_workers_when_closed(sp):
    pulled = []

    def endless():
        i = 0
        while True:
            pulled.append(i)
            yield DocBatch([f"doc {i}"], ["{}"])
            i += 1

    before = threading.active_count()
    it = encode_stream(endless(), sp, prefetch=2)
    next(it)
    it.close()
    assert threading.active_count() == before
    assert len(pulled) <= 8  # bounded read-ahead


def test_tokenizer_base_is_the_protocol(sp):
    for tok in (sp, ByteTokenizer(), NoTokenizer()):
        assert isinstance(tok, Tokenizer)
