"""Numba kernels for infinigram: arrays in, arrays out, no I/O.

Every kernel is compiled through :func:`jit` (on-disk cache, GIL released)
so users pay compile time once and threads can query in parallel.
"""
import numba
import numpy as np

_OPTIONS = {"cache": True, "nogil": True}


def jit(fn=None, **extra):
    """The one decorator every kernel in this package uses: ``@jit`` or
    ``@jit(inline="always")`` (extra numba options on top of the defaults)."""
    if fn is None:
        return numba.njit(**_OPTIONS, **extra)
    return numba.njit(**_OPTIONS)(fn)


pjit = numba.njit(**_OPTIONS, parallel=True)
"""Like :data:`jit`, with ``prange`` loops spread over all cores."""


def twin(fn):
    """``(jit(fn), pjit(fn))``: a prange kernel compiled to run sequentially
    (index False/0: for worker threads, which must not launch parallel
    regions concurrently, as Numba's workqueue layer cannot) and across all
    cores (index True/1)."""
    return jit(fn), pjit(fn)

lean = numba.njit(**_OPTIONS, _nrt=False)
"""Like :data:`jit`, for kernels that allocate no arrays: compiled without
Numba's reference counting. Where an inlined helper with branches takes
arrays, its atomic counter updates stay in the loop and fence the CPU's
memory reads, so independent probes (table entry, then token) overlap less."""


def direct(kernel, *args):
    """``kernel``'s compiled code for the types of ``args`` (loaded from the
    cache or compiled now), callable without numba's per-call type
    dispatch (whose cost is paid on every call). Every later call must pass arguments of
    exactly these types (dtype, dimensions, layout): it checks none of them."""
    return kernel.compile(tuple(kernel.typeof_pyval(a) for a in args))


def aligned(nbytes: int, align: int) -> np.ndarray:
    """``nbytes`` of uint8 scratch starting at an address that is a multiple
    of ``align`` (what uncached transfers need)."""
    raw = np.empty(nbytes + align, np.uint8)
    at = -raw.ctypes.data % align
    return raw[at:at + nbytes]
