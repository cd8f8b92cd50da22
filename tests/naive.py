"""Brute-force oracles: plain Python scans of the token array.

Slow by design and obviously right; every kernel and query is checked
against these on small corpora.
"""
import numpy as np


def naive_suffix_array(tokens: np.ndarray) -> np.ndarray:
    """Token indexes of all suffixes, sorted by the suffixes' little-endian bytes
    (a shorter suffix before its extensions)."""
    raw = np.ascontiguousarray(tokens).astype(tokens.dtype.newbyteorder("<")).tobytes()
    w = tokens.dtype.itemsize
    return np.array(sorted(range(len(tokens)), key=lambda i: raw[i * w:]), dtype=np.int64)


def with_separators(docs, width: int) -> np.ndarray:
    """The tokenized.{s} array for a list of documents (lists of ids)."""
    sep = (1 << (8 * width)) - 1
    out = []
    for d in docs:
        out.append(sep)
        out.extend(int(t) for t in d)
    return np.array(out, dtype=np.dtype(f"<u{width}"))
