"""A faster, exact encoder for sentencepiece BPE models (``native.bpe``).

:meth:`BPEEncoder.of` reads the model file itself (protobuf fields, no
protobuf package) and makes an encoder only for a model whose encoding it
reproduces: BPE, spaces escaped, no whitespace-as-suffix, no unused pieces,
user-defined symbols only single characters, every character of a piece a
piece itself, unknown characters as byte pieces (byte fallback) or as the
unknown piece (a run of them as one). Any normalization is reproduced: the
precompiled charsmap (any built-in rule or custom one), extra whitespace
removal and the dummy prefix (``native.normalize``). It then checks the
encoder against sentencepiece on probe texts. Any other model
(unigram ones included: sentencepiece's single-precision Viterbi sums break
near-ties in ways not reproduced here) gets no encoder, with the reason, and
stays with sentencepiece.
"""
from __future__ import annotations

import os
import struct

import numpy as np

from .native import bpe as kernel, normalize as norm_kernel

NORMAL, UNKNOWN, USER_DEFINED, UNUSED, BYTE = 1, 2, 4, 5, 6  # SentencePiece.Type
BPE = 2  # TrainerSpec.model_type
_TYPES = {1: "unigram", 2: "BPE", 3: "word", 4: "char"}
_PROBES = [chr(c) + " a  b\tc\n" for c in (*range(0x300), *range(0x2000, 0x2070),
                                            *range(0x3000, 0x3040), *range(0xFB00, 0xFB50),
                                            *range(0xFF00, 0xFFF0))] + [
    "", " ", "  ", "\n", "x", " leading", "trailing ", "a  b   c", "tab\there\n\nnew",
    "snow \u2603, cat \U0001F408, \u2581 itself, \x00 nul", "12345 67890", "\u00e9t\u00e9 caf\u00e9",
    "\u65e5\u672c\u8a9e\u306e\u6587", "def f(x):\n    return x  # comment\n",
    "\uff26\uff55\uff4c\uff4c\uff0d\uff57\uff49\uff44\uff54\uff48\u3000\uff21\uff11",
    "\ufb01 \ufb02 \ufb03 ligatures \u2460 \u338f \u2122 \u00bd \u00b2 \u216b \u337f \ufdfa",
    "e\u0301 a\u0308 \u0301 alone, n\u0303\u0323 stacked, \u1100\u1161\u11a8 jamo",
    "\u3000 ideographic\u3000\u3000space \u00a0nbsp\u2009thin\u200b\u200d\ufeff zero ",
    "CASE Stra\u00dfe \u03a3\u0391\u03a3 \u0130\u0131 \u1e9e \uff76\uff9e \uff8a\uff9f",
    "\r\n \x0b\x0c \x85 \u2028\u2029 \x01\x7f", "\u2581\u2581 a \u2581", "  \u3000 \u00a0 ",
    "\U0001d400\U0001d7ce \U0001F468\u200d\U0001F469 \U0002f800 astral"]


class BPEEncoder:
    """Encodes like the sentencepiece BPE model it was made from (see module doc)."""

    @classmethod
    def of(cls, data: bytes, sp) -> "tuple[BPEEncoder | None, str]":
        """(encoder, "") for model file ``data`` (loaded in ``sp``), or (None,
        why not) when the model is not one whose encoding it reproduces."""
        try:
            pieces, trainer, normalizer = _parse(data)
            charsmap = _charsmap(normalizer[2]) if normalizer.get(2) else None
        except (ValueError, IndexError, TypeError, AttributeError, KeyError, struct.error) as e:
            return None, f"its model file could not be parsed ({type(e).__name__})"
        why = _unsupported(pieces, trainer, normalizer)
        if why:
            return None, why
        dummy = normalizer.get(3, 1) == 1 and os.environ.get("SP_ADD_DUMMY_PREFIX") != "no"
        enc = cls(pieces, charsmap, dummy, normalizer.get(4, 1) == 1)
        want = sp.encode(_PROBES, add_bos=False, add_eos=False)
        for probe, got, ids in zip(_PROBES, enc.encode_batch(_PROBES), want):
            if got.tolist() != ids:
                return None, f"the fast BPE encoder disagrees with it on {probe!r:.40}"
        return enc, ""

    def __init__(self, pieces: list[tuple[str, float, int]], charsmap, dummy: bool,
                 squeeze: bool):
        """``charsmap``: (trie units, pool, starts, widest) from a precompiled
        charsmap, or None; ``squeeze``: remove_extra_whitespaces."""
        self.dummy, self.squeeze = dummy, squeeze
        self.charsmap = charsmap or (np.zeros(0, np.int64), np.zeros(1, np.uint32),
                                     np.zeros(1, np.int64), 0)
        self.normalizes = charsmap is not None or squeeze
        nv = len(pieces)
        scores = np.array([s for _, s, _ in pieces], dtype=np.float32)
        ids = {p: i for i, (p, _, t) in enumerate(pieces) if t in (NORMAL, USER_DEFINED)}
        byte = {p: i for i, (p, _, t) in enumerate(pieces) if t == BYTE}
        byte_id = np.array([byte.get(_byte_piece(b), -1) for b in range(256)], np.int64)
        unk = -1 if byte else [t for _, _, t in pieces].index(UNKNOWN)  # no byte fallback
        top = max((ord(p) for p in ids if len(p) == 1), default=0) + 1
        char_id = np.full(top, -1, dtype=np.int64)  # one-character pieces
        frozen = np.zeros(top, dtype=np.uint8)  # user-defined symbols
        pairs, inner = {}, set()
        for p, i in ids.items():
            if len(p) == 1:
                char_id[ord(p)] = i
                frozen[ord(p)] = pieces[i][2] == USER_DEFINED
            for k in range(1, len(p)):
                inner.add(ord(p[k - 1]) * 0x110000 + ord(p[k]))
                left, right = ids.get(p[:k]), ids.get(p[k:])
                if left is not None and right is not None:
                    pairs[left * nv + right] = i
        (pkeys, pvals, pshift), (ikeys, _, ishift) = _table(pairs, pairs.values()), \
            _table(inner, inner)
        self.model = kernel.Model(char_id, frozen, pkeys, pvals, pshift, nv, scores, ikeys,
                                  ishift, byte_id, unk)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """One uint32 id array per text (views into one array). Raises
        UnicodeEncodeError for a lone surrogate, TypeError for a non-str."""
        joined = "".join(texts)
        chars = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)), out=chars[1:])
        dummy = self.dummy
        if self.normalizes:  # then spaces are escaped already
            data = np.frombuffer(joined.encode("utf-8"), dtype=np.uint8)
            cps, chars = norm_kernel.normalize(data, norm_kernel.utf8_bounds(data, chars),
                                               *self.charsmap, self.model.frozen, dummy, self.squeeze)
            dummy = False
        else:
            cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
        ids, starts, counts = kernel.encode(cps, chars, dummy, self.model)
        return [ids[a:a + c] for a, c in zip(starts.tolist(), counts.tolist())]


