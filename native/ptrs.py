"""Suffix-array pointers as stored in ``table.{s}``: little-endian byte offsets,
``pointer`` (1..8) bytes each."""
import numpy as np
from numba import prange

from . import jit, pjit
from .keys import width_of
from .memory import prefetch


@jit
def put_pointer(table, i, pointer, offset):
    """Store byte ``offset`` as entry ``i`` of the uint8 ``table`` (inlinable in kernels)."""
    base = i * pointer
    v = np.int64(offset)
    for b in range(pointer):
        table[base + b] = np.uint8(v & 0xFF)
        v >>= 8


@pjit
def _pack(sa, width, pointer, out):
    for i in prange(sa.shape[0]):
        put_pointer(out, i, pointer, np.int64(sa[i]) * width)


def pack_pointers(sa: np.ndarray, width: int, pointer: int, out: np.ndarray) -> None:
    """Write entry i as ``sa[i] * width`` in ``pointer`` little-endian bytes into
    uint8 ``out`` (length len(sa) * pointer)."""
    if not 1 <= pointer <= 8:
        raise ValueError(f"pointer width {pointer} is out of range; use 1..8 bytes")
    if out.dtype != np.uint8 or out.ndim != 1 or out.shape[0] != sa.shape[0] * pointer:
        raise ValueError(
            f"out must be a 1-D uint8 array of {sa.shape[0] * pointer} bytes "
            f"({sa.shape[0]} entries x {pointer}), got {out.dtype} of shape {out.shape}")
    _check_fits(sa, width, pointer)
    _pack(sa, width, pointer, out)


def _check_fits(sa, width, pointer):
    if sa.shape[0] and int(sa.max()) * width >= 1 << (8 * pointer):
        raise ValueError(
            f"byte offset {int(sa.max()) * width} does not fit in {pointer} bytes; "
            "use format.pointer_width(size of the token file)")


FIRST_WAVE = 1 << 16
"""Entries packed in place on one thread before the parallel waves."""


@pjit
def _pack_in_place(sa, width, pointer, itemsize, out):
    """Entry i's bytes go to [i*pointer, (i+1)*pointer), never past the
    bytes of entries not read yet (pointer <= itemsize). With pointer ==
    itemsize each entry only overwrites itself, so all go in parallel; else
    in waves: once entries [0, hi) are packed, entries up to
    hi * itemsize // pointer write only over bytes already read, so each
    wave goes in parallel (the waves grow by itemsize / pointer)."""
    n = sa.shape[0]
    hi = 0 if pointer == itemsize else min(n, FIRST_WAVE)
    for i in range(hi):
        put_pointer(out, i, pointer, np.int64(sa[i]) * width)
    while hi < n:
        top = n if pointer == itemsize else min(n, hi * itemsize // pointer)
        for i in prange(hi, top):
            put_pointer(out, i, pointer, np.int64(sa[i]) * width)
        hi = top


def pack_in_place(sa: np.ndarray, width: int, pointer: int) -> np.ndarray:
    """``pack_pointers`` into ``sa``'s own memory: returns the uint8 view of
    its first len(sa) * pointer bytes (``sa`` is overwritten). Needs
    ``pointer <= sa.itemsize`` and a C-contiguous ``sa``."""
    if not 1 <= pointer <= sa.itemsize or not sa.flags.c_contiguous:
        raise ValueError(f"in-place packing needs a C-contiguous array and 1 <= pointer <= "
                         f"{sa.itemsize} (its item size), got pointer {pointer}")
    _check_fits(sa, width, pointer)
    out = sa.view(np.uint8)
    _pack_in_place(sa, width, pointer, sa.itemsize, out)
    return out[:sa.shape[0] * pointer]


@jit(inline="always")
def pointer_at(table, i, pointer):
    """Byte offset stored in entry ``i`` of ``table`` (inlinable in kernels):
    a uint8 array of ``pointer``-byte entries, or, the fast form, 4-byte
    entries viewed as uint32 (one load; the element width is a compile-time
    constant, so the other branch is compiled away).

    Widths 4 and 5 of a uint8 table are spelled out: the generic byte loop
    costs a loop exit per entry, which keeps the reads of independent
    entries from overlapping."""
    if width_of(table) == 4:
        return np.int64(table[i])
    base = i * pointer
    if pointer == 4 or pointer == 5:
        v = (np.int64(table[base]) | (np.int64(table[base + 1]) << 8)
             | (np.int64(table[base + 2]) << 16) | (np.int64(table[base + 3]) << 24))
        if pointer == 5:
            v |= np.int64(table[base + 4]) << 32
        return v
    v = np.int64(0)
    for b in range(pointer - 1, -1, -1):
        v = (v << 8) | np.int64(table[base + b])
    return v


@jit(inline="always")
def prefetch_entry(table, i, pointer):
    """Hint the CPU to load entry ``i`` of ``table`` (either form of :func:`pointer_at`)."""
    prefetch(table, i if width_of(table) == 4 else i * pointer)


@pjit
def _unpack(table, pointer, lo, out):
    for k in prange(out.shape[0]):
        out[k] = pointer_at(table, lo + k, pointer)


def unpack_pointers(table: np.ndarray, pointer: int, lo: int, hi: int) -> np.ndarray:
    """Byte offsets of entries [lo, hi) of the uint8 ``table`` as int64."""
    n = table.shape[0] // pointer
    if not 0 <= lo <= hi <= n:
        raise ValueError(f"entry range [{lo}, {hi}) is outside the table's 0..{n} entries")
    out = np.empty(hi - lo, np.int64)
    _unpack(table, pointer, lo, out)
    return out
