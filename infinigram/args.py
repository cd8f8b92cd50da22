"""Checks and conversion of public arguments: integers, token ids, sizes.

Every public function converts its integer arguments here, so any Python or
numpy integer (not a bool) within bounds becomes a Python int, and anything
else is one error naming the argument, the value and the allowed range:
never a wraparound, an OverflowError or a compiled kernel's TypeError.
"""
from __future__ import annotations

import os
import re
import sys
from array import array
from fractions import Fraction
from operator import attrgetter
from pathlib import Path

import numpy as np

from .errors import ArgumentError, QueryError

INT64_MAX = (1 << 63) - 1
"""Default upper bound: every converted integer fits the kernels' int64."""

_INT = {int}
_LIST = {list}
_NDARRAY = {np.ndarray}
_DTYPE = attrgetter("dtype")
_INT64 = np.dtype(np.int64)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


def is_int(value) -> bool:
    """Whether ``value`` is a Python or numpy integer (bools are not)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _bounds(low: int, high: int) -> str:
    return f"[{low}, {'2**63 - 1' if high == INT64_MAX else high}]"


def integer(name: str, value, *, low: int = 0, high: int = INT64_MAX,
            error: type[Exception] = QueryError) -> int:
    """``value`` as a Python int in [low, high]; ``error`` names it otherwise."""
    if not is_int(value):
        raise error(f"{name}={value!r:.60} is not an integer; pass an int in {_bounds(low, high)}")
    v = int(value)
    if not low <= v <= high:
        raise error(f"{name}={v} is out of range; pass an int in {_bounds(low, high)}")
    return v


def optional_integer(name: str, value, **bounds) -> int | None:
    """None, or ``integer(name, value, **bounds)``."""
    return None if value is None else integer(name, value, **bounds)


def flag(name: str, value, *, error: type[Exception] = QueryError) -> bool:
    """``value`` as a bool (Python or numpy); ``error`` names it otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise error(f"{name}={value!r:.40} is not a bool; pass True or False")
    return bool(value)


def size_bytes(name: str, value, *, error: type[Exception] = ArgumentError) -> int:
    """A positive number of bytes from an int or a size string such as
    '512M', '2G', '1.5g', '100k', '64KiB' or '4096' (units are powers of 1024)."""
    n = value
    if isinstance(value, str):
        m = _SIZE_RE.fullmatch(value.strip())
        n = int(Fraction(m.group(1)) * _UNITS[m.group(2).lower()]) if m else None
    if not is_int(n) or not 1 <= n <= INT64_MAX:
        raise error(f"{name}={value!r:.60} is not a positive size; pass a number of bytes "
                    "or a size such as 512M or 2G (at most 2**63 - 1 bytes)")
    return int(n)


def optional_size(name: str, value) -> int | None:
    """None (no bound), or ``size_bytes(name, value)``."""
    return None if value is None else size_bytes(name, value)


def threads(value) -> int:
    """A thread count (any integer >= 1), or every core this process may use for None."""
    if value is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
    return integer("threads", value, low=1, high=1 << 16, error=ArgumentError)


def path(name: str, value, *, error: type[Exception] = ArgumentError) -> Path:
    """``value`` (a non-empty str or os.PathLike, no NUL) as a Path."""
    if not isinstance(value, (str, os.PathLike)) or os.fspath(value) in ("", b"") \
            or "\0" in str(os.fspath(value)):
        raise error(f"{name}={value!r:.60} is not a path; pass a non-empty str or pathlib.Path "
                    "without NUL characters")
    return Path(value)


def strings(name: str, value, *, error: type[Exception] = ArgumentError) -> tuple[str, ...]:
    """A tuple of strings from one string (not split into characters) or an
    iterable of them."""
    items = (value,) if isinstance(value, str) else value
    try:
        items = tuple(items)
    except TypeError:
        items = None
    if items is None or not all(isinstance(s, str) for s in items):
        raise error(f"{name}={value!r:.60} must be a string or a list of strings")
    return items


# ---- token ids ------------------------------------------------------------
def fast_ids(q) -> tuple[np.ndarray | array | None, int]:
    """(ids, low) of a list of ints (as ``array('q')``: quicker to make and to
    pass than an ndarray) or of a C-contiguous int64 array, unchecked: the
    kernels report ids outside [low, vocab) and the caller then takes the
    checked path (``ids``). array('q') also takes bools, which equal 0 and
    1, so for a list low is 2: ids 0 and 1 take the checked path too.
    (None, 0) for any other query."""
    if type(q) is list:
        try:
            return array("q", q), 2
        except (TypeError, OverflowError):
            return None, 0
    if type(q) is np.ndarray and q.dtype is _INT64 and q.ndim == 1 and q.flags.c_contiguous:
        return q, 0
    return None, 0


