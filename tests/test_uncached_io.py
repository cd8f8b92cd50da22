"""Writes and reads around the page cache (storage.UncachedWriter,
storage.uncached_chunks): every byte lands where it belongs, through
O_DIRECT where the file system takes it and through the cache where it does
not (or refuses an alignment)."""
import concurrent.futures as cf
import errno
import os

import numpy as np
import pytest

from infinigram import storage

A = storage.ALIGN


@pytest.fixture(params=["direct", "cached"])
def mode(request, monkeypatch, tmp_path):
    if request.param == "cached":
        monkeypatch.setattr(storage, "_direct", lambda path, flags: None)
    else:
        probe = tmp_path / "probe"
        probe.touch()
        fd = storage._direct(probe, os.O_RDONLY)
        if fd is None:
            pytest.skip(f"{tmp_path}'s file system has no O_DIRECT: the cached mode covers it")
        os.close(fd)
    return request.param


def _placed(data: np.ndarray, offset: int, congruent: bool) -> np.ndarray:
    """A copy of ``data`` at an address congruent to ``offset`` modulo ALIGN
    (or one byte off it)."""
    raw = np.empty(len(data) + 2 * A, np.uint8)
    at = (offset - raw.ctypes.data) % A + (0 if congruent else 1)
    raw[at:at + len(data)] = data
    return raw[at:at + len(data)]


def test_writes_land_in_place_from_many_threads(tmp_path, monkeypatch, mode):
    monkeypatch.setattr(storage, "BOUNCE", 4 * A)  # unaligned data: copied in several pieces
    rng = np.random.default_rng(0)
    size = 40 * A + 123
    want = rng.integers(0, 256, size, np.uint8)
    cuts = sorted({0, size, A, 3 * A + 5, 3 * A + 9, 10 * A - 1, 10 * A, 17 * A + 2000,
                   *rng.integers(0, size, 12).tolist()})
    path = tmp_path / "t"
    path.write_bytes(bytes(size))
    used = []
    with storage.UncachedWriter(path) as w:
        used.append(w.direct is not None)
        with cf.ThreadPoolExecutor(4) as ex:
            list(ex.map(lambda k: w.write(_placed(want[cuts[k]:cuts[k + 1]], cuts[k], k % 3 > 0),
                                          cuts[k]), range(len(cuts) - 1)))
    assert path.read_bytes() == want.tobytes()
    assert used == [mode == "direct"]


def test_a_refused_alignment_goes_through_the_cache(tmp_path, monkeypatch, mode):
    path = tmp_path / "t"
    path.write_bytes(bytes(8 * A))
    data = _placed(np.arange(6 * A, dtype=np.uint8), A + 7, True)
    real, refused = os.pwrite, []

    def pwrite(fd, view, offset):
        if fd == w.direct:
            refused.append(offset)
            raise OSError(errno.EINVAL, "alignment")
        return real(fd, view, offset)
    monkeypatch.setattr(os, "pwrite", pwrite)
    with storage.UncachedWriter(path) as w:
        w.write(data, A + 7)
    assert path.read_bytes() == bytes(A + 7) + data.tobytes() + bytes(A - 7)
    assert refused == ([2 * A] if mode == "direct" else [])


def test_unaligned_data_goes_around_the_cache_in_whole_blocks(tmp_path, monkeypatch, mode):
    monkeypatch.setattr(storage, "BOUNCE", 4 * A)
    path = tmp_path / "t"
    path.write_bytes(bytes(12 * A))
    data = _placed(np.arange(10 * A, dtype=np.uint8) * 7, A + 7, False)
    real, direct = os.pwrite, []

    def pwrite(fd, view, offset):
        if fd == w.direct:
            direct.append((offset, len(view)))
        return real(fd, view, offset)
    monkeypatch.setattr(os, "pwrite", pwrite)
    with storage.UncachedWriter(path) as w:
        w.write(data, A + 7)
    assert path.read_bytes() == bytes(A + 7) + data.tobytes() + bytes(A - 7)
    assert direct == ([(2 * A, 2 * A), (4 * A, 4 * A), (8 * A, 3 * A)] if mode == "direct"
                      else [])


@pytest.mark.parametrize("size", [0, 1, A - 1, A, A + 1, 2 * A, 5 * A + 3])
def test_uncached_chunks_read_the_whole_file(tmp_path, mode, size):
    data = np.random.default_rng(size).integers(0, 256, size, np.uint8).tobytes()
    path = tmp_path / "f"
    path.write_bytes(data)
    chunks = [bytes(c) for c in storage.uncached_chunks(path, 2 * A)]
    assert b"".join(chunks) == data and all(0 < len(c) <= 2 * A for c in chunks)
