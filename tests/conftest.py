"""Shared test helpers: ``make_index`` writes a valid index without the builder."""
import json

import numpy as np
import pytest

from infinigram import format as fmt
from naive import doubling_suffix_array, naive_suffix_array, with_separators


def _write(path, data: bytes) -> None:
    path.write_bytes(data)


def make_index(tmp_path, docs, width=2, vocab_size=None, shards=1, metadata=None,
               tokenizer="none"):
    """Write an index of ``docs`` (lists of ids) under a fresh directory in
    ``tmp_path`` and return its path. Documents are split across ``shards``
    in order; ``metadata`` is one dict per document (or None);
    ``tokenizer`` is "none", "bytes", or a sentencepiece .model path."""
    k = 0
    while (tmp_path / f"index{k}").exists():
        k += 1
    directory = tmp_path / f"index{k}"
    directory.mkdir()
    if vocab_size is None:
        top = max((max(d) for d in docs if len(d)), default=0)
        vocab_size = 255 if tokenizer == "bytes" else int(top) + 1
    spec = {"kind": "none"} if tokenizer == "none" else {"kind": "bytes"}
    if tokenizer not in ("none", "bytes"):
        model = directory / fmt.TOKENIZER_FILE
        model.write_bytes(open(tokenizer, "rb").read())
        spec = {"kind": "sentencepiece", "file": fmt.TOKENIZER_FILE, "sha256": fmt.sha256_file(model)}
    infos = []
    bounds = np.linspace(0, len(docs), shards + 1).round().astype(int)
    for s in range(shards):
        part = docs[bounds[s]:bounds[s + 1]]
        tokens = with_separators(part, width)
        sa = naive_suffix_array(tokens) if len(tokens) <= 3000 else doubling_suffix_array(tokens)
        pointer = fmt.pointer_width(tokens.nbytes)
        off = (sa * width).astype(np.uint64)
        table = ((off[:, None] >> (8 * np.arange(pointer, dtype=np.uint64))) & 0xFF).astype(np.uint8)
        seps = np.flatnonzero(tokens == fmt.separator(width)).astype("<u8") * width
        files = {"tokenized": tokens.tobytes(), "table": table.tobytes(), "offset": seps.tobytes()}
        if metadata is not None:
            lines = [(json.dumps(m) + "\n").encode() for m in metadata[bounds[s]:bounds[s + 1]]]
            files["metadata"] = b"".join(lines)
            files["metaoff"] = np.concatenate(
                [[0], np.cumsum([len(x) for x in lines])[:-1]]).astype("<u8").tobytes() \
                if lines else b""
        record = {}
        for kind, data in files.items():
            path = fmt.shard_path(directory, kind, s)
            _write(path, data)
            record[path.name] = {"size": len(data), "sha256": fmt.sha256_file(path)}
        infos.append(fmt.ShardInfo(tokens=len(tokens), docs=len(part), files=record))
    fmt.write_manifest(directory, fmt.Manifest(
        token_width=width, vocab_size=vocab_size, tokenizer=spec, shards=tuple(infos),
        library="infinigram tests"))
    return directory


@pytest.fixture
def index_factory(tmp_path):
    """``make_index`` bound to this test's tmp_path."""
    def make(docs, **kw):
        return make_index(tmp_path, docs, **kw)
    return make