def _unsupported(pieces, trainer, normalizer) -> str:
    """Why the encoder cannot reproduce a model with these pieces, trainer
    and normalizer specs, or "" if it can."""
    if trainer.get(3, 1) != BPE:
        return f"it is a {_TYPES.get(trainer.get(3, 1), 'unknown')} model, not BPE"
    if trainer.get(24):
        return "it treats whitespace as a suffix"
    if normalizer.get(5, 1) != 1:
        return "it does not escape whitespace"
    if any(t == UNUSED or t == USER_DEFINED and len(p) != 1 for p, _, t in pieces):
        return "it has unused pieces or user-defined symbols longer than one character"
    fallback = {_byte_piece(b) for b in range(256)} if trainer.get(35) == 1 else set()
    if {p for p, _, t in pieces if t == BYTE} != fallback:
        return "its byte pieces do not match its byte fallback setting"
    if not fallback and [t for _, _, t in pieces].count(UNKNOWN) != 1:
        return "it has no byte fallback and not one unknown piece"
    chars = {p for p, _, t in pieces if t in (NORMAL, USER_DEFINED) and len(p) == 1}
    if any(c not in chars for p, _, t in pieces if t == NORMAL for c in p):
        return "some piece holds a character that is not a piece itself"
    return ""


def _charsmap(blob: bytes):
    """(trie units as int64, pool as code points, starts, widest) of a
    precompiled charsmap (see ``native.normalize``): a uint32 LE trie size,
    the trie, then NUL-terminated UTF-8 replacement strings; ``starts`` maps
    a byte offset in the pool to its code point's index (-1 inside one).
    ValueError if it is malformed or a key's value is not a string's start."""
    size = struct.unpack_from("<I", blob)[0]
    if size >= len(blob) - 4 or size % 4:
        raise ValueError("charsmap trie size")
    units = np.frombuffer(blob, "<u4", size // 4, 4).astype(np.int64)
    raw = blob[4 + size:]
    pool = np.frombuffer(raw.decode("utf-8").encode("utf-32-le"), dtype=np.uint32)
    if pool[-1] != 0:
        raise ValueError("charsmap pool is not NUL-terminated")
    width = 1 + (pool >= 0x80) + (pool >= 0x800) + (pool >= 0x10000)
    starts = np.full(len(raw), -1, dtype=np.int64)
    starts[np.cumsum(width) - width] = np.arange(pool.size)
    node = np.arange(units.size)
    ends = node[(units >> 31 == 0) & ((units >> 8) & 1 == 1)]  # a key ends at these nodes
    leaves = ends ^ ((units[ends] >> 10) << ((units[ends] & 0x200) >> 6))
    if np.any(leaves >= units.size):
        raise ValueError("charsmap leaf out of the trie")
    values = units[leaves] & 0x7FFFFFFF
    if np.any(values >= len(raw)) or np.any(starts[values] < 0):
        raise ValueError("charsmap value not a string's start")
    nuls = np.flatnonzero(pool == 0)
    widest = int(np.diff(nuls, prepend=-1).max()) - 1
    return units, pool, starts, widest


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
