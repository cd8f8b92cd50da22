"""Public arguments: every integer parameter against every numpy integer type
and the extremes, the API's exceptions, and the shared parsers of infinigram.args."""
import collections
import dataclasses
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import infinigram as ig
from infinigram import args, builder, corpus, interpolate
from infinigram.errors import ArgumentError, InfinigramError, QueryError, TokenizerError
from infinigram.tokenizer import ByteTokenizer, train_sentencepiece

TEXTS = ["the cat sat on the mat", "the cat ran", "a dog sat on the cat", "the end"]
TYPES = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
EXTREMES = (0, 1, -1, 2, 3, 5, 7, 100, 255, 256, 2**31 - 1, 2**32, sys.maxsize, 2**63,
            2**64, -2**63, -2**64)
CASES = collections.Counter()  # (class, "tried" | "passed") -> count, reported at the end


@pytest.fixture(scope="module")
def eng(tmp_path_factory):
    from conftest import make_index
    docs = [list(t.encode()) for t in TEXTS]
    return ig.open(make_index(tmp_path_factory.mktemp("args"), docs, width=1, shards=2,
                              tokenizer="bytes"))


@pytest.fixture(scope="module", autouse=True)
def report_cases():
    yield
    print("\ncases tried/passed:", {k: (CASES[k, "tried"], CASES[k, "passed"])
                                    for k in sorted({k for k, _ in CASES})})


@st.composite
def typed_ints(draw):
    """(value of some integer type, the Python int it equals)."""
    kind = draw(st.sampled_from(TYPES + (int, bool)))
    if kind is bool:
        v = draw(st.booleans())
        return v, int(v)
    if kind is int:
        v = draw(st.sampled_from(EXTREMES) | st.integers())
        return v, v
    info = np.iinfo(kind)
    fits = [x for x in EXTREMES + (int(info.max), int(info.min)) if info.min <= x <= info.max]
    v = draw(st.sampled_from(fits) | st.integers(int(info.min), int(info.max)))
    return kind(v), v


def _canon(r):
    """A comparable form of a result (NaN equal to NaN)."""
    if dataclasses.is_dataclass(r):
        return type(r).__name__, [_canon(getattr(r, f.name)) for f in dataclasses.fields(r)]
    if isinstance(r, np.ndarray):
        return r.dtype.str, repr(r.tolist())
    if isinstance(r, (list, tuple)):
        return [_canon(x) for x in r]
    return repr(r)


def _outcome(call):
    """("ok", result) or ("error", class); any exception that is not one of
    ours (TypeError, OverflowError, a Numba error...) fails the test."""
    try:
        return "ok", _canon(call())
    except InfinigramError as e:
        assert "\n" not in str(e)
        return "error", type(e).__name__


def _check(name, call, typed, plain):
    """``call(typed)`` gives what ``call(plain)`` gives; a bool is refused
    with a ValueError; ``plain`` itself never fails other than cleanly."""
    CASES[name, "tried"] += 1
    want = _outcome(lambda: call(plain))
    if isinstance(typed, (bool, np.bool_)):
        with pytest.raises(ValueError):
            call(typed)
    else:
        assert _outcome(lambda: call(typed)) == want
    if want[0] == "error":
        with pytest.raises(InfinigramError) as info:
            call(plain)
        assert isinstance(info.value, ValueError) or "already exists" in str(info.value) \
            or "not a directory" in str(info.value)
    CASES[name, "passed"] += 1


def _engine_calls(eng):
    return {
        "count ids": lambda v: eng.count([116, v]),
        "count_many": lambda v: eng.count_many([[v], [116, 104]]),
        "find": lambda v: eng.find([v]),
        "prob next_id": lambda v: eng.prob("the c", v),
        "ntd prompt": lambda v: eng.ntd([116, 104, v]),
        "infgram_prob next_id": lambda v: eng.infgram_prob([116, 104], v),
        "infgram_ntd_many": lambda v: eng.infgram_ntd_many([[v]], dense=True),
        "score max_context": lambda v: eng.score(list(b"the cat sat"), max_context=v),
        "score_many max_context": lambda v: eng.score_many([list(b"a dog")], max_context=v),
        "search_docs limit": lambda v: eng.search_docs("the", limit=v),
        "get_doc doc_ix": lambda v: eng.get_doc(v),
        "get_doc window": lambda v: eng.get_doc(2, window=v, around=6),
        "get_doc around": lambda v: eng.get_doc(2, window=3, around=v),
        "count_cnf window": lambda v: eng.count_cnf([["the"], ["sat", "ran"]], window=v),
        "decode": lambda v: eng.decode([104, v]),
        "tokenizer decode": lambda v: ByteTokenizer().decode([v]),
    }


@pytest.mark.parametrize("name", sorted(_engine_calls(None)))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=typed_ints())
def test_engine_integer_parameters(eng, name, pair):
    _check(name, _engine_calls(eng)[name], *pair)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=typed_ints())
