"""Writing build files so a full disk is a clean error, never a crash.

A store into a memory-mapped page that the file system cannot back kills
the process with SIGBUS, so every file written through a map has its space
reserved first (``posix_fallocate``), where a full disk is an ordinary
ENOSPC. Plain writes go through :func:`write_all`, a table's through
:class:`UncachedWriter` (around the page cache). All raise a one-line
:class:`BuildError` naming the file when the disk is full or the file is too
large for the file system.
"""
from __future__ import annotations

import errno
import mmap
import os
from contextlib import contextmanager
from typing import BinaryIO

import numpy as np

from .errors import BuildError
from .native import aligned

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
    with disk_errors(f.name):
        _pwrite_all(f.fileno(), memoryview(data).cast("B"), offset)


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        written = os.pwrite(fd, view, offset)
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


def release(view: mmap.mmap, start: int, stop: int, fd: int | None = None) -> None:
    """Let go of the whole pages of bytes [start, stop) of a shared file map:
    they leave this process's resident memory (written ones stay in the page
    cache until written back; a later access maps them again). Given the
    file's descriptor ``fd``, its clean pages there leave the page cache too
    (a file read once: the memory serves the next reads)."""
    page = mmap.PAGESIZE
    a, b = -(-start // page) * page, stop // page * page
    if b > a and hasattr(mmap, "MADV_DONTNEED"):
        view.madvise(mmap.MADV_DONTNEED, a, b - a)
    if b > a and fd is not None and hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, a, b - a, os.POSIX_FADV_DONTNEED)


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


ALIGN = 4096
"""What uncached (O_DIRECT) transfers align their address, offset and length to."""
BOUNCE = 1 << 23
"""Bytes a write copies to an aligned buffer at a time (a multiple of ALIGN)."""


def _direct(path, flags: int) -> int | None:
    """``path`` opened around the page cache (O_DIRECT), or None where the
    platform or the file system does not allow it."""
    if not hasattr(os, "O_DIRECT"):
        return None
    try:
        return os.open(path, flags | os.O_DIRECT)
    except OSError as e:
        if e.errno in _UNSUPPORTED:
            return None
        raise


class UncachedWriter:
    """Writes into the existing file ``path`` around the page cache where the
    file system allows: each write's whole aligned blocks go straight to disk
    (O_DIRECT), its ends through the page cache; bytes at an address not
    congruent to their offset modulo ALIGN are first copied to an aligned
    buffer, BOUNCE bytes at a time. A table is written once and not read by
    the build again: this way it does not fill memory with pages to write
    back (nor, on a VM, claim fresh pages from the host). Threads may write
    at once; a context manager."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY)
        self.direct = _direct(path, os.O_WRONLY)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for fd in (self.fd, self.direct):
            if fd is not None:
                os.close(fd)

    def write(self, data, offset: int) -> None:
        """Write all of ``data`` (a contiguous array or buffer) at ``offset``
        or raise (a full disk: BuildError)."""
        arr = np.frombuffer(data, np.uint8)
        with disk_errors(self.path):
            if self.direct is None or (arr.ctypes.data - offset) % ALIGN == 0:
                self._write(arr, offset)
                return
            bounce = aligned(BOUNCE, ALIGN)
            at, end = offset, offset + len(arr)
            while at < end:  # pieces end at multiples of BOUNCE, so only two have ends
                stop = min(end, (at // BOUNCE + 1) * BOUNCE)
                piece = bounce[at % ALIGN:at % ALIGN + stop - at]
                piece[:] = arr[at - offset:stop - offset]
                self._write(piece, at)
                at = stop

    def _write(self, arr: np.ndarray, offset: int) -> None:
        view = memoryview(arr)
        a = -(-offset // ALIGN) * ALIGN  # the aligned blocks: [a, b)
        b = (offset + len(view)) // ALIGN * ALIGN
        if self.direct is not None and b > a and (arr.ctypes.data - offset) % ALIGN == 0:
            try:
                _pwrite_all(self.direct, view[a - offset:b - offset], a)
                _pwrite_all(self.fd, view[:a - offset], offset)
                _pwrite_all(self.fd, view[b - offset:], b)
                return
            except OSError as e:
                if e.errno != errno.EINVAL:  # alignment refused: through the cache
                    raise
        _pwrite_all(self.fd, view, offset)


def uncached_chunks(path, chunk: int = 1 << 24):
    """The bytes of ``path`` in chunks of up to ``chunk`` (a multiple of ALIGN)
    bytes, read around the page cache where the file system allows (each
    chunk a view of one buffer, valid until the next)."""
    fd = _direct(path, os.O_RDONLY)
    if fd is None:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                yield block
        return
    buf = aligned(chunk, ALIGN)
    try:
        size, offset = os.fstat(fd).st_size, 0
        while offset < size:
            k = os.preadv(fd, [buf], offset)
            if k <= 0 or (k % ALIGN and offset + k < size):
                raise OSError(errno.EIO, f"short read of {path} at byte {offset}")
            yield buf[:k]
            offset += k
    finally:
        os.close(fd)
