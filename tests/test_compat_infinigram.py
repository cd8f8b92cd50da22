"""Our suffix-array table is byte-identical to infini-gram's, and its engine reads ours."""
import resource
import subprocess
import sys

import numpy as np
import pytest

from infinigram import format as fmt
from infinigram.native.ptrs import pack_pointers
from infinigram.native.sort import suffix_array
from naive import naive_count, with_separators

pytest.importorskip("infini_gram", reason="infini-gram (optional benchmark peer) is not installed")


def _corpora():
    """u16 corpora, each under 100 KB (infini-gram's parts overlap by 100000 bytes)."""
    rng = np.random.default_rng(11)
    block = [int(v) for v in rng.integers(0, 300, 50)]
    zipf = np.minimum(rng.zipf(1.2, 30000), 60000)
    return {
        "random_docs": [rng.integers(0, 200, rng.integers(0, 300)) for _ in range(100)],
        "zipf_docs": [zipf[i:i + 500] for i in range(0, len(zipf), 500)],
        "one_token_repeated": [[7] * 20000],
        "repeated_block": [block * 200],
        "prefix_and_empty_docs": [block[:k] for k in range(50, -1, -1)] * 10 + [[], []],
    }


CORPORA = _corpora()


def _write_shard(directory, tokens):
    width = tokens.itemsize
    directory.mkdir()
    (directory / "tokenized.0").write_bytes(tokens.tobytes())
    offsets = np.flatnonzero(tokens == fmt.separator(width)).astype("<u8") * width
    (directory / "offset.0").write_bytes(offsets.tobytes())


def _our_table(tokens):
    pointer = fmt.pointer_width(tokens.nbytes)
    out = np.empty(len(tokens) * pointer, np.uint8)
    pack_pointers(suffix_array(tokens), tokens.itemsize, pointer, out)
    return out.tobytes()


@pytest.mark.parametrize("name", list(CORPORA))
def test_table_identical_to_infinigram_builder(tmp_path, name):
    """One job (--cpus 1): with two, every part of a file under 100000 bytes
    (infini-gram's part overlap) reaches the end of the file and the merge
    writes the second half's suffixes twice."""
    tokens = with_separators(CORPORA[name], 2)
    assert tokens.nbytes < 100_000
    save = tmp_path / "save"
    _write_shard(save, tokens)
    (tmp_path / "empty").mkdir()
    ulimit = min(1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    run = subprocess.run(
        [sys.executable, "-m", "infini_gram.indexing", "--data_dir", str(tmp_path / "empty"),
         "--save_dir", str(save), "--mem", "1", "--cpus", "1", "--token_dtype", "u16",
         "--ulimit", str(ulimit)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (save / "table.0").read_bytes() == _our_table(tokens)


@pytest.mark.parametrize("name", list(CORPORA))
def test_infinigram_engine_reads_our_table(tmp_path, name):
    from infini_gram.engine import InfiniGramEngine

    tokens = with_separators(CORPORA[name], 2)
    index = tmp_path / "ours"
    _write_shard(index, tokens)
    (index / "table.0").write_bytes(_our_table(tokens))
    # its u16 engine takes vocab_size < 2**16 and requires eos_token_id < vocab_size;
    # count() does not use eos_token_id
    engine = InfiniGramEngine(index_dir=str(index), eos_token_id=65534, vocab_size=65535,
                              token_dtype="u16")
    rng = np.random.default_rng(3)
    real = tokens[tokens != fmt.separator(2)]
    queries = [[int(real[0])], [int(real[-1])], [123], [7] * 50, [7] * 19999, [7] * 20001]
    for _ in range(30):
        i = int(rng.integers(0, len(tokens) - 5))
        queries.append([int(t) for t in tokens[i:i + int(rng.integers(1, 6))]
                        if t != fmt.separator(2)] or [1])
    for q in queries:
        assert engine.count(input_ids=q)["count"] == naive_count([tokens], q), q


def test_infinigram_engine_reads_our_u32_table_and_we_read_its_layout(tmp_path):
    """A u32 shard with ids above 65,535 (infini-gram's own u32 builder asks
    for 32 GiB, so only we build one): its engine counts on our table as the
    oracle does, and we open the same directory, manifest-less, with
    token_width=4."""
    import infinigram as ig
    from infini_gram.engine import InfiniGramEngine

    rng = np.random.default_rng(8)
    alphabet = [0, 1, 255, 256, 65535, 65536, 65537, 16777216, 4294967294]
    docs = [rng.choice(alphabet, rng.integers(0, 60)) for _ in range(200)]
    tokens = with_separators(docs, 4)
    index = tmp_path / "u32"
    _write_shard(index, tokens)
    (index / "table.0").write_bytes(_our_table(tokens))
    theirs = InfiniGramEngine(index_dir=str(index), eos_token_id=0, vocab_size=2**32 - 1,
                              token_dtype="u32")
    ours = ig.open(index, token_width=4)
    queries = [[65536], [65535, 65536], [4294967294], [16777216, 0], [1, 1, 1], [7]]
    for _ in range(30):
        i = int(rng.integers(0, len(tokens) - 5))
        queries.append([int(t) for t in tokens[i:i + int(rng.integers(1, 6))]
                        if t != fmt.separator(4)] or [1])
    for q in queries:
        expected = naive_count([tokens], q)
        assert theirs.count(input_ids=q)["count"] == expected == ours.count(q), q