def test_query_arrays_of_every_integer_type(eng, pair):
    """An array of the value's type answers as the list of the same Python ints."""
    typed, plain = pair
    if isinstance(typed, (bool, int)):
        return
    a = np.array([typed, typed], dtype=type(typed))
    _check("count/ntd array", lambda v: (eng.count(v), eng.ntd(v)), a, [plain, plain])
    _check("count_many 2-D array", eng.count_many, a.reshape(1, 2), [[plain, plain]])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=typed_ints())
def test_build_and_tokenizer_integer_parameters(tmp_path, pair):
    typed, plain = pair
    src = tmp_path / "c.jsonl"
    src.write_text('{"text": "abc"}\n')
    out = tmp_path / "exists"  # every check passes first: a good value meets "already exists"
    out.mkdir(exist_ok=True)
    calls = {
        "build shard_tokens": lambda v: ig.build([src], out, tokenizer="bytes", shard_tokens=v),
        "build vocab_size": lambda v: ig.build([src], out, vocab_size=v),
        "build threads": lambda v: ig.build([src], out, tokenizer="bytes", threads=v),
        "build max_memory": lambda v: ig.build([src], out, tokenizer="bytes", max_memory=v),
        "build train_sample_bytes": lambda v: ig.build([src], out, vocab_size=300,
                                                       train_sample_bytes=v),
        "index_tables token_width": lambda v: ig.index_tables(tmp_path / "no", token_width=v),
        "index_tables max_memory": lambda v: ig.index_tables(tmp_path / "no", max_memory=v),
        "train vocab_size": lambda v: train_sentencepiece([], v, tmp_path / "m.model"),
        "train sample_bytes": lambda v: train_sentencepiece([], 300, tmp_path / "m.model",
                                                            sample_bytes=v),
        "iter_batches batch_bytes": lambda v: [b.texts for b in corpus.iter_batches(
            [src], batch_bytes=v)],
        "open token_width": lambda v: ig.open(tmp_path / "no", token_width=v).n_docs,
    }
    for name, call in calls.items():
        _check(name, call, typed, plain)


def test_index_tables_vocab_size_of_every_type(tmp_path, eng):
    import shutil
    d = tmp_path / "idx"
    shutil.copytree(eng.path, d)  # complete: index_tables checks its arguments, builds nothing
    for kind in TYPES + (int,):
        for v in (0, 1, 254, 255, 256, np.iinfo(kind).max if kind is not int else 2**64):
            if kind is not int and not np.iinfo(kind).min <= v <= np.iinfo(kind).max:
                continue
            _check("index_tables vocab_size", lambda x: ig.index_tables(d, vocab_size=x),
                   kind(v), int(v))


def test_report_effective_n_of_every_type():
    p = np.array([0.5, 0.25])
    for kind in TYPES:
        for v in (0, 1, 3, min(int(np.iinfo(kind).max), sys.maxsize)):
            _check("report effective_n", lambda e: interpolate.report(
                p, p, [True, False], e, interpolate.Lambdas(0.5, 0.5)),
                np.array([v, 1], dtype=kind), [v, 1])
    top = interpolate.report(p, p, [True, False], np.array([2**64 - 1, 1], np.uint64),
                             interpolate.Lambdas(0.5, 0.5))
    assert (top.buckets[0].tokens, top.buckets[-1].tokens) == (1, 1)  # no wraparound


def test_torch_adapter_takes_numpy_integers(eng):
    from infinigram.torch import InfiniGramLogitsProcessor
    import torch
    ids, scores = torch.tensor([list(b"the c")]), torch.zeros(1, eng.vocab_size)
    for kind in TYPES:
        for v in (0, 2, int(np.iinfo(kind).max)):
            _check("torch max_context",
                   lambda m: InfiniGramLogitsProcessor(eng, 0.5, 0.5, max_context=m)(ids, scores),
                   kind(v), v)
    for bad in (-1, True, 1.5, 2**64):
        with pytest.raises(QueryError, match="max_context"):
            InfiniGramLogitsProcessor(eng, 0.5, 0.5, max_context=bad)


# ---- the repros -----------------------------------------------------
def test_wide_windows_do_not_wrap(eng):
    cnf = [["the"], ["sat"]]
    assert eng.count_cnf(cnf, window=sys.maxsize) == eng.count_cnf(cnf, window=10**9) > 0
    assert eng.count_cnf(cnf, window=np.uint64(2**63 - 1)) == eng.count_cnf(cnf, window=10**9)
    d = eng.get_doc(0, window=np.uint64(10), around=np.uint64(5))
    assert d.tokens.tolist() == list(TEXTS[0][:15].encode())
    d = eng.get_doc(0, window=np.int8(100), around=np.int8(20))
    assert d.tokens.tolist() == list(TEXTS[0].encode())  # one document, no separator
    with pytest.raises(QueryError, match=r"around=100 is past the end of document 0"):
        eng.get_doc(0, window=np.int8(100), around=np.int8(100))
    with pytest.raises(QueryError, match=r"max_context=18446744073709551616 is out of range"):
        eng.score([1, 2], max_context=2**64)
    assert eng.score(list(b"the cat"), max_context=sys.maxsize).probs.tolist() == \
        eng.score(list(b"the cat")).probs.tolist()


