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

With ``modified=True`` each order has Chen and Goodman's three discounts
instead (modified Kneser-Ney): D_k1 = 1 - 2Y n2/n1, D_k2 = 2 - 3Y n3/n2 and
D_k3 = 3 - 4Y n4/n3, Y = D_k above and nj the distinct k-grams seen j times;
a count c is discounted by D_k min(c, 3), and the weight of the lower order
is (D_k1 N1(h) + D_k2 N2(h) + D_k3 N3+(h)) / c(h), Nj(h) the tokens seen j
times (3 or more for N3+) after h. An order where some nj is 0 or some
D_kj < 0 keeps its single D_k. The counts stay raw at every order, as above:
continuation counts would take a scan of every occurrence of each context.
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
from .native.smoothing import MOST

EPS = 1e-9
"""Additive smoothing of the unigram base (tokengrams' value)."""


def order(n) -> int:
    """A Kneser-Ney order: an int >= 1."""
    return args.integer("n", n, low=1, error=QueryError)


def count_of_counts(engine, n: int) -> np.ndarray:
    """``seen[c, k]``: for k = 1..n and c = 1..MOST, how many distinct
    k-grams of real tokens occur exactly c times over all shards of ``engine``."""
    multi = len(engine.shards) > 1
    parts = engine._fan("kgram_counts", n, multi)
    seen = np.zeros((MOST + 1, n + 1), np.int64)
    if not multi:
        return parts[0][0] if parts else seen
    for k in range(1, n + 1):  # a k-gram seen <= MOST times in all is so in each shard
        rows = [np.asarray(s.tokens)[where[o == k, None] + np.arange(k)]
                for s, (_, where, o) in zip(engine.shards, parts)]
        found = np.unique(np.concatenate(rows).astype(np.int64), axis=0)
        counts = engine.count_many(found) if len(found) else np.zeros(0, np.int64)
        seen[1:, k] = np.bincount(counts, minlength=MOST + 1)[1:MOST + 1]
    return seen


def discounts(seen: np.ndarray, modified: bool) -> np.ndarray:
    """``d[k, j]``: the discount of a k-gram seen j times (j = 3 for 3 or
    more; row 0 and column 0 unused), from the counts of counts ``seen``.
    One D_k per order, or with ``modified`` Chen and Goodman's three
    (module doc)."""
    n1, n2, n3, n4 = seen[1:5].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        one = np.where((n1 > 0) & (n2 > 0), n1 / (n1 + 2.0 * n2), 1.0)
        d = np.repeat(one[:, None], 4, axis=1)
        if modified:
            three = np.stack([1 - 2 * one * n2 / n1, 2 - 3 * one * n3 / n2,
                              3 - 4 * one * n4 / n3], axis=1)
            ok = (seen[1:5] > 0).all(axis=0) & (three >= 0).all(axis=1)
            d[ok, 1:] = three[ok]
    return d


class KneserNey:
    """The Kneser-Ney models of one engine: the counts of counts and each
    unigram level, computed on first use and kept (one per engine, see
    :func:`model`)."""

    def __init__(self, engine):
        self._engine = engine
        self._lock = threading.Lock()
        self._seen = np.zeros((MOST + 1, 1), np.int64)
        self._deltas: dict[bool, np.ndarray] = {}
        self._unigram: dict[bool, np.ndarray] = {}

    def deltas(self, n: int, modified: bool = False) -> np.ndarray:
        """The discounts of orders 0..n at least (see :func:`discounts`)."""
        with self._lock:
            if self._seen.shape[1] <= n:
                self._seen = count_of_counts(self._engine, n)
                self._deltas = {}
            if modified not in self._deltas:
                self._deltas[modified] = discounts(self._seen, modified)
            return self._deltas[modified]

    def unigram(self, modified: bool = False) -> np.ndarray:
        """The order-1 distribution (dense, ``vocab_size`` probabilities)."""
        if modified not in self._unigram:
            vocab = self._engine.vocab_size
            d = self._engine.ntd([])
            counts = np.zeros(vocab, np.float64)
            counts[d.ids] = d.counts
            base = (counts + EPS) / (float(d.prompt_count) + EPS * vocab)
            p = _interpolate(base, d.ids, d.counts, self.deltas(1, modified)[1], modified)
            p.setflags(write=False)
            self._unigram[modified] = p
        return self._unigram[modified]

    def dist(self, ids: np.ndarray, n: int, modified: bool = False) -> np.ndarray:
        """P(. | the last n-1 of ``ids``) over the vocabulary (float64)."""
        context = ids[max(len(ids) - (n - 1), 0):] if n > 1 else ids[:0]
        p = lowest = self.unigram(modified)
        deltas = self.deltas(len(context) + 1, modified) if len(context) else None
        for j in range(len(context) - 1, -1, -1):
            d = self._engine.ntd(context[j:])
            if not d.prompt_count:  # unseen: so is every longer context
                break
            p = _interpolate(p, d.ids, d.counts, deltas[len(context) - j + 1], modified)
        return p.copy() if p is lowest else p


def _interpolate(lower: np.ndarray, ids: np.ndarray, counts: np.ndarray, d: np.ndarray,
                 modified: bool) -> np.ndarray:
    """max(c - D(c), 0) / total + (the mass taken) / total * lower, with
    D(c) = d[min(c, 3)]; with one discount, in tokengrams' order of
    operations (bit for bit the same sums)."""
    total = int(counts.sum())
    if not total:
        return lower
    recip = 1.0 / total
    if modified:
        taken = d[np.minimum(counts, 3)]
        p = (taken.sum() * recip) * lower
    else:
        taken = d[1]
        p = (taken * len(ids) * recip) * lower
    p[ids] += np.maximum(counts - taken, 0.0) * recip
    return p


def model(engine) -> KneserNey:
    """The engine's KneserNey, made on first use."""
    kn = engine.__dict__.get("_kneser_ney")
    if kn is None:
        kn = engine.__dict__.setdefault("_kneser_ney", KneserNey(engine))
    return kn


def sample(engine, ids: np.ndarray, k: int, n: int, smoothed: bool, seed,
           modified: bool = False) -> np.ndarray:
    """k tokens drawn one by one after ``ids`` (see ``Engine.sample``)."""
    rng = np.random.default_rng(seed)
    seq = list(int(t) for t in ids)
    out = np.zeros(k, np.int64)
    for i in range(k):
        if smoothed:
            choices, weights = None, model(engine).dist(np.asarray(seq, np.int64), n, modified)
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


def perplexity(engine, docs, kn: int | None = None, modified: bool = False) -> dict:
    """Perplexity of the token id sequences ``docs`` (every token of every
    document, each given the tokens before it in its document) under the
    ∞-gram model mixed with the uniform distribution,
    (1 - UNIFORM_WEIGHT) P∞ + UNIFORM_WEIGHT / V, so that a token the ∞-gram
    gives 0 (or an empty index, nan) costs log V / UNIFORM_WEIGHT and not
    infinity; and, with ``kn``, under Kneser-Ney of that order (``modified``:
    its three-discount form)."""
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
            kn_nll -= sum(np.log(engine.kn_prob(ids[:t], ids[t], kn, modified))
                          for t in range(len(ids)))
    out = {"tokens": tokens, "infgram_ppl": float(np.exp(nll / tokens)) if tokens else float("nan"),
           "infgram_zero_tokens": zeros, "uniform_weight": UNIFORM_WEIGHT}
    if kn is not None:
        out.update(kn_order=kn, kn_modified=bool(modified), kn_ppl=float(np.exp(kn_nll / tokens)) if tokens else float("nan"))
    return out
