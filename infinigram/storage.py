"""Writing build files so a full disk is a clean error, never a crash.

A store into a memory-mapped page that the file system cannot back kills
the process with SIGBUS, so every file written through a map has its space
reserved first (``posix_fallocate``), where a full disk is an ordinary
ENOSPC. Plain writes go through :func:`write_all`. Both raise a one-line
:class:`BuildError` naming the file when the disk is full or the file is too
large for the file system.
"""
from __future__ import annotations

import errno
import mmap
import os
from contextlib import contextmanager
from typing import BinaryIO

from .errors import BuildError

_FULL = (errno.ENOSPC, errno.EDQUOT)
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)
_ZEROS = bytes(1 << 20)


def disk_error(e: OSError, path) -> BuildError | None:
    """The BuildError for a full disk or an oversized file at ``path``
    (None for any other error)."""
    if isinstance(e, BuildError):
        return None
    if e.errno in _FULL:
        return BuildError(errno.ENOSPC, f"disk full while writing {path}: free some space or "
                          "choose another output directory; the partial files were removed")
    if e.errno == errno.EFBIG:
        return BuildError(errno.EFBIG, f"{path} is too large for this file system (or the "
                          "file size limit, ulimit -f): make shards smaller with --shard-tokens "
                          "(shard_tokens=) or build on another file system; the partial files "
                          "were removed")
    return None


@contextmanager
def disk_errors(path):
    """Turn a full disk or an oversized file met inside into a BuildError
    naming the file (the error's own file name where it has one, else ``path``)."""
    try:
        yield
    except OSError as e:
        mapped = disk_error(e, e.filename or path)
        if mapped is None:
            raise
        raise mapped from e


def write_all(f: BinaryIO, data) -> None:
    """Write all of ``data`` (bytes or a contiguous array) to ``f`` or raise."""
    with disk_errors(f.name):
        f.write(data)


def write_at(f: BinaryIO, data, offset: int) -> None:
    """Write all of ``data`` at ``offset`` of ``f`` (pwrite: threads may
    write one file at once; the file position is unchanged) or raise."""
    view = memoryview(data).cast("B")
    with disk_errors(f.name):
        while view:
            written = os.pwrite(f.fileno(), view, offset)
            view, offset = view[written:], offset + written


def reserve(f: BinaryIO, nbytes: int) -> None:
    """Allocate ``nbytes`` of disk for the open file ``f`` (its size becomes
    at least that; the position is unchanged), so mapped stores into it
    cannot fault. File systems without fallocate get zeros written."""
    if nbytes <= 0:
        return
    with disk_errors(f.name):
        try:
            os.posix_fallocate(f.fileno(), 0, nbytes)
        except OSError as e:
            if e.errno not in _UNSUPPORTED:
                raise
            pos = f.tell()
            f.seek(0)
            for start in range(0, nbytes, len(_ZEROS)):
                f.write(_ZEROS[: min(len(_ZEROS), nbytes - start)])
            f.flush()
            f.seek(pos)


def release(view: mmap.mmap, start: int, stop: int) -> None:
    """Let go of the whole pages of bytes [start, stop) of a shared file map:
    they leave this process's resident memory (written ones stay in the page
    cache until written back; a later access maps them again)."""
    page = mmap.PAGESIZE
    a, b = -(-start // page) * page, stop // page * page
    if b > a and hasattr(mmap, "MADV_DONTNEED"):
        view.madvise(mmap.MADV_DONTNEED, a, b - a)


@contextmanager
def mapped(f: BinaryIO, length: int = 0, write: bool = True):
    """A shared map of the open file ``f`` (``length`` 0: all of it), closed
    on the way out, or left to the garbage collector while arrays made from
    it still live (the frames of an exception on its way up)."""
    view = mmap.mmap(f.fileno(), length, access=mmap.ACCESS_WRITE if write else mmap.ACCESS_READ)
    try:
        yield view
    finally:
        try:
            view.close()
        except BufferError:
            pass