def test_api_exceptions(eng, tmp_path):
    cases = [
        (lambda: eng.decode([-1]), TokenizerError, r"decode id -1 at position 0"),
        (lambda: eng.decode([1.5]), TokenizerError, r"decode element 1\.5 at position 0"),
        (lambda: eng.decode([2**70]), TokenizerError, r"decode id 1180591620717411303424"),
        (lambda: eng.infgram_ntd_many(5), QueryError, r"infgram_ntd_many takes a list"),
        (lambda: eng.score_many(None), QueryError, r"score_many takes a list"),
        (lambda: eng.count_many(7), QueryError, r"count_many takes a list"),
        (lambda: ig.open(None), ArgumentError, r"path=None is not a path"),
        (lambda: ig.open(tmp_path, token_width="2"), ArgumentError, r"token_width='2'"),
        (lambda: ig.build([tmp_path], None, tokenizer="bytes"), ArgumentError, "output=None"),
        (lambda: ig.build([tmp_path], tmp_path / "o", tokenizer="bytes", max_memory="8X"),
         ArgumentError, r"max_memory='8X' is not a positive size"),
        (lambda: ig.build([tmp_path], tmp_path / "o", tokenizer="bytes", max_memory=0),
         ArgumentError, r"max_memory=0"),
        (lambda: ig.build([tmp_path], tmp_path / "o", tokenizer="bytes", text_field=3),
         ArgumentError, r"text_field=3"),
        (lambda: ig.build([tmp_path], tmp_path / "o", tokenizer="bytes", text_suffixes=[1]),
         ArgumentError, r"text_suffixes=\[1\]"),
        (lambda: interpolate.mix([0.5], [0.5], [True], "x", 0.5), QueryError, "lam_sparse = 'x'"),
        (lambda: interpolate.mix([0.5], [0.5], [True], None, 0.5), QueryError, "lam_sparse = None"),
    ]
    for call, error, match in cases:
        CASES["API exceptions", "tried"] += 1
        with pytest.raises(error, match=match) as info:
            call()
        assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
        CASES["API exceptions", "passed"] += 1


def test_max_memory_strings_and_text_suffix_string(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "src" / "y").write_text("not read\n")  # a name made of the suffix's characters
    eng = ig.open(ig.build([tmp_path / "src"], tmp_path / "o", tokenizer="bytes",
                           text_suffixes=".py", max_memory="8G", quiet=True))
    assert eng.n_docs == 1 and eng.get_doc(0).text == "x = 1\n"
    assert eng.manifest.build["max_memory"] == 8 << 30 and eng.manifest.build["text_suffixes"] == [".py"]


# ---- the parsers ------------------------------------------------------------
@pytest.mark.parametrize("text, want", [("4096", 4096), ("512M", 512 << 20), ("2g", 2 << 30),
                                        ("1.5G", 3 << 29), (" 100k ", 102400), ("64KiB", 65536),
                                        ("8GB", 8 << 30), (".5k", 512), (7, 7), (np.uint16(9), 9)])
def test_size_bytes(text, want):
    assert args.size_bytes("max_memory", text) == want


@pytest.mark.parametrize("text", ["0", "infk", "nan", "-1", "1e3", "", "k", "2P", "0.0001k",
                                  "99999999999999T", 0, -5, True, 1.5, None, 2**63])
def test_size_bytes_rejects(text):
    with pytest.raises(ArgumentError, match=r"max_memory=.* is not a positive size"):
        args.size_bytes("max_memory", text)


def test_integer_messages_name_value_and_range():
    with pytest.raises(QueryError, match=r"^limit=-1 is out of range; pass an int in \[0, 2\*\*63 - 1\]$"):
        args.integer("limit", -1)
    with pytest.raises(ArgumentError, match=r"^n=True is not an integer; pass an int in \[1, 4\]$"):
        args.integer("n", True, low=1, high=4, error=ArgumentError)
    assert args.integer("n", np.uint64(2**63 - 1)) == 2**63 - 1
    assert type(args.integer("n", np.int8(-3), low=-5)) is int
    assert args.optional_integer("n", None) is None
    assert args.strings("s", ".py") == (".py",) and args.strings("s", [".a", ".b"]) == (".a", ".b")


def test_decode_through_the_checked_path():
    tok = ByteTokenizer()
    assert tok.decode(np.array([104, 105], dtype=np.uint64)) == "hi"
    assert tok.decode((np.int8(104), 105)) == "hi" and tok.decode([]) == ""
    for bad in ([True], [None], np.array([1.0]), [[104]], np.array([[104]])):
        with pytest.raises(TokenizerError):
            tok.decode(bad)
