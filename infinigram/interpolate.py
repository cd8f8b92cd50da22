"""Interpolate ∞-gram estimates with a neural language model.

P(x) = λ·P∞(x) + (1 − λ)·P_nn(x), with λ = ``lam_sparse`` where the ∞-gram
estimate is sparse (exactly one distinct next token follows the longest
matching suffix) and ``lam_dense`` elsewhere, as in Liu et al., "Infini-gram"
(2024). Plain numpy: arrays of per-token probabilities in, numbers out.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .errors import QueryError

ACCURACY_BUCKETS = ((1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 32), (33, 64),
                    (65, None))
"""Effective-n ranges (inclusive; None = unbounded) the report groups accuracy by."""

_BISECT_STEPS = 60


@dataclasses.dataclass(frozen=True)
class Lambdas:
    """Mixture weights of the ∞-gram: one for sparse estimates, one for the rest."""

    sparse: float
    dense: float


@dataclasses.dataclass(frozen=True)
class BucketAccuracy:
    """∞-gram next-token accuracy over positions with lo ≤ effective n ≤ hi."""

    lo: int
    hi: int | None
    tokens: int
    hits: int

    @property
    def accuracy(self) -> float:
        return self.hits / self.tokens if self.tokens else math.nan

    @property
    def label(self) -> str:
        if self.hi is None:
            return f"≥{self.lo}"
        return str(self.lo) if self.lo == self.hi else f"{self.lo}–{self.hi}"


@dataclasses.dataclass(frozen=True)
class InterpolationReport:
    """Perplexities and ∞-gram statistics of one evaluation set.

    ``accuracy_exact`` is False when no argmax hits were given and accuracy
    falls back to "P∞(actual token) > 0.5": exact at sparse positions, a
    lower bound elsewhere.
    """

    tokens: int
    lambdas: Lambdas
    ppl_neural: float
    ppl_interpolated: float
    sparse_tokens: int
    ppl_neural_sparse: float
    ppl_interpolated_sparse: float
    ppl_neural_dense: float
    ppl_interpolated_dense: float
    accuracy_sparse: float
    accuracy_dense: float
    buckets: tuple[BucketAccuracy, ...]
    accuracy_exact: bool

    @property
    def sparse_share(self) -> float:
        """Share of positions whose ∞-gram estimate is sparse."""
        return self.sparse_tokens / self.tokens

    @property
    def improvement(self) -> float:
        """The paper's metric: 1 − (PPL − 1) / (PPL₀ − 1), PPL₀ the neural model's."""
        return improvement(self.ppl_neural, self.ppl_interpolated)

    def to_markdown(self) -> str:
        """Two tables: perplexities, then ∞-gram accuracy by effective n."""
        acc = "accuracy" if self.accuracy_exact else "accuracy (P∞ > 0.5 lower bound)"
        lines = [
            f"λ sparse = {self.lambdas.sparse:.4f}, λ dense = {self.lambdas.dense:.4f}; "
            f"{self.tokens} tokens, {100 * self.sparse_share:.1f}% sparse ∞-gram estimates",
            "",
            "| positions | tokens | PPL neural | PPL interpolated | improvement |",
            "|---|---:|---:|---:|---:|",
        ]
        dense = self.tokens - self.sparse_tokens
        rows = (("all", self.tokens, self.ppl_neural, self.ppl_interpolated),
                ("sparse", self.sparse_tokens, self.ppl_neural_sparse,
                 self.ppl_interpolated_sparse),
                ("non-sparse", dense, self.ppl_neural_dense, self.ppl_interpolated_dense))
        for name, n, p0, p1 in rows:
            lines.append(f"| {name} | {n} | {p0:.3f} | {p1:.3f} | "
                         f"{100 * improvement(p0, p1):.1f}% |")
        lines += ["", f"| effective n | tokens | ∞-gram {acc} |", "|---|---:|---:|"]
        for b in self.buckets:
            lines.append(f"| {b.label} | {b.tokens} | {_pct(b.accuracy)} |")
        lines.append(f"| sparse | {self.sparse_tokens} | {_pct(self.accuracy_sparse)} |")
        lines.append(f"| non-sparse | {dense} | {_pct(self.accuracy_dense)} |")
        return "\n".join(lines) + "\n"


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.1f}%"


def improvement(ppl_base: float, ppl: float) -> float:
    """1 − (ppl − 1) / (ppl_base − 1): the share of the base's excess perplexity removed."""
    if ppl_base == 1.0:
        return 0.0 if ppl == 1.0 else -math.inf
    return 1.0 - (ppl - 1.0) / (ppl_base - 1.0)


