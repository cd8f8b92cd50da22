"""Brute-force oracles: plain Python scans of the token array.

Slow by design and obviously right; every kernel and query is checked
against these on small corpora.
"""
import bisect

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


def doubling_suffix_array(tokens: np.ndarray) -> np.ndarray:
    """Same order as naive_suffix_array by prefix doubling with numpy sorts
    (fast enough for 10^5-token adversarial corpora)."""
    t = np.ascontiguousarray(tokens)
    n = len(t)
    key = t.astype(t.dtype.newbyteorder(">")).view(f"u{t.dtype.itemsize}").astype(np.int64) \
        if t.dtype.itemsize > 1 else t.astype(np.int64)
    rank = np.unique(key, return_inverse=True)[1].astype(np.int64)
    order = np.argsort(rank, kind="stable")
    k = 1
    while n and k < n and len(np.unique(rank)) < n:
        second = np.full(n, -1, dtype=np.int64)  # -1: the suffix ends (sorts first)
        second[:n - k] = rank[k:]
        order = np.lexsort((second, rank))
        pair = np.stack([rank[order], second[order]], axis=1)
        new = np.concatenate([[0], np.cumsum((np.diff(pair, axis=0) != 0).any(axis=1))])
        rank = np.empty(n, dtype=np.int64)
        rank[order] = new
        k *= 2
    return order.astype(np.int64)


def naive_positions(tokens: np.ndarray, query) -> np.ndarray:
    """Start indexes of every occurrence of ``query`` in one token array."""
    q = np.asarray(query, dtype=np.int64)
    t = np.asarray(tokens, dtype=np.int64)
    m = len(q)
    if m == 0 or m > len(t):
        return np.zeros(0, dtype=np.int64)
    found = np.flatnonzero(t[m - 1:] == q[-1])  # the last token first: cheap when it is rare
    win = np.lib.stride_tricks.sliding_window_view(t, m)
    return found[(win[found] == q).all(axis=1)]


def naive_count(shards, query) -> int:
    """Occurrences of ``query`` over a list of shard token arrays."""
    return sum(len(naive_positions(t, query)) for t in shards)


def naive_next_counts(shards, prompt) -> dict:
    """{token: count} of the real tokens that follow ``prompt`` (the empty
    prompt: every real token) over a list of shard token arrays."""
    out: dict = {}
    for t in shards:
        sep = (1 << (8 * t.dtype.itemsize)) - 1
        m = len(prompt)
        starts = np.arange(len(t)) if m == 0 else naive_positions(t, prompt)
        after = t[starts[starts + m < len(t)] + m].astype(np.int64)
        ids, counts = np.unique(after[after != sep], return_counts=True)
        for i, c in zip(ids.tolist(), counts.tolist()):
            out[i] = out.get(i, 0) + c
    return out


def naive_infgram(shards, prompt) -> tuple:
    """(suffix_len, next counts) on the longest suffix of ``prompt`` followed
    by a real token somewhere; (0, {}) when there is no real token at all."""
    prompt = list(prompt)
    for length in range(len(prompt), -1, -1):
        counts = naive_next_counts(shards, prompt[len(prompt) - length:])
        if counts:
            return length, counts
    return 0, {}


def naive_doc_hits(docs, query) -> list:
    """(doc_ix, first match offset) of each document containing ``query``."""
    out = []
    for d, doc in enumerate(docs):
        pos = naive_positions(np.asarray(doc, dtype=np.int64), query)
        if len(pos):
            out.append((d, int(pos[0])))
    return out


def naive_cnf_matches(docs, cnf, window: int) -> list:
    """(document, start p, longest first-clause n-gram at p) of every start p
    of a first-clause n-gram such that every other clause has an n-gram
    starting at q in the same document with |q - p| <= window."""
    out = []
    for d, doc in enumerate(docs):
        doc = np.asarray(doc, dtype=np.int64)
        at = [[set(naive_positions(doc, q).tolist()) for q in c] for c in cnf]
        others = [sorted(set().union(*c)) for c in at[1:]]
        for p in sorted(set().union(*at[0])):
            near = (bisect.bisect_left(s, p - window) for s in others)
            if all(i < len(s) and s[i] <= p + window for i, s in zip(near, others)):
                out.append((d, p, max(len(q) for q, ps in zip(cnf[0], at[0]) if p in ps)))
    return out


