"""The ∞-gram: longest usable suffixes of a prompt, and scoring every
position of a sequence (conventions in :mod:`.search`)."""
import numpy as np

from . import jit, lean
from .keys import byte_key, width_of
from .search import search_span, suffix
from .tally import continuation, continuing, next_group


@lean
def _usable(s, q, length):
    """Range of the last ``length`` query ids and whether it is usable
    (some occurrence is followed by a real token)."""
    N = len(q)
    lo, hi = search_span(s, q, N - length, N)
    a, b = continuing(s, length, lo, hi)
    return b > a, lo, hi


@lean
def longest_usable(s, ids):
    """(L, lo, hi): the longest suffix of ``ids`` (L tokens) that occurs
    followed by a real token, and its range; L = -1 when the shard holds no
    real token. Checks the whole prompt first, then gallops up from short
    lengths and bisects (usable-ness is monotone in the length)."""
    n = s.tokens.shape[0]
    q, N = ids, len(ids)
    a, b = continuing(s, 0, 0, n)
    if b <= a:
        return -1, 0, 0
    if N == 0:
        return 0, 0, n
    ok, lo, hi = _usable(s, q, N)
    if ok:
        return N, lo, hi
    good, glo, ghi = 0, 0, n
    bad = N
    length = 1
    while length < bad:
        ok, lo, hi = _usable(s, q, length)
        if not ok:
            bad = length
            break
        good, glo, ghi = length, lo, hi
        length *= 2
    while bad - good > 1:
        mid = (good + bad) >> 1
        ok, lo, hi = _usable(s, q, mid)
        if ok:
            good, glo, ghi = mid, lo, hi
        else:
            bad = mid
    return good, glo, ghi


@lean
def infgram_counts(s, ids, next_id, low, vocab):
    """(L, total, count) on this shard: ``longest_usable`` length of ``ids``
    and the continuation counts of ``next_id`` there; L = -2 when some id
    is outside [low, vocab) (the caller then checks it)."""
    for j in range(len(ids)):
        if ids[j] < low or ids[j] >= vocab:
            return np.int64(-2), np.int64(0), np.int64(0)
    L, lo, hi = longest_usable(s, ids)
    if L < 0:
        return L, np.int64(0), np.int64(0)
    total, cnt = continuation(s, L, lo, hi, next_id)
    return L, total, cnt


@jit
def score(s, ids, max_context):
    """Per position t of ``ids``, on this shard: the longest usable suffix
    length L[t] of ids[:t] (at most ``max_context``; -1 if the shard holds
    no real token), the continuation total there, the count of ids[t], and
    the first/last distinct next token ids (key order; -1 if none).

    One pass with matching statistics: L[t+1] <= L[t] + 1, so the range of
    ids[a:t+1] is the group of ids[t] inside the range of ids[a:t]; leading
    tokens are dropped (a fresh search each) only while that is unusable.
    """
    tokens = s.tokens
    n = tokens.shape[0]
    width = width_of(tokens)
    N = len(ids)
    L = np.full(N, -1, dtype=np.int64)
    total = np.zeros(N, dtype=np.int64)
    count = np.zeros(N, dtype=np.int64)
    first = np.full(N, -1, dtype=np.int64)
    last = np.full(N, -1, dtype=np.int64)
    a0, b0 = continuing(s, 0, 0, n)
    if b0 <= a0:
        return L, total, count, first, last
    start = 0  # the context is ids[start:t]
    lo, hi = 0, n
    a, b = a0, b0
    for t in range(N):
        m = t - start
        L[t] = m
        total[t] = b - a
        first[t] = tokens[suffix(s, a) + m]
        last[t] = tokens[suffix(s, b - 1) + m]
        lo, hi = next_group(s, m, a, b, byte_key(ids[t], width))
        count[t] = hi - lo
        if t + 1 == N:
            break
        m += 1
        while True:
            if m <= max_context and hi > lo:
                a, b = continuing(s, m, lo, hi)
                if b > a:
                    break
            start += 1
            m -= 1
            if m == 0:
                lo, hi, a, b = 0, n, a0, b0
                break
            lo, hi = search_span(s, ids, start, t + 1)
    return L, total, count, first, last
