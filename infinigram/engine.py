"""The query engine: exact n-gram and ∞-gram queries over an opened index.

``open(path)`` maps every shard read-only. Each shard is served by a
:class:`~infinigram.shard.ShardSearcher` (the answers of that shard alone:
the unit a distributed worker would run); :class:`Engine` validates
queries and combines the shards' answers with numpy (its document queries
live in :mod:`infinigram.documents`).

Semantics shared by the queries:

* ``count`` counts occurrences in the token arrays. Queries never contain
  the separator, so a match never crosses a document boundary.
* For ``prob``/``ntd``/``infgram_*``/``score`` the denominator
  (``prompt_count``) counts the prompt's occurrences FOLLOWED BY A REAL TOKEN, not
  those ending a document or a shard, so next-token probabilities sum to 1.
  The empty prompt stands for every real token (unigram distribution).
* ``prob`` returns ``nan`` with both counts 0 when that denominator is 0;
  the ∞-gram queries back off to the longest suffix of the prompt whose
  denominator is > 0 (``effective_n`` - 1 tokens).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import args, format as fmt, smoothing
from .attribution import AttributionQueries
from .dedup import DedupQueries
from .documents import DocumentQueries
from .errors import ArgumentError, IndexFormatError, QueryError, TokenizerError
from .native import batch
from .results import FindResult, InfGramProb, NextTokenDist, ProbResult, ScoreResult
from .shard import ShardSearcher

_INT_KINDS = "iu"


def open(path, token_width: int | None = None,  # noqa: A001
         tokenizer=None, *, ray=None) -> "Engine":
    """Open an index read-only; ``path`` is its directory, or a list of
    directories opened as one engine (see :func:`open_many`). With ``ray``
    (True, or a cluster address) the shards answer from Ray actors
    (:class:`infinigram.cluster.RayEngine`), one shard each.

    With ``manifest.json`` everything comes from it (``token_width``, if
    given, must agree; ``tokenizer``, if given, replaces the manifest's for
    text queries). An index built by infini-gram (no manifest) opens when
    ``token_width`` is given; ``tokenizer`` is ``"bytes"``, the path of a
    sentencepiece ``.model`` (or a Tokenizer), or None for token ids only.
    """
    if ray is not None and ray is not False:
        from .cluster import RayEngine
        return RayEngine(open(path, token_width, tokenizer), ray)
    if isinstance(path, (list, tuple)):
        return open_many(path, token_width, tokenizer)
    from .tokenizer import resolve_tokenizer
    path = args.path("path", path)
    token_width = args.optional_integer("token_width", token_width, low=1, high=4,
                                        error=ArgumentError)
    tok = None if tokenizer is None else resolve_tokenizer(tokenizer)
    if (path / fmt.MANIFEST).exists() or token_width is None:
        manifest = fmt.read_manifest(path)
        if token_width is not None and token_width != manifest.token_width:
            raise IndexFormatError(
                f"token_width={token_width} was given but {path / fmt.MANIFEST} records "
                f"{manifest.token_width}; leave token_width out for indexes with a manifest")
        shards = fmt.open_index(path, manifest=manifest)
        return Engine((path,), shards, manifest.token_width, manifest.vocab_size,
                      manifest.tokenizer, (manifest,), tok)
    fmt.token_dtype(token_width)
    shards = fmt.open_index(path, width=token_width)
    vocab = fmt.separator(token_width)
    if tok is not None and tok.kind != "none":
        vocab = min(tok.vocab_size, vocab)
    spec = tok.spec() if tok is not None else {"kind": "none"}
    return Engine((path,), shards, token_width, vocab, spec, (None,), tok)


def open_many(paths, token_width: int | None = None, tokenizer=None) -> "Engine":
    """Open several indexes as one engine: every query answers as over the
    concatenated corpora (shards and document numbers continue in the order
    of ``paths``), so an index built later over new data is added without a
    rebuild. The indexes must share token width and tokenizer (and the
    vocabulary, unless they hold token ids only: then the largest is used)."""
    if not paths:
        raise IndexFormatError("no index directory given; pass one or more index directories")
    engines = [open(p, token_width, tokenizer) for p in paths]
    first = engines[0]
    for other in engines[1:]:
        _check_combinable(first, other)
    return Engine(tuple(p for e in engines for p in e.paths),
                  [s for e in engines for s in e.shards], first.token_width,
                  max(e.vocab_size for e in engines), first._spec,
                  tuple(m for e in engines for m in e.manifests), first._tokenizer,
                  tuple(d for e in engines for d in e.shard_dirs))


def _tokenizer_key(spec: dict) -> tuple:
    """What makes two tokenizer specs the same tokenizer (not its file name)."""
    return spec.get("kind"), spec.get("sha256")


def _check_combinable(a: "Engine", b: "Engine") -> None:
    """Raise unless ``b`` can be queried together with ``a``."""
    fix = "open them separately, or rebuild one with the other's tokenizer"
    if a.token_width != b.token_width:
        problem = f"token width {a.token_width} vs {b.token_width}"
    elif _tokenizer_key(a._spec) != _tokenizer_key(b._spec):
        problem = f"tokenizer {_tokenizer_key(a._spec)} vs {_tokenizer_key(b._spec)}"
    elif a._spec.get("kind") != "none" and a.vocab_size != b.vocab_size:
        problem = f"vocabulary size {a.vocab_size} vs {b.vocab_size}"
    else:
        return
    raise IndexFormatError(f"indexes {a.path} and {b.path} cannot be combined: {problem}; {fix}")


class Engine(DocumentQueries, AttributionQueries, DedupQueries):
    """An opened index. Queries take text (str, or UTF-8 bytes) tokenized
    with the index's tokenizer, a list of ints, or a 1-D integer array."""

    def __init__(self, paths: tuple[Path, ...], shards: list[fmt.Shard], width: int,
                 vocab_size: int, tokenizer_spec: dict,
                 manifests: tuple[fmt.Manifest | None, ...], tokenizer=None,
                 shard_dirs: tuple[Path, ...] | None = None):
        self.paths = paths
        self.path = paths[0]
        self.shard_dirs = shard_dirs or (self.path,) * len(shards)
        """The index directory of each shard."""
        self._shards = tuple(shards)
        self._searchers = tuple(ShardSearcher(s) for s in shards)
        self._width = width
        self._vocab = vocab_size
        self._spec = tokenizer_spec
        self._tokenizer = tokenizer  # loaded from the spec on first use when None
        self._manifests = manifests
        self._methods: dict[str, tuple] = {}
        self._sizes = np.array([(s.n_tokens, s.n_docs) for s in shards], dtype=np.int64).reshape(-1, 2)
        self._doc_base = np.concatenate([[0], np.cumsum(self._sizes[:, 1])])

    def _fan(self, method: str, *args) -> list:
        """``method(*args)`` of every shard's searcher, in shard order: the
        one place where per-shard work runs (a Ray engine runs it where the
        shards live); the query methods combine what it returns."""
        return [f(*args) for f in self._methods.get(method) or self._bind(method)]

    def _bind(self, method: str) -> tuple:
        """Every searcher's bound ``method``, kept for the next query."""
        found = self._methods[method] = tuple(getattr(s, method) for s in self._searchers)
        return found

    def _on(self, k: int, method: str, *args):
        """``method(*args)`` of shard ``k``'s searcher alone."""
        return getattr(self._searchers[k], method)(*args)

    # ---- properties -------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        """Real tokens in the index (separators excluded)."""
        return int((self._sizes[:, 0] - self._sizes[:, 1]).sum())

    @property
    def n_docs(self) -> int:
        return int(self._doc_base[-1])

    @property
    def vocab_size(self) -> int:
        return self._vocab

    @property
    def token_width(self) -> int:
        return self._width

    @property
    def separator(self) -> int:
        return fmt.separator(self._width)

    @property
    def shards(self) -> tuple[fmt.Shard, ...]:
        return self._shards

    @property
    def searchers(self) -> tuple[ShardSearcher, ...]:
        """The per-shard query objects."""
        return self._searchers

    @property
    def manifest(self) -> fmt.Manifest | None:
        """The (first) index's manifest; None for an index built by infini-gram."""
        return self._manifests[0]

    @property
    def manifests(self) -> tuple[fmt.Manifest | None, ...]:
        """The manifest of each index directory in ``paths``."""
        return self._manifests

    @property
    def tokenizer(self):
        """The index's tokenizer (loaded on first use); None for ids-only indexes."""
        if self._tokenizer is None:
            from .tokenizer import load_tokenizer
            self._tokenizer = load_tokenizer(self._spec, self.path)
        return None if self._tokenizer.kind == "none" else self._tokenizer

    def tokenize(self, text: str) -> np.ndarray:
        """Token ids of ``text`` with the index's tokenizer."""
        tok = self.tokenizer
        if tok is None:
            raise QueryError(
                f"text query {text[:40]!r}: this index has no tokenizer (token ids only); "
                "pass token ids, or open the index with tokenizer='bytes' or a .model path")
        try:
            return np.asarray(tok.encode(text), dtype=np.int64)
        except TokenizerError as e:
            raise QueryError(f"text query {text[:40]!r} cannot be tokenized: {e}") from None

    def decode(self, ids) -> str:
        """Text of token ids (needs a tokenizer)."""
        tok = self.tokenizer
        if tok is None:
            raise QueryError("this index has no tokenizer (token ids only); decode cannot make text")
        return tok.decode(ids)

    # ---- validation -------------------------------------------------------
    def _ids(self, q, empty_ok: bool = False) -> np.ndarray:
        """A query as validated int64 token ids; raises QueryError naming the
        bad value, its position and the fix."""
        if isinstance(q, str):
            ids = self.tokenize(q)
        elif isinstance(q, bytes):
            try:
                text = q.decode("utf-8")
            except UnicodeDecodeError as e:
                raise QueryError(
                    f"bytes query is not valid UTF-8 ({e.reason} at byte {e.start}); "
                    "pass UTF-8 bytes, a str, or token ids") from None
            ids = self.tokenize(text)
        elif isinstance(q, (np.ndarray, list, tuple)):
            ids = args.ids(q, self._vocab, separator=self.separator)
        else:
            raise QueryError(
                f"query of type {type(q).__name__} is not supported; pass text, UTF-8 bytes, "
                "a list of ints or a 1-D integer numpy array")
        if ids.shape[0] == 0 and not empty_ok:
            raise QueryError("the query is empty; pass at least one token (or non-empty text)")
        return ids

    def _next_id(self, next_id) -> int:
        return args.integer("next_id", next_id, high=self._vocab - 1)

    # ---- counting ---------------------------------------------------------
    def count(self, q) -> int:
        """Occurrences of the n-gram ``q`` in the corpus."""
        ids, low = args.fast_ids(q)
        if ids is None or not len(ids):  # the general path: text, other types, errors
            ids, low = self._ids(q), 0
        counts = self._fan("count", ids, low, self._vocab)
        if -1 in counts:  # an id outside [low, vocab): the general path names it or clears it
            return self.count(self._ids(q))
        return int(sum(counts))

    def count_many(self, queries, *, offsets=None) -> np.ndarray:
        """Counts of many n-grams (int64). ``queries`` is a 2-D integer array
        with one n-gram per row, a list of queries (lists of ints, integer
        arrays of any dtypes, text), a pyarrow list column, or with
        ``offsets`` a flat 1-D integer array whose query j is
        ``queries[offsets[j]:offsets[j + 1]]`` (pyarrow's ``.values`` and
        ``.offsets``)."""
        flat, bounds = self._many_ids(queries, offsets)
        order = batch.visit_order(flat, bounds, self._width)
        out = np.zeros(len(bounds) - 1, dtype=np.int64)
        for counts in self._fan("count_many", flat, bounds, order):
            out += counts
        return out

    def _many_ids(self, queries, offsets) -> tuple[np.ndarray, np.ndarray]:
        """(validated int64 flat ids, bounds) of ``count_many``'s queries:
        query j is ``flat[bounds[j]:bounds[j + 1]]``."""
        original = None
        if offsets is not None:
            flat, bounds = args.offsets(queries, offsets)
        elif isinstance(queries, np.ndarray):
            if queries.ndim != 2 or queries.dtype.kind not in _INT_KINDS:
                raise QueryError(
                    f"count_many array has shape {queries.shape} and dtype {queries.dtype}; "
                    "pass a 2-D integer array (one n-gram per row) or a list of queries")
            n, k = queries.shape
            flat, bounds = queries.reshape(-1), np.arange(n + 1, dtype=np.int64) * k
        elif (arrow := args.arrow_lists(queries)) is not None:
            flat, bounds = arrow
        elif not isinstance(queries, (list, tuple)):
            raise _not_a_batch("count_many", queries)
        elif not queries:
            return np.zeros(0, np.int64), np.zeros(1, np.int64)
        else:
            (flat, bounds), original = args.batch(queries), queries
            if flat is None:  # the general path: text, tuples, other types, errors
                arrays = [self._ids(q) for q in queries]
                bounds = np.zeros(len(arrays) + 1, dtype=np.int64)
                np.cumsum(np.fromiter(map(len, arrays), np.int64, len(arrays)), out=bounds[1:])
                return np.concatenate(arrays), bounds
        flat = args.check_range(flat, self._vocab, original=original, bounds=bounds,
                                separator=self.separator)
        if (empty := np.flatnonzero(bounds[1:] == bounds[:-1])).size:
            raise QueryError(f"query {int(empty[0])} of count_many is empty; "
                             "pass at least one token per query")
        return flat, bounds

    def find(self, q) -> FindResult:
        """Total count and the suffix-array range of ``q`` in every shard."""
        ids = self._ids(q)
        ranges = tuple((k, *r) for k, r in enumerate(self._fan("range", ids)))
        return FindResult(sum(e - b for _, b, e in ranges), ranges)

    # ---- probabilities ----------------------------------------------------
    def prob(self, prompt, next_id) -> ProbResult:
        """P(next_id | prompt) = cont_count / prompt_count, where prompt_count
        counts the prompt's occurrences followed by a real token; prob is nan
        (with both counts 0) when there is none. Empty prompt: unigram."""
        ids = self._ids(prompt, empty_ok=True)
        nid = self._next_id(next_id)
        parts = self._fan("prob_counts", ids, nid)
        total, cont = (sum(x) for x in zip(*parts)) if parts else (0, 0)
        return ProbResult(cont / total if total else float("nan"), total, cont)

    def ntd(self, prompt) -> NextTokenDist:
        """Exact distribution of the token following ``prompt`` (every
        distinct next token, no sampling); empty prompt: unigram."""
        ids = self._ids(prompt, empty_ok=True)
        return _merge(self._fan("prompt_next_tokens", ids), len(ids) + 1)

    def infgram_prob(self, prompt, next_id) -> InfGramProb:
        """∞-gram P(next_id | prompt): backs off to the longest suffix of the
        prompt that occurs followed by a real token (the empty suffix stands
        for all real tokens); nan only when the index has no real token."""
        ids, low = args.fast_ids(prompt)
        if ids is None:
            ids, low = self._ids(prompt, empty_ok=True), 0
        nid = self._next_id(next_id)
        L = -1
        total = cont = 0
        for l_s, t, c in self._fan("infgram_counts", ids, nid, low, self._vocab):
            if l_s == -2:  # an id outside [low, vocab): the general path names it or clears it
                return self.infgram_prob(self._ids(prompt, empty_ok=True), next_id)
            if l_s > L:
                L, total, cont = l_s, 0, 0
            if l_s == L:
                total += t
                cont += c
        return InfGramProb(cont / total if total else float("nan"), int(total), int(cont), max(int(L), 0) + 1)

    def infgram_ntd(self, prompt) -> NextTokenDist:
        """Exact next-token distribution on the prompt's longest usable suffix."""
        ids = self._ids(prompt, empty_ok=True)
        L = max(max((f[0] for f in self._fan("longest_usable", ids)), default=-1), 0)
        # shards whose own longest usable suffix is shorter have no real
        # token after the suffix of length L: they add nothing
        return _merge(self._fan("prompt_next_tokens", ids[len(ids) - L:]), L + 1)

    def infgram_ntd_many(self, contexts, dense: bool = False):
        """infgram_ntd of each context: a list of NextTokenDist (result
        objects come back as a list, numbers as an array), or with ``dense``
        a float64 array [len(contexts), vocab_size] of probabilities."""
        dists = [self.infgram_ntd(c) for c in _batch("infgram_ntd_many", contexts)]
        if not dense:
            return dists
        out = np.zeros((len(dists), self._vocab), dtype=np.float64)
        for row, d in zip(out, dists):
            row[d.ids] = d.probs
        return out

    def score(self, ids, max_context: int | None = None) -> ScoreResult:
        """∞-gram score of every position t of a sequence: P(ids[t] | ids[:t])
        on the longest usable suffix of ids[:t] (at most ``max_context``
        tokens), equal to ``infgram_prob(ids[:t], ids[t])``, in one pass."""
        seq = self._ids(ids, empty_ok=True)
        max_context = args.optional_integer("max_context", max_context)
        context = len(seq) if max_context is None else min(max_context, len(seq))
        parts = self._fan("score", seq, context)
        n = len(seq)
        if not parts:
            parts = [(np.full(n, -1), np.zeros(n, np.int64), np.zeros(n, np.int64),
                      np.full(n, -1), np.full(n, -1))]
        L_s, tot_s, cnt_s, first_s, last_s = (np.stack(x) for x in zip(*parts))
        L = L_s.max(axis=0)
        use = L_s == L
        total = np.where(use, tot_s, 0).sum(axis=0)
        cont = np.where(use, cnt_s, 0).sum(axis=0)
        big = np.iinfo(np.int64).max
        f_min = np.where(use, first_s, big).min(axis=0)
        f_max = np.where(use, first_s, -1).max(axis=0)
        one = ((first_s == last_s) | ~use).all(axis=0) & (f_min == f_max) & (total > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            probs = np.where(total > 0, cont / np.maximum(total, 1), np.nan)
        return ScoreResult(probs, np.maximum(L, 0) + 1, total, cont, one)

    # ---- Kneser-Ney and sampling (infinigram.smoothing) --------------------
    def kn_dist(self, prompt, n, modified: bool = False) -> np.ndarray:
        """Interpolated Kneser-Ney P(. | the last n-1 tokens of ``prompt``):
        a float64 array of ``vocab_size`` probabilities; ``modified``: three
        discounts per order (see :mod:`infinigram.smoothing` for the estimators)."""
        return smoothing.model(self).dist(self._ids(prompt, empty_ok=True), smoothing.order(n),
                                          args.flag("modified", modified))

    def kn_prob(self, prompt, next_id, n, modified: bool = False) -> float:
        """Interpolated Kneser-Ney P(next_id | the last n-1 tokens of ``prompt``)."""
        return float(self.kn_dist(prompt, n, modified)[self._next_id(next_id)])

    def kn_dist_many(self, prompts, n, modified: bool = False) -> np.ndarray:
        """kn_dist of each prompt: a float64 array [len(prompts), vocab_size]."""
        out = np.zeros((len(_batch("kn_dist_many", prompts)), self._vocab), np.float64)
        for row, p in zip(out, prompts):
            row[:] = self.kn_dist(p, n, modified)
        return out

    def kn_prob_many(self, prompts, next_ids, n, modified: bool = False) -> np.ndarray:
        """kn_prob of each (prompt, next id) pair: a float64 array."""
        prompts = _batch("kn_prob_many", prompts)
        if not isinstance(next_ids, (list, tuple, np.ndarray)):
            raise QueryError(f"kn_prob_many next_ids={next_ids!r:.40} is not a list or array; "
                             "pass one next id per prompt")
        if len(next_ids) != len(prompts):
            raise QueryError(f"kn_prob_many got {len(prompts)} prompts and {len(next_ids)} "
                             "next ids; pass one next id per prompt")
        return np.array([self.kn_prob(p, t, n, modified) for p, t in zip(prompts, next_ids)],
                        np.float64)

    def sample(self, prompt, k, n, smoothed: bool = True, seed=None,
               modified: bool = False) -> np.ndarray:
        """k token ids generated after ``prompt``, each drawn given the last
        n-1 tokens so far: from ``kn_dist`` (``smoothed``; ``modified`` as
        there), or from the exact next-token counts of the longest suffix of
        those n-1 tokens that is followed by a real token (unsmoothed; the
        empty suffix: unigram). The same ``seed`` (numpy ``default_rng``)
        gives the same tokens."""
        ids = self._ids(prompt, empty_ok=True)
        k = args.integer("k", k)
        seed = args.optional_integer("seed", seed)
        return smoothing.sample(self, ids, k, smoothing.order(n), args.flag("smoothed", smoothed),
                                seed, args.flag("modified", modified))

    def score_many(self, seqs, max_context: int | None = None) -> list[ScoreResult]:
        """score() of each sequence."""
        return [self.score(s, max_context) for s in _batch("score_many", seqs)]


def _batch(name: str, items) -> list | tuple | np.ndarray:
    """The queries of a batch method: a list, a tuple or a 2-D array of them."""
    if isinstance(items, (list, tuple)) or isinstance(items, np.ndarray) and items.ndim == 2:
        return items
    raise _not_a_batch(name, items)


def _not_a_batch(name: str, items) -> QueryError:
    """The error for ``items`` that are no batch of queries."""
    return QueryError(f"{name} takes a list of queries or a 2-D integer array, not "
                      f"{type(items).__name__} {items!r:.40}")


def _merge(parts, effective_n: int) -> NextTokenDist:
    """Sum per-shard (ids, counts) tallies (ids ascending) into one distribution."""
    if len(parts) == 1:
        ids, counts = parts[0]
        return NextTokenDist(ids, counts, int(counts.sum()), effective_n)
    ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    counts = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    uniq, inv = np.unique(ids, return_inverse=True)
    summed = np.bincount(inv, weights=counts, minlength=len(uniq)).astype(np.int64)
    return NextTokenDist(uniq, summed, int(summed.sum()), effective_n)
