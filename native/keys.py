"""Token comparison keys: the suffix order compares little-endian bytes."""
from numba.extending import overload

from . import jit


def width_of(tokens):
    """Bytes per token of a token array; inside kernels a compile-time
    constant (``tokens.itemsize`` is read at run time there, which turns
    every token-index division into a slow integer division)."""
    return tokens.itemsize


@overload(width_of, inline="always")
def _width_of(tokens):
    width = tokens.dtype.bitwidth // 8
    return lambda tokens: width


@jit(inline="always")
def byte_key(token, width):
    """The value whose numeric order is the byte order of ``token`` stored
    little-endian in ``width`` bytes (the token byte-swapped)."""
    t = int(token)
    if width == 1:
        return t
    if width == 2:
        return ((t & 0xFF) << 8) | (t >> 8)
    return (((t & 0xFF) << 24) | ((t & 0xFF00) << 8)
            | ((t >> 8) & 0xFF00) | ((t >> 24) & 0xFF))
