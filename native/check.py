"""Checking a suffix array in linear time (the `infinigram verify` kernel)."""
import numpy as np

from . import jit
from .ptrs import pointer_at
from .keys import byte_key, width_of


@jit
def first_disorder(tokens, table, pointer):
    """Index of the first bad entry of a suffix-array table, or -1 if it is right.

    Entry i is bad when its byte offset is not a token boundary inside the
    file, repeats an earlier offset, or its suffix does not sort after entry
    i-1's. The order check compares first tokens and then the ranks of the
    suffixes one token later (linear time, no cliff on long repeats).
    """
    n = tokens.shape[0]
    width = width_of(tokens)
    rank = np.full(n + 1, -1, dtype=np.int64)  # rank[n]: the empty suffix
    for i in range(n):
        off = pointer_at(table, i, pointer)
        if off % width != 0 or off // width >= n:
            return i
        p = off // width
        if rank[p] != -1:
            return i
        rank[p] = i
    prev = pointer_at(table, 0, pointer) // width if n else 0
    for i in range(1, n):
        p = pointer_at(table, i, pointer) // width
        a = byte_key(tokens[prev], width)
        b = byte_key(tokens[p], width)
        if a > b or (a == b and rank[prev + 1] > rank[p + 1]):
            return i
        prev = p
    return -1