def _int64(values) -> np.ndarray | None:
    """int64 array of a sequence made only of Python ints that fit (no
    Python loop); None when some element is anything else."""
    if values and set(map(type, values)) != _INT:
        return None
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        return None


def ids(q, vocab: int, *, separator: int | None = None, what: str = "query",
        error: type[Exception] = QueryError) -> np.ndarray:
    """int64 ids of a 1-D integer array or a list/tuple of integers, each in
    [0, vocab); ``error`` names the first bad element and its position.
    Other sequences (a tensor, a range) go through ``np.asarray``."""
    if not isinstance(q, (list, tuple)):
        q = np.asarray(q)
    if isinstance(q, np.ndarray):
        if q.ndim != 1:
            raise error(f"{what} array has shape {q.shape}; pass a 1-D array of token ids")
        if q.size and q.dtype.kind not in "iu":
            raise error(f"{what} array has dtype {q.dtype}; pass integer token ids "
                        "(e.g. .astype(np.int64))")
        return check_range(q, vocab, separator=separator, what=what, error=error)
    arr = _int64(q)
    if arr is None:
        for j, x in enumerate(q):
            if not is_int(x):
                raise error(f"{what} element {x!r:.40} at position {j} is not an integer token "
                            "id; pass a flat sequence of integer ids")
        arr = np.array([int(x) if -INT64_MAX <= x <= INT64_MAX else -1 for x in q],
                       dtype=np.int64)
    return check_range(arr, vocab, original=q, separator=separator, what=what, error=error)


