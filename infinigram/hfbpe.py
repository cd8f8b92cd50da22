"""A faster, exact encoder for Hugging Face byte-level BPE tokenizers
(GPT-2's kind; ``native.hfbpe``).

:meth:`HFBPEEncoder.of` reads the ``tokenizer.json`` itself and makes an
encoder only for one whose encoding it reproduces: a BPE model without
dropout, subword prefix or suffix, byte fallback or ignore_merges, every
byte's symbol in the vocabulary, no two merges making the same token; no
normalizer; the ByteLevel pre-tokenizer with GPT-2's pattern (alone or as a
one-element Sequence), with or without add_prefix_space; no truncation or
padding. It then checks the encoder against ``tokenizers`` on probe texts.
A text holding an added token's content is left to ``tokenizers`` (which
splits added tokens out first): :meth:`HFBPEEncoder.encode_batch` names
those texts.
"""
from __future__ import annotations

import json
import sys
import threading
import unicodedata
from functools import lru_cache

import numpy as np

from .bpe import _PROBES, _table
from .native import hfbpe as kernel

_CACHE_SLOTS = 1 << 19
"""Word cache: hash slots (at most half used), bytes and ids it holds."""
_CACHE_BYTES = _CACHE_IDS = 1 << 22
_PROBES_HF = _PROBES + [
    "it's they're we've I'm you'll he'd don't 'tis ''s 'S 'LL x'' ' s", " 's", "a'sb",
    "  a   b \n\n c\t\td  \u00a0e\u2028f\u3000 g \x0b\x0c\r\n\x1c\x1d\x1e\x1f\x85 h ",
    "\u0661\u0662 \u0966 \u00b2\u2160 \U0001d7ce12 x2 2x", "a \u0301b e\u0301 \u0301",
    " ", "   ", "a ", "a  ", " \n", "\n ", "x\u200dy"]


class HFBPEEncoder:
    """Encodes like the Hugging Face tokenizer it was made from (see module doc)."""

    @classmethod
    def of(cls, spec: str, tok) -> "tuple[HFBPEEncoder | None, str]":
        """(encoder, "") for ``tokenizer.json`` text ``spec`` (loaded in
        ``tok``, a ``tokenizers.Tokenizer``), or (None, why not)."""
        try:
            spec = json.loads(spec)
            why, prefix = _unsupported(spec)
        except (ValueError, TypeError, AttributeError, KeyError) as e:
            return None, f"its tokenizer.json could not be read ({type(e).__name__})"
        if why:
            return None, why
        model = spec["model"]
        enc = cls(model["vocab"], model["merges"], prefix,
                  [t["content"] for t in spec.get("added_tokens") or []])
        if enc.why:
            return None, enc.why
        want = tok.encode_batch_fast(_PROBES_HF, add_special_tokens=False)
        for probe, got, e in zip(_PROBES_HF, enc.encode_batch(_PROBES_HF)[0], want):
            if got is not None and got.tolist() != e.ids:
                return None, f"the fast BPE encoder disagrees with it on {probe!r:.40}"
        return enc, ""

    def __init__(self, vocab: dict[str, int], merges: list, prefix: bool, added: list[str]):
        """``merges``: "a b" strings or [a, b] pairs, in rank order;
        ``prefix``: add_prefix_space; ``added``: the added tokens' contents.
        ``why`` says what it cannot reproduce ("" if nothing)."""
        self.prefix, self.added = prefix, [a for a in added if a]
        nv = max(vocab.values(), default=-1) + 1
        self.why = ""
        symbols = _byte_symbols()
        if any(s not in vocab for s in symbols):
            self.why = "some byte's symbol is not in its vocabulary"
            return
        byte_id = np.array([vocab[s] for s in symbols], dtype=np.int64)
        pairs = {}
        for rank, merge in enumerate(merges):
            a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
            pairs[vocab[a] * nv + vocab[b]] = rank << 32 | vocab[a + b]  # a later one wins
        if len({v & 0xFFFFFFFF for v in pairs.values()}) != len(pairs):
            self.why = "two of its merges make the same token"
            return
        self.model = kernel.Model(byte_id, *_table(pairs, pairs.values()), nv)
        self._caches: list = []
        self._lock = threading.Lock()

    def encode_batch(self, texts: list[str]) -> tuple[list, list[int]]:
        """(one uint32 id array per text, the indexes of the texts it left
        to ``tokenizers``, None in the list: those holding an added token or
        a code point unassigned in Python's Unicode version, which that of
        ``tokenizers`` may have assigned).
        Raises UnicodeEncodeError for a lone surrogate, TypeError for a non-str."""
        joined = "".join(texts)
        left = [i for i, t in enumerate(texts) if any(a in t for a in self.added)] \
            if any(a in joined for a in self.added) else []
        if self.prefix:
            texts = [" " + t if t and t[0] != " " else t for t in texts]
            joined = "".join(texts)
        data = joined.encode("utf-8")
        bounds = np.zeros(len(texts) + 1, dtype=np.int64)
        if data.isascii():
            np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)), out=bounds[1:])
        else:
            np.cumsum(np.fromiter((len(t.encode("utf-8")) for t in texts), np.int64,
                                  len(texts)), out=bounds[1:])
        with self._lock:
            cache = self._caches.pop() if self._caches else _new_cache()
        try:
            ids, counts = kernel.encode(np.frombuffer(data, dtype=np.uint8), bounds, _classes(),
                                        self.model, cache)
        finally:
            with self._lock:
                self._caches.append(cache)
        out = [ids[a:a + c] for a, c in zip(bounds.tolist(), counts.tolist())]
        left = sorted({*left, *np.flatnonzero(counts < 0).tolist()})
        for i in left:
            out[i] = None
        return out, left


