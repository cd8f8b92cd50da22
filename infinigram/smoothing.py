"""Interpolated Kneser-Ney smoothing over the suffix array, and sampling.

The estimator is the one tokengrams (EleutherAI) computes under the name
"interpolated Kneser-Ney" (its ``src/sample.rs``), so that the two agree to
rounding where their corpora agree. For a context h of the last n-1 tokens,
from the empty context up:

* p_0(w) = (c(w) + 1e-9) / (N + 1e-9 V): the unigram counts, additively
  smoothed over the vocabulary (V = ``vocab_size``, N = real tokens);
* p_h(w) = max(c(h w) - D_k, 0) / c(h) + D_k u(h) / c(h) * p_h'(w), for
  h' = h without its first token and the empty h too (k = len(h) + 1),
  where c(h) counts h followed by a real token and u(h) the distinct tokens
  that follow it; an h never followed by a real token gives p_h = p_h';
* D_k = n1 / (n1 + 2 n2) from the number of distinct k-grams seen once (n1)
  and twice (n2) in the whole corpus; 1 when either is 0.

Raw counts at every order (no continuation counts), one discount per order.
Where we differ from tokengrams (tokengrams sees one token stream):

* no n-gram crosses a document: counts, next tokens and count-of-counts
  skip the separator (tokengrams counts it as a token like any other);
* every D_k is estimated (tokengrams uses 0.5 for orders above 1 unless
  ``estimate_deltas(n)`` was called);
* with D_k = 1 we keep the weight D_k u(h) / c(h), so that p_h sums to 1
  (tokengrams' weight there is u1(h) + (u(h) - u1(h)) / c(h), u1 the tokens
  seen once after h, which does not).
"""
from __future__ import annotations

import threading

import numpy as np

from . import args
from .errors import QueryError

EPS = 1e-9
"""Additive smoothing of the unigram base (tokengrams' value)."""


def order(n) -> int:
    """A Kneser-Ney order: an int >= 1."""
    return args.integer("n", n, low=1, error=QueryError)


def count_of_counts(engine, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n1, n2): for k = 1..n (index k), how many distinct k-grams of real
    tokens occur exactly once and twice over all shards of ``engine``."""
    multi = len(engine.shards) > 1
    parts = engine._fan("kgram_counts", n, multi)
    n1, n2 = np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64)
    if not multi:
        return (parts[0][0], parts[0][1]) if parts else (n1, n2)
    for k in range(1, n + 1):  # a k-gram seen <= 2 times in all is seen <= 2 times in each shard
        rows = [np.asarray(s.tokens)[where[o == k, None] + np.arange(k)]
                for s, (_, _, where, o) in zip(engine.shards, parts)]
        found = np.unique(np.concatenate(rows).astype(np.int64), axis=0)
        counts = engine.count_many(found) if len(found) else np.zeros(0, np.int64)
        n1[k], n2[k] = (counts == 1).sum(), (counts == 2).sum()
    return n1, n2


class KneserNey:
    """The Kneser-Ney model of one engine: its discounts and unigram level,
    computed on first use and kept (one per engine, see :func:`model`)."""

    def __init__(self, engine):
        self._engine = engine
        self._lock = threading.Lock()
        self._deltas = np.zeros(1)
        self._unigram: np.ndarray | None = None

    def deltas(self, n: int) -> np.ndarray:
        """D_k for k = 0..n (D_0 unused): the discount of each order."""
        with self._lock:
            if len(self._deltas) <= n:
                n1, n2 = count_of_counts(self._engine, n)
                with np.errstate(invalid="ignore", divide="ignore"):
                    d = np.where((n1 > 0) & (n2 > 0), n1 / (n1 + 2.0 * n2), 1.0)
                self._deltas = d
            return self._deltas

    def unigram(self) -> np.ndarray:
        """The order-1 distribution (dense, ``vocab_size`` probabilities)."""
        if self._unigram is None:
            vocab = self._engine.vocab_size
            d = self._engine.ntd([])
            counts = np.zeros(vocab, np.float64)
            counts[d.ids] = d.counts
            base = (counts + EPS) / (float(d.prompt_count) + EPS * vocab)
            self._unigram = _interpolate(base, d.ids, d.counts, self.deltas(1)[1])
            self._unigram.setflags(write=False)
        return self._unigram

    def dist(self, ids: np.ndarray, n: int) -> np.ndarray:
        """P(. | the last n-1 of ``ids``) over the vocabulary (float64)."""
        context = ids[max(len(ids) - (n - 1), 0):] if n > 1 else ids[:0]
        p = self.unigram()
        deltas = self.deltas(len(context) + 1) if len(context) else None
        for j in range(len(context) - 1, -1, -1):
            d = self._engine.ntd(context[j:])
            if not d.prompt_count:  # unseen: so is every longer context
                break
            p = _interpolate(p, d.ids, d.counts, deltas[len(context) - j + 1])
        return p.copy() if p is self._unigram else p


def _interpolate(lower: np.ndarray, ids: np.ndarray, counts: np.ndarray, delta: float) -> np.ndarray:
    """max(c - D, 0) / total + D * distinct / total * lower, in tokengrams'
    order of operations (bit for bit the same sums)."""
    total = int(counts.sum())
    if not total:
        return lower
    recip = 1.0 / total
    p = (delta * len(ids) * recip) * lower
    p[ids] += np.maximum(counts - delta, 0.0) * recip
    return p


def model(engine) -> KneserNey:
    """The engine's KneserNey, made on first use."""
    kn = engine.__dict__.get("_kneser_ney")
    if kn is None:
        kn = engine.__dict__.setdefault("_kneser_ney", KneserNey(engine))
    return kn


