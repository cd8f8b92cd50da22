"""Hugging Face tokenizers (tokenizer.json): encoding, the manifest, builds, errors."""
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("tokenizers", reason="the [hf] extra (tokenizers) is not installed")
from tokenizers import Tokenizer as RustTokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

import infinigram as ig  # noqa: E402
from infinigram import format as fmt  # noqa: E402
from infinigram.cli import main  # noqa: E402
from infinigram.errors import TokenizerError  # noqa: E402
from infinigram.tokenizer import HFTokenizer, load_tokenizer, resolve_tokenizer  # noqa: E402
from naive import naive_count  # noqa: E402
from test_tokenizer import SAMPLE, TRICKY  # noqa: E402


def _bpe(vocab_size=600, bos=False) -> RustTokenizer:
    """A byte-level BPE tokenizer trained here (decode(encode(x)) == x)."""
    tok = RustTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(SAMPLE, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<s>", "</s>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if bos:  # a post-processor that adds BOS/EOS, as many models' tokenizers do
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 1)])
    return tok


@pytest.fixture(scope="module")
def tok_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    _bpe(bos=True).save(str(path))
    return path


def _wide_vocab(path, n=70_000):
    """A word-level tokenizer.json of ``n`` words w0..w{n-1} (ids above 65,535)."""
    tok = RustTokenizer(models.WordLevel({f"w{i}": i for i in range(n)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.save(str(path))
    return path


def test_round_trips_and_no_special_tokens(tok_json):
    tok = HFTokenizer(tok_json)
    rust = RustTokenizer.from_file(str(tok_json))
    assert rust.encode("x y").ids[0] == 0  # the file's post-processor adds BOS ...
    for text in TRICKY + SAMPLE[:2]:
        ids = tok.encode(text)
        assert ids.dtype == np.uint32 and tok.decode(ids) == text
        assert ids.tolist() == rust.encode(text, add_special_tokens=False).ids  # ... we do not
    batch = tok.encode_batch(TRICKY)
    assert [b.tolist() for b in batch] == [tok.encode(t).tolist() for t in TRICKY]
    assert tok.vocab_size == rust.get_vocab_size(with_added_tokens=True) == 600
    assert tok.spec() == {"kind": "hf", "file": "tokenizer.json",
                          "sha256": fmt.sha256_file(tok_json)}


def test_resolve_and_load(tok_json, tmp_path):
    assert isinstance(resolve_tokenizer(tok_json), HFTokenizer)
    assert isinstance(resolve_tokenizer(str(tok_json.parent)), HFTokenizer)  # its directory
    other = tmp_path / "my-tok.json"
    shutil.copy(tok_json, other)
    assert resolve_tokenizer(other).sha256 == HFTokenizer(tok_json).sha256
    spec = HFTokenizer(tok_json).spec()
    assert load_tokenizer(spec, tok_json.parent).encode("abc").tolist() == \
        HFTokenizer(tok_json).encode("abc").tolist()
    with pytest.raises(TokenizerError, match=r"sha256 .* manifest records 0+"):
        load_tokenizer({**spec, "sha256": "0" * 64}, tok_json.parent)


@pytest.mark.parametrize("content", [b"{not json", b'{"model": {"type": "Nope"}}', b"\xff\xfe"])
def test_a_tokenizer_json_that_does_not_parse(tmp_path, content):
    bad = tmp_path / "tokenizer.json"
    bad.write_bytes(content)
    with pytest.raises(TokenizerError) as e:
        resolve_tokenizer(bad)
    msg = str(e.value)
    assert "is not a valid Hugging Face tokenizer.json" in msg and "\n" not in msg
    (tmp_path / "c.jsonl").write_text('{"text": "a"}\n')
    res = CliRunner().invoke(main, ["build", str(tmp_path / "c.jsonl"), "-o",
                                    str(tmp_path / "idx"), "--tokenizer", str(tmp_path)])
    assert res.exit_code == 1 and res.output.startswith("error: ") and \
        len(res.output.strip().splitlines()) == 1 and "tokenizer.json" in res.output
    assert not (tmp_path / "idx").exists()


def test_build_from_tokenizer_json(tok_json, tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in SAMPLE + TRICKY))
    res = CliRunner().invoke(main, ["build", str(src), "-o", str(tmp_path / "idx"),
                                    "--tokenizer", str(tok_json.parent), "--quiet"])
    assert res.exit_code == 0, res.output
    idx = tmp_path / "idx"
    m = fmt.read_manifest(idx)
    assert m.token_width == 2 and m.vocab_size == 600
    assert m.tokenizer == {"kind": "hf", "file": "tokenizer.json",
                           "sha256": fmt.sha256_file(tok_json)}
    assert (idx / "tokenizer.json").read_bytes() == tok_json.read_bytes()
    eng = ig.open(idx)
    tok = HFTokenizer(tok_json)
    docs = [tok.encode(t) for t in SAMPLE + TRICKY]
    assert eng.n_tokens == sum(map(len, docs)) and eng.n_docs == len(docs)
    assert [eng.get_doc(i).tokens.tolist() for i in range(len(docs))] == [d.tolist() for d in docs]
    assert eng.get_doc(0).text == SAMPLE[0]
    tokens = [np.asarray(s.tokens) for s in eng.shards]
    for text in ["return", "import", "emoji"]:
        assert eng.count(text) == naive_count(tokens, tok.encode(text)) > 0, text
    assert eng.tokenizer.decode(eng.tokenize("return x")) == "return x"
    assert ig.verify(idx).ok
    (idx / "tokenizer.json").write_bytes(tok_json.read_bytes().replace(b'"<s>"', b'"<S>"'))
    report = ig.verify(idx)
    assert not report.ok and any("tokenizer.json: sha256 differs" in p and
                                 "restore the tokenizer" in p for p in report.problems)


def test_a_vocabulary_above_65535_builds_u32(tmp_path):
    tok_path = _wide_vocab(tmp_path / "tokenizer.json")
    rng = np.random.default_rng(5)
    words = [0, 1, 255, 256, 65534, 65535, 65536, 69999]
    docs = [" ".join(f"w{w}" for w in rng.choice(words, rng.integers(1, 40))) for _ in range(50)]
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    idx = ig.build([src], tmp_path / "idx", tokenizer=tok_path, quiet=True)
    m = fmt.read_manifest(idx)
    assert m.token_width == 4 and m.vocab_size == 70_000 and m.tokenizer["kind"] == "hf"
    eng = ig.open(idx)
    tokens = [np.asarray(s.tokens) for s in eng.shards]
    assert tokens[0].dtype == np.dtype("<u4") and int(tokens[0][tokens[0] != 2**32 - 1].max()) >= 65536
    for q in ["w65536", "w65535 w65536", "w69999 w0", "w256 w65534 w1"]:
        ids = [int(w[1:]) for w in q.split()]
        assert eng.tokenize(q).tolist() == ids
        assert eng.count(q) == naive_count(tokens, ids), q
    assert eng.tokenizer.decode([65536, 3]) == "w65536 w3"


def test_pre_tokenized_ids_with_their_tokenizer(tok_json, tmp_path):
    """Ids made by a tokenizer, indexed with it: text queries work; an id
    beyond its vocabulary is refused with the document and the fix."""
    tok = HFTokenizer(tok_json)
    docs = [tok.encode(t) for t in SAMPLE]
    flat = np.concatenate([np.append(d, 2**32 - 1) for d in docs]).astype(np.uint32)
    flat.tofile(tmp_path / "ids.u32")
    idx = ig.build([tmp_path / "ids.u32"], tmp_path / "idx", tokenizer=tok_json, quiet=True)
    m = fmt.read_manifest(idx)
    assert (m.token_width, m.vocab_size, m.tokenizer["kind"]) == (2, 600, "hf")
    eng = ig.open(idx)
    tokens = [np.asarray(s.tokens) for s in eng.shards]
    assert eng.count("return") == naive_count(tokens, tok.encode("return")) > 0
    assert eng.get_doc(1).text == SAMPLE[1]
    flat[5] = 600
    flat.tofile(tmp_path / "bad.u32")
    with pytest.raises(ig.CorpusError, match=r"bad\.u32 document 0: token id 600 is not below the "
                       r"tokenizer's vocabulary size 600; give the tokenizer the ids were made"):
        ig.build([tmp_path / "bad.u32"], tmp_path / "idx2", tokenizer=tok_json, quiet=True)