def _unsupported(spec: dict) -> tuple[str, bool]:
    """(why the encoder cannot reproduce a tokenizer.json, or "";
    its add_prefix_space)."""
    model = spec["model"]
    if model.get("type") != "BPE":
        return f"its model is {model.get('type')}, not BPE", False
    for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            return f"its BPE model has {key} {model[key]!r}", False
    for key in ("byte_fallback", "ignore_merges"):
        if model.get(key):
            return f"its BPE model has {key} set", False
    for key in ("normalizer", "truncation", "padding"):
        if spec.get(key) is not None:
            return f"it has a {key}", False
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") == "Sequence" and len(pre.get("pretokenizers", [])) == 1:
        pre = pre["pretokenizers"][0]
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True):
        return "its pre-tokenizer is not ByteLevel with GPT-2's pattern", False
    return "", bool(pre.get("add_prefix_space", True))


def _new_cache():
    """An empty word cache for ``native.hfbpe.encode``."""
    return (np.full(_CACHE_SLOTS, -1, dtype=np.int64),
            np.zeros((_CACHE_SLOTS // 2, 5), dtype=np.int64),
            np.zeros(_CACHE_BYTES, dtype=np.uint8), np.zeros(_CACHE_IDS, dtype=np.uint32),
            np.zeros(3, dtype=np.int64))


@lru_cache(maxsize=1)
def _byte_symbols() -> list[str]:
    """GPT-2's byte-level alphabet: the symbol standing for each byte."""
    kept = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    extra = iter(range(0x100, 0x200))
    return [chr(b) if b in kept else chr(next(extra)) for b in range(256)]


@lru_cache(maxsize=1)
def _classes() -> np.ndarray:
    """The pattern's class of every code point (``native.hfbpe``): \\p{L}
    and \\p{N} by general category; \\s as Oniguruma's: U+0009-U+000D, U+0085
    and the space, line and paragraph separators; unknown: unassigned."""
    out = np.zeros(sys.maxunicode + 1, dtype=np.uint8)
    for c in range(sys.maxunicode + 1):
        cat = unicodedata.category(chr(c))
        if cat == "Cn":
            out[c] = kernel.UNKNOWN
        elif cat[0] == "L":
            out[c] = kernel.LETTER
        elif cat[0] == "N":
            out[c] = kernel.NUMBER
        elif cat in ("Zs", "Zl", "Zp") or 0x09 <= c <= 0x0D or c == 0x85:
            out[c] = kernel.SPACE
    return out