def sample(engine, ids: np.ndarray, k: int, n: int, smoothed: bool, seed) -> np.ndarray:
    """k tokens drawn one by one after ``ids`` (see ``Engine.sample``)."""
    rng = np.random.default_rng(seed)
    seq = list(int(t) for t in ids)
    out = np.zeros(k, np.int64)
    for i in range(k):
        if smoothed:
            choices, weights = None, model(engine).dist(np.asarray(seq, np.int64), n)
        else:
            choices, weights = _backoff(engine, seq[max(len(seq) - (n - 1), 0):] if n > 1 else [])
        cum = np.cumsum(weights)
        j = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(cum) - 1)
        out[i] = j if choices is None else choices[j]
        seq.append(int(out[i]))
    return out


def _backoff(engine, context: list) -> tuple[np.ndarray, np.ndarray]:
    """(ids, counts) after the longest suffix of ``context`` followed by a real token."""
    for j in range(len(context) + 1):
        d = engine.ntd(context[j:])
        if d.prompt_count:
            return d.ids, d.counts
    raise QueryError(f"index {engine.path} holds no token to sample; sample from a non-empty index")


UNIFORM_WEIGHT = 0.01
"""Weight of the uniform 1/V in the ∞-gram probabilities that perplexity uses."""


def perplexity(engine, docs, kn: int | None = None) -> dict:
    """Perplexity of the token id sequences ``docs`` (every token of every
    document, each given the tokens before it in its document) under the
    ∞-gram model mixed with the uniform distribution,
    (1 - UNIFORM_WEIGHT) P∞ + UNIFORM_WEIGHT / V, so that a token the ∞-gram
    gives 0 (or an empty index, nan) costs log V / UNIFORM_WEIGHT and not
    infinity; and, with ``kn``, under Kneser-Ney of that order."""
    vocab = engine.vocab_size
    tokens = zeros = 0
    nll = kn_nll = 0.0
    kn = None if kn is None else order(kn)
    for ids in docs:
        probs = np.nan_to_num(engine.score(ids).probs, nan=0.0)
        tokens += len(probs)
        zeros += int((probs == 0).sum())
        nll -= np.log((1 - UNIFORM_WEIGHT) * probs + UNIFORM_WEIGHT / vocab).sum()
        if kn is not None:
            kn_nll -= sum(np.log(engine.kn_prob(ids[:t], ids[t], kn)) for t in range(len(ids)))
    out = {"tokens": tokens, "infgram_ppl": float(np.exp(nll / tokens)) if tokens else float("nan"),
           "infgram_zero_tokens": zeros, "uniform_weight": UNIFORM_WEIGHT}
    if kn is not None:
        out.update(kn_order=kn, kn_ppl=float(np.exp(kn_nll / tokens)) if tokens else float("nan"))
    return out
