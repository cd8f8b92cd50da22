"""A faster, exact encoder for sentencepiece BPE models (``native.bpe``).

:meth:`BPEEncoder.of` reads the model file itself (protobuf fields, no
protobuf package) and returns an encoder only for a model whose encoding it
reproduces: BPE, byte fallback, no normalization map, spaces escaped, no
whitespace-as-suffix, no unused pieces, user-defined symbols only single
characters, every character of a piece a piece itself. It then checks the
encoder against sentencepiece on probe texts. Any other model (unigram
ones included: sentencepiece's single-precision Viterbi sums break near-ties
in ways not reproduced here) gets None and stays with sentencepiece.
"""
from __future__ import annotations

import os
import struct

import numpy as np

from .native import bpe as kernel

NORMAL, USER_DEFINED, UNUSED, BYTE = 1, 4, 5, 6  # SentencePiece.Type
BPE = 2  # TrainerSpec.model_type
_PROBES = [chr(c) + " a  b\tc\n" for c in range(0x300)] + [
    "", " ", "  ", "\n", "x", " leading", "trailing ", "a  b   c", "tab\there\n\nnew",
    "snow \u2603, cat \U0001F408, \u2581 itself, \x00 nul", "12345 67890", "\u00e9t\u00e9 caf\u00e9",
    "\u65e5\u672c\u8a9e\u306e\u6587", "def f(x):\n    return x  # comment\n"]


class BPEEncoder:
    """Encodes like the sentencepiece BPE model it was made from (see module doc)."""

    @classmethod
    def of(cls, data: bytes, sp) -> "BPEEncoder | None":
        """The encoder of model file ``data`` (loaded in ``sp``), or None when
        the model is not one whose encoding it reproduces exactly."""
        try:
            pieces, trainer, normalizer = _parse(data)
        except (ValueError, IndexError, TypeError, AttributeError, struct.error):
            return None
        chars = {p for p, _, t in pieces if t in (NORMAL, USER_DEFINED) and len(p) == 1}
        if (trainer.get(3) != BPE or trainer.get(35) != 1 or trainer.get(24)
                or normalizer.get(2) or normalizer.get(4, 1) != 0 or normalizer.get(5, 1) != 1
                or any(t == UNUSED or t == USER_DEFINED and len(p) != 1 for p, _, t in pieces)
                or {p for p, _, t in pieces if t == BYTE} != {_byte_piece(b) for b in range(256)}
                or any(c not in chars for p, _, t in pieces if t == NORMAL for c in p)):
            return None
        enc = cls(pieces, normalizer.get(3, 1) == 1 and os.environ.get("SP_ADD_DUMMY_PREFIX") != "no")
        want = sp.encode(_PROBES, add_bos=False, add_eos=False)
        if any(g.tolist() != w for g, w in zip(enc.encode_batch(_PROBES), want)):
            return None
        return enc

    def __init__(self, pieces: list[tuple[str, float, int]], dummy: bool):
        self.dummy = dummy
        self.nv = nv = len(pieces)
        self.scores = np.array([s for _, s, _ in pieces], dtype=np.float32)
        ids = {p: i for i, (p, _, t) in enumerate(pieces) if t in (NORMAL, USER_DEFINED)}
        byte = {p: i for i, (p, _, t) in enumerate(pieces) if t == BYTE}
        self.byte_id = np.array([byte[_byte_piece(b)] for b in range(256)], dtype=np.int64)
        top = max((ord(p) for p in ids if len(p) == 1), default=0) + 1
        self.char_id = np.full(top, -1, dtype=np.int64)  # one-character pieces
        self.frozen = np.zeros(top, dtype=np.uint8)  # user-defined symbols
        pairs, inner = {}, set()
        for p, i in ids.items():
            if len(p) == 1:
                self.char_id[ord(p)] = i
                self.frozen[ord(p)] = pieces[i][2] == USER_DEFINED
            for k in range(1, len(p)):
                inner.add(ord(p[k - 1]) * 0x110000 + ord(p[k]))
                left, right = ids.get(p[:k]), ids.get(p[k:])
                if left is not None and right is not None:
                    pairs[left * nv + right] = i
        self.pairs = _table(pairs, pairs.values())
        self.inner = _table(inner, inner)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """One uint32 id array per text (views into one array). Raises
        UnicodeEncodeError for a lone surrogate, TypeError for a non-str."""
        cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
        bounds = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)), out=bounds[1:])
        (pkeys, pvals, pshift), (ikeys, _, ishift) = self.pairs, self.inner
        ids, starts, counts = kernel.encode(cps, bounds, self.dummy, self.char_id, self.frozen,
                                            pkeys, pvals, pshift, self.nv, self.scores, ikeys,
                                            ishift, self.byte_id)
        return [ids[a:a + c] for a, c in zip(starts.tolist(), counts.tolist())]


def _parse(data: bytes):
    """(pieces as (piece, score, type), trainer spec, normalizer spec) of a
    ModelProto; the specs as {field number: value}."""
    pieces, trainer, normalizer = [], {}, {}
    for field, value in _fields(data):
        if field == 1:
            piece = {1: b"", 2: b"\0\0\0\0", 3: NORMAL} | dict(_fields(value))
            pieces.append((piece[1].decode("utf-8"), struct.unpack("<f", piece[2])[0], piece[3]))
        elif field == 2:
            trainer = dict(_fields(value))
        elif field == 3:
            normalizer = dict(_fields(value))
    return pieces, trainer, normalizer


def _fields(buf: bytes):
    """(field number, value) of each field of a protobuf message: ints for
    varints, bytes for length-delimited and fixed-width fields."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = buf[i:i + size], i + size
        else:
            raise ValueError(f"protobuf wire type {wire}")
        yield key >> 3, value


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def _byte_piece(b: int) -> str:
    return f"<0x{b:02X}>"


def _table(keys, vals) -> tuple[np.ndarray, np.ndarray, int]:
    """Open-addressing hash table of ``keys`` (distinct, >= 0) -> ``vals`` as
    ``native.bpe`` reads it: (keys, values, shift), at most half full."""
    bits = max(4, (2 * len(keys)).bit_length())
    shift, mask = 64 - bits, (1 << bits) - 1
    out_keys = [-1] * (1 << bits)
    out_vals = [-1] * (1 << bits)
    for k, v in zip(keys, vals):
        h = ((k * kernel.MULT) & 0xFFFFFFFFFFFFFFFF) >> shift
        while out_keys[h] != -1:
            h = (h + 1) & mask
        out_keys[h], out_vals[h] = k, v
    return np.array(out_keys, dtype=np.int64), np.array(out_vals, dtype=np.int64), shift