def batch(queries) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(flat ids, bounds) of a non-empty batch whose queries are all 1-D
    integer arrays (any mix of integer dtypes) or all lists of Python ints:
    count_many's fast path, unchecked (``check_range`` with ``original``
    set to the queries checks it); (None, None) when some query needs ``ids``."""
    kinds = set(map(type, queries))
    if kinds != _NDARRAY and kinds != _LIST:
        return None, None
    bounds = np.zeros(len(queries) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, queries), dtype=np.int64, count=len(queries)), out=bounds[1:])
    flat = _flat_arrays(queries) if kinds == _NDARRAY else _flat_lists(queries, bounds)
    return (None, None) if flat is None else (flat, bounds)


def _flat_arrays(arrays: list) -> np.ndarray | None:
    """1-D integer arrays concatenated as int64 (uint64 ids from 2**63 wrap
    negative, which ``check_range`` rejects), or None for any other array."""
    if any(dt.kind not in "iu" for dt in set(map(_DTYPE, arrays))):
        return None
    try:
        flat = np.concatenate(arrays, dtype=np.int64)
    except ValueError:  # 0-d arrays, or 1-D ones mixed with 2-D ones
        return None
    return flat if flat.ndim == 1 else None


def _flat_lists(lists: list, bounds: np.ndarray) -> np.ndarray | None:
    """Lists of Python ints concatenated as int64, or None when some element
    is anything else: ``array('q')`` refuses floats, strings, sequences and
    ints beyond int64, and bools, which it takes as 0 and 1, are looked for
    among the elements below 2 alone (query j starts at ``bounds[j]``)."""
    out = array("q")
    try:  # fromlist returns None, so any() runs it on every list, in C
        any(map(out.fromlist, lists))
    except (TypeError, OverflowError):
        return None
    flat = np.frombuffer(out, dtype=np.int64)
    small = np.flatnonzero(flat < 2)
    if small.size:
        query = np.searchsorted(bounds, small, side="right") - 1
        if not all(is_int(lists[j][i - bounds[j]]) for i, j in zip(small.tolist(), query.tolist())):
            return None
    return flat


def offsets(flat, offsets) -> tuple[np.ndarray, np.ndarray]:
    """(flat, int64 bounds) of a flat 1-D integer array of ids and the
    offsets of its queries (pyarrow's ``ListArray.values`` and ``.offsets``):
    query j is ``flat[offsets[j]:offsets[j + 1]]``. The ids are unchecked."""
    if isinstance(flat, (list, tuple)) or isinstance(flat, np.ndarray) and flat.ndim != 1:
        what = "a list" if isinstance(flat, (list, tuple)) else f"a {flat.ndim}-D array"
        raise QueryError(f"count_many got offsets with {what}, which delimits its queries "
                         "itself; drop offsets=, or pass one flat 1-D array of token ids")
    if not isinstance(flat, np.ndarray) or flat.size and flat.dtype.kind not in "iu":
        raise QueryError(f"count_many with offsets takes a flat 1-D integer array of token ids, "
                         f"not {_describe(flat)}; pass e.g. np.asarray(ids, dtype=np.int64)")
    off = np.asarray(offsets)
    n = len(flat)
    if off.ndim != 1 or not off.size or off.dtype.kind not in "iu":
        raise QueryError(f"count_many offsets is {_describe(off)}; pass a 1-D integer array "
                         f"of (number of queries + 1) positions from 0 to len(flat) = {n}")
    bad = np.flatnonzero((off < 0) | (off > n))
    if bad.size:
        i = int(bad[0])
        raise QueryError(f"count_many offsets[{i}]={off[i]} is outside [0, {n}] (the flat "
                         "array's length); pass positions into the flat array")
    off = off.astype(np.int64)
    if off[0] != 0:
        raise QueryError(f"count_many offsets[0]={off[0]}; the first offset must be 0 (for a "
                         "sliced pyarrow column pass .flatten() and offsets - offsets[0])")
    down = np.flatnonzero(off[1:] <= off[:-1])
    if down.size:
        i = int(down[0]) + 1
        raise QueryError(f"count_many offsets[{i}]={off[i]} is not above offsets[{i - 1}]="
                         f"{off[i - 1]}; offsets must be strictly ascending (every query "
                         "needs at least one token)")
    if off[-1] != n:
        raise QueryError(f"count_many offsets end at {off[-1]} but the flat array has {n} "
                         "ids; the last offset must be len(flat)")
    return flat, off


def arrow_lists(column) -> tuple[np.ndarray, np.ndarray] | None:
    """(flat ids, bounds) of a pyarrow list column (an Array or ChunkedArray
    of lists of integers), the ids unchecked; None for anything that is not
    a pyarrow array (pyarrow is looked for only if the caller imported it)."""
    pa = sys.modules.get("pyarrow")
    if pa is None or not isinstance(column, (pa.Array, pa.ChunkedArray)):
        return None
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) \
            or not pa.types.is_integer(kind.value_type):
        raise QueryError(f"count_many got a pyarrow array of type {kind}; pass a list column "
                         "of integer token ids (e.g. list<int64>)")
    values = column.flatten()
    if column.null_count or values.null_count:
        raise QueryError(f"count_many's pyarrow column holds {column.null_count} null queries "
                         f"and {values.null_count} null ids; drop them (pyarrow.compute.drop_null)")
    off = column.offsets.to_numpy()
    return values.to_numpy(), (off - off[0]).astype(np.int64)


def _describe(x) -> str:
    """``x``'s shape and dtype, or its type, for an error message."""
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape} and dtype {x.dtype}"
    return f"{type(x).__name__} {x!r:.40}"


def check_range(arr: np.ndarray, vocab: int, *, original=None, bounds=None,
                separator: int | None = None, what: str = "query",
                error: type[Exception] = QueryError) -> np.ndarray:
    """C-contiguous int64 copy of integer ids ``arr`` once each is in [0, vocab);
    positions in messages are per query when ``bounds`` delimits several.
    A message names the value in ``original`` (the ids, or with ``bounds``
    the queries) where given."""
    if arr.size and (arr.min() < 0 or arr.max() >= vocab):
        i = int(np.flatnonzero((arr < 0) | (arr >= vocab))[0])
        value = arr[i] if original is None or bounds is not None else original[i]
        where = f"at position {i}"
        if bounds is not None:
            j = int(np.searchsorted(bounds, i, side="right") - 1)
            where = f"at position {i - int(bounds[j])} of query {j}"
            value = value if original is None else original[j][i - int(bounds[j])]
        if separator is not None and value == separator:
            fix = "it is the document separator, which queries cannot contain; remove it"
        else:
            fix = "pass ids below the vocabulary size"
        raise error(f"{what} id {value} {where} is outside the vocabulary [0, {vocab}): {fix}")
    return np.ascontiguousarray(arr, dtype=np.int64)