def naive_count_cnf(docs, cnf, window: int) -> int:
    """Matches of a CNF query (see naive_cnf_matches)."""
    return len(naive_cnf_matches(docs, cnf, window))


def naive_creativity(shards, query) -> list:
    """Per start i: the longest prefix of query[i:] occurring in some shard
    (the occurrences of query[i], kept while the next token agrees)."""
    out = []
    for i in range(len(query)):
        best = 0
        for t in shards:
            t = np.asarray(t, dtype=np.int64)
            at, m = np.flatnonzero(t == query[i]), 0
            while len(at):
                m += 1
                if i + m == len(query):
                    break
                at = at[at + m < len(t)]
                at = at[t[at + m] == query[i + m]]
            best = max(best, m)
        out.append(best)
    return out


def naive_occurrences(shards, query) -> list:
    """(global document, token offset in it) of every occurrence of ``query``."""
    out, base = [], 0
    for t in shards:
        seps = np.flatnonzero(t == (1 << (8 * t.dtype.itemsize)) - 1)
        p = naive_positions(t, query)
        d = np.searchsorted(seps, p, side="right") - 1
        out += zip((base + d).tolist(), (p - seps[d] - 1).tolist())
        base += len(seps)
    return sorted(out)


def naive_attribute(shards, query, min_len=1, max_count=None, delimiters=(), lengths=None,
                    bow=None) -> list:
    """(start, end, count) of infini-gram's attribution spans, by its own
    rule: at each start the longest match, cut after its first delimiter
    (unless that is its last token), kept when long enough, counted at most
    ``max_count`` times and ending after every span kept before it.
    ``lengths``: ``naive_creativity(shards, query)``, if already known.
    With ``bow`` (the ids that begin a word): only starts at such ids, each
    span shortened until the token after it is one (or the query ends)."""
    spans, last = [], 0
    for i, m in enumerate(naive_creativity(shards, query) if lengths is None else lengths):
        if bow is not None and query[i] not in bow:
            continue
        for pos in range(i, i + m - 1):
            if query[pos] in delimiters:
                m = pos + 1 - i
                break
        while bow is not None and m > 0 and i + m < len(query) and query[i + m] not in bow:
            m -= 1
        if m < min_len:
            continue
        c = naive_count(shards, query[i:i + m])
        if max_count is not None and c > max_count:
            continue
        if i + m > last:
            last = i + m
            spans.append((i, i + m, c))
    return spans


def naive_overlap(shards, docs, n) -> tuple[list, list]:
    """Per document: its n-grams and how many of them are among the
    shards' n-grams (every window of n tokens)."""
    corpus = {tuple(t[i:i + n].tolist()) for t in shards for i in range(len(t) - n + 1)}
    sizes, found = [], []
    for d in docs:
        grams = [tuple(int(x) for x in d[i:i + n]) for i in range(len(d) - n + 1)]
        sizes.append(len(grams))
        found.append(sum(g in corpus for g in grams))
    return sizes, found


def naive_dedup(docs, L: int) -> list[tuple[int, int, int]]:
    """(document, token start, token end) of ``Engine.dedup``'s spans: every
    window [p, p + L) inside a document whose tokens occurred earlier in
    the corpus, united per document into maximal runs."""
    seen, out = set(), []
    for d, doc in enumerate(docs):
        doc = [int(t) for t in doc]
        covered = [False] * len(doc)
        for p in range(len(doc) - L + 1):
            gram = tuple(doc[p:p + L])
            if gram in seen:
                covered[p:p + L] = [True] * L
            seen.add(gram)
        p = 0
        while p < len(doc):
            if covered[p]:
                q = p
                while q < len(doc) and covered[q]:
                    q += 1
                out.append((d, p, q))
                p = q
            else:
                p += 1
    return out