def _probs(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim not in (1, 2) or a.shape[0] == 0:
        raise QueryError(f"{name} has shape {a.shape}; pass a non-empty [n] array of token "
                         "probabilities or an [n, vocab] array of distributions")
    bad = ~((a >= 0.0) & (a <= 1.0))  # NaN fails both comparisons
    if bad.any():
        i = np.flatnonzero(bad.ravel())[0]
        raise QueryError(f"{name} holds {a.ravel()[i]!r} at flat index {i}; probabilities "
                         "must be finite and within [0, 1] (apply softmax to logits first)")
    return a


def _check(p_inf, p_nn, sparse) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p_inf, p_nn = _probs(p_inf, "p_inf"), _probs(p_nn, "p_nn")
    if p_inf.shape != p_nn.shape:
        raise QueryError(f"p_inf has shape {p_inf.shape} but p_nn has shape {p_nn.shape}; "
                         "both must score the same positions (and vocabulary)")
    s = np.asarray(sparse)
    if s.shape != (p_inf.shape[0],):
        raise QueryError(f"sparse has shape {s.shape}; it needs one flag per position, "
                         f"shape ({p_inf.shape[0]},)")
    if s.dtype != np.bool_:
        if not (np.issubdtype(s.dtype, np.integer) and np.isin(s, (0, 1)).all()):
            raise QueryError(f"sparse has dtype {s.dtype}; pass booleans "
                             "(ScoreResult.sparse)")
        s = s.astype(bool)
    return p_inf, p_nn, s


def _lam(value, name: str) -> float:
    try:
        lam = float(value)
    except (TypeError, ValueError):
        lam = math.nan
    if not 0.0 <= lam <= 1.0:
        raise QueryError(f"{name} = {value!r}; a mixture weight must lie within [0, 1]")
    return lam


def mix(p_inf, p_nn, sparse, lam_sparse: float, lam_dense: float) -> np.ndarray:
    """λ·P∞ + (1 − λ)·P_nn per position, λ picked by the position's sparse flag.

    ``p_inf`` and ``p_nn`` are [n] probabilities of the actual tokens or [n, vocab]
    distributions; ``sparse`` has one flag per position. Returns float64 of the
    same shape.
    """
    p_inf, p_nn, s = _check(p_inf, p_nn, sparse)
    lam = np.where(s, _lam(lam_sparse, "lam_sparse"), _lam(lam_dense, "lam_dense"))
    if p_inf.ndim == 2:
        lam = lam[:, None]
    return lam * p_inf + (1.0 - lam) * p_nn


def _mean_nll(p_inf: np.ndarray, p_nn: np.ndarray, lam: float) -> float:
    with np.errstate(divide="ignore"):
        return float(-np.mean(np.log(lam * p_inf + (1.0 - lam) * p_nn)))


def _fit_one(p_inf: np.ndarray, p_nn: np.ndarray) -> float:
    """argmin over λ ∈ [0, 1] of the mean NLL: bisection on its (increasing) derivative."""
    live = (p_inf > 0) | (p_nn > 0)  # where both are 0 every λ is equally infinite
    a, b = p_inf[live], p_nn[live]
    if a.size == 0:
        return 0.0
    d = a - b
    lo, hi = 0.0, 1.0
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        # d/dλ of −Σ log(b + λ·d) is −Σ d / (b + λ·d); finite for 0 < λ < 1
        if np.sum(d / (b + mid * d)) > 0:
            lo = mid
        else:
            hi = mid
    mid = 0.5 * (lo + hi)
    return min((0.0, mid, 1.0), key=lambda lam: _mean_nll(a, b, lam))


def fit(p_inf, p_nn, sparse) -> Lambdas:
    """Weights that minimise perplexity of the mixture on these (validation) tokens.

    ``p_inf`` and ``p_nn`` are [n] probabilities of the actual tokens. The
    negative log-likelihood is convex in λ, so each weight is found exactly
    (to ~1e-15) by bisection on its derivative, the sparse and non-sparse
    positions independently. A group with no positions gets λ = 0 (no
    evidence for the ∞-gram).
    """
    p_inf, p_nn, s = _check(p_inf, p_nn, sparse)
    if p_inf.ndim != 1:
        raise QueryError(f"fit takes [n] probabilities of the actual tokens, got shape "
                         f"{p_inf.shape}; pick each position's token from the distributions")
    return Lambdas(sparse=_fit_one(p_inf[s], p_nn[s]), dense=_fit_one(p_inf[~s], p_nn[~s]))


def _ppl(p: np.ndarray) -> float:
    if p.size == 0:
        return math.nan
    with np.errstate(divide="ignore"):
        return float(np.exp(-np.mean(np.log(p))))


def report(p_inf, p_nn, sparse, effective_n, lambdas: Lambdas,
           hits=None) -> InterpolationReport:
    """Perplexity of the neural model alone and mixed, and ∞-gram accuracy by effective n.

    ``hits[t]`` says whether the argmax of the ∞-gram next-token distribution
    at t is the actual token (see :func:`argmax_hits`); without it, accuracy
    uses "P∞ > 0.5", exact at sparse positions and a lower bound elsewhere.
    """
    p_inf, p_nn, s = _check(p_inf, p_nn, sparse)
    if p_inf.ndim != 1:
        raise QueryError(f"report takes [n] probabilities of the actual tokens, got shape "
                         f"{p_inf.shape}")
    n = p_inf.shape[0]
    eff = np.asarray(effective_n)
    if eff.shape != (n,) or not np.issubdtype(eff.dtype, np.integer) or (eff < 1).any():
        raise QueryError(f"effective_n has shape {eff.shape} and dtype {eff.dtype}; pass "
                         f"{n} integers ≥ 1 (ScoreResult.effective_n = suffix length + 1)")
    if hits is None:
        hit = p_inf > 0.5
    else:
        hit = np.asarray(hits)
        if hit.shape != (n,) or hit.dtype != np.bool_:
            raise QueryError(f"hits has shape {hit.shape} and dtype {hit.dtype}; pass {n} "
                             "booleans (argmax_hits)")
    mixed = mix(p_inf, p_nn, s, lambdas.sparse, lambdas.dense)
    buckets = []
    for lo, hi in ACCURACY_BUCKETS:
        m = (eff >= lo) if hi is None else ((eff >= lo) & (eff <= hi))
        buckets.append(BucketAccuracy(lo, hi, int(m.sum()), int(hit[m].sum())))
    return InterpolationReport(
        tokens=n, lambdas=lambdas,
        ppl_neural=_ppl(p_nn), ppl_interpolated=_ppl(mixed),
        sparse_tokens=int(s.sum()),
        ppl_neural_sparse=_ppl(p_nn[s]), ppl_interpolated_sparse=_ppl(mixed[s]),
        ppl_neural_dense=_ppl(p_nn[~s]), ppl_interpolated_dense=_ppl(mixed[~s]),
        accuracy_sparse=float(hit[s].mean()) if s.any() else math.nan,
        accuracy_dense=float(hit[~s].mean()) if (~s).any() else math.nan,
        buckets=tuple(buckets), accuracy_exact=hits is not None)


def argmax_hits(engine, ids, result) -> np.ndarray:
    """Whether the ∞-gram's most likely next token is the actual one, at every position.

    ``result`` is ``engine.score(ids, ...)`` for the same ``ids``. Exact, ties going
    to the smallest token id: where P∞(actual) > 0.5 it is the argmax, where it
    is 0 it is not, and a sparse estimate is 0 or 1; only the remaining
    positions ask ``engine.infgram_ntd_many`` for the distribution of the
    suffix ``score`` matched (its last effective_n − 1 tokens), each distinct
    suffix once.
    """
    ids = np.asarray(ids)
    p = np.asarray(result.probs)
    if p.shape != ids.shape or ids.ndim != 1:
        raise QueryError(f"result scores {p.shape[0] if p.ndim else 0} positions but ids has "
                         f"shape {ids.shape}; pass the ids that engine.score was given")
    hit = p > 0.5
    todo = np.flatnonzero(~np.asarray(result.sparse) & (p > 0) & (p <= 0.5))
    if todo.size == 0:
        return hit
    suffix_len = np.asarray(result.effective_n)[todo] - 1
    keys = [ids[t - n:t].tobytes() for t, n in zip(todo.tolist(), suffix_len.tolist())]
    unique = dict.fromkeys(keys)
    dists = engine.infgram_ntd_many([np.frombuffer(k, dtype=ids.dtype) for k in unique])
    for k, d in zip(unique, dists):
        counts = np.asarray(d.counts)
        unique[k] = int(np.asarray(d.ids)[counts == counts.max()].min())
    hit[todo] = np.array([unique[k] for k in keys]) == ids[todo]
    return hit
