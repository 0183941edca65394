"""Reading data files: aligned results, exact reads, typed errors, bounded temporaries,
each file opened once and closed at the end."""

import os
import threading
import time

import numpy as np
import pytest
from hypothesis import given, strategies as st

from orbax_v1._storage import aligned as _aligned
from orbax_v1._storage import fileread as _fileread
from orbax_v1._storage import pagecache as _pagecache
from orbax_v1._storage.locate import Extent


@given(st.lists(st.integers(0, 7), max_size=3).map(tuple),
       st.sampled_from([np.uint8, np.int16, np.float32, np.complex128, np.bool_]))
def test_aligned_empty(shape, dtype):
    a = _aligned.empty(shape, dtype)
    assert a.shape == shape and a.dtype == dtype
    assert a.flags.c_contiguous and a.flags.writeable
    assert a.size == 0 or a.ctypes.data % _aligned.ALIGN == 0


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data"
    path.write_bytes(bytes(range(256)) * 64)
    return str(path)


@given(st.integers(0, 16383), st.integers(0, 5000))
def test_read_into_reads_exactly_the_extent(data_file, offset, length):
    length = min(length, 16384 - offset)
    reader = _fileread.FileReader(1 << 20)
    try:
        dest = np.full(length, 7, np.uint8)
        reader.read_into(Extent(data_file, offset, length), memoryview(dest)).result()
        assert dest.tobytes() == (bytes(range(256)) * 64)[offset:offset + length]
    finally:
        reader.close()


def test_short_and_missing_files_are_typed_errors(data_file, tmp_path):
    reader = _fileread.FileReader(1 << 20)
    try:
        with pytest.raises(_fileread.DataFileError, match="cut short"):
            reader.read_into(Extent(data_file, 16000, 1000), memoryview(bytearray(1000))).result()
        with pytest.raises(_fileread.DataFileError, match="cut short"):
            reader.read_then(Extent(data_file, 20000, 10), lambda b: None).result()
        with pytest.raises(_fileread.DataFileError, match="cannot be opened"):
            reader.read_into(Extent(str(tmp_path / "gone"), 0, 4),
                             memoryview(bytearray(4))).result()
        with pytest.raises(ValueError):  # the buffer must fit the extent exactly
            reader.read_into(Extent(data_file, 0, 4), memoryview(bytearray(5)))
    finally:
        reader.close()


def test_temporary_buffers_stay_within_the_limit(data_file):
    """With room for two 1000-byte buffers, no more than two are ever in use at once,
    even with four threads; a read larger than the whole limit still goes through."""
    reader = _fileread.FileReader(2000, threads=4)
    lock, in_use, peak, seen = threading.Lock(), [0], [0], []

    def use(buffer):
        with lock:
            in_use[0] += 1
            peak[0] = max(peak[0], in_use[0])
        seen.append(bytes(buffer[:3]))
        time.sleep(0.01)
        with lock:
            in_use[0] -= 1

    try:
        futures = [reader.read_then(Extent(data_file, i, 1000), use) for i in range(12)]
        futures.append(reader.read_then(Extent(data_file, 0, 5000), use))
        for f in futures:
            f.result()
    finally:
        reader.close()
    assert 1 <= peak[0] <= 2
    assert sorted(seen) == sorted([bytes([i, i + 1, i + 2]) for i in range(12)] + [b"\0\1\2"])


def test_each_file_is_opened_once_and_closed_at_the_end(data_file, monkeypatch):
    opened = []
    real_open = os.open
    monkeypatch.setattr(_fileread.os, "open",
                        lambda path, *a: opened.append(real_open(path, *a)) or opened[-1])
    reader = _fileread.FileReader(1 << 20)
    for i in range(20):
        reader.read_into(Extent(data_file, i, 8), memoryview(bytearray(8))).result()
    assert len(opened) == 1
    os.fstat(opened[0])
    reader.close()
    with pytest.raises(OSError):
        os.fstat(opened[0])


def _evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.fixture
def big_file(tmp_path):
    """3 MiB + 100 bytes of known data, not in the page cache."""
    data = np.random.default_rng(0).integers(0, 256, (3 << 20) + 100, dtype=np.uint8)
    path = str(tmp_path / "big")
    data.tofile(path)
    _evict(path)
    return path, data


def _read(path, offset, length, reader):
    dest = _aligned.empty((length,), np.uint8)
    reader.read_into(Extent(path, offset, length), memoryview(dest)).result()
    return dest


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="no O_DIRECT here")
def test_uncached_values_are_read_with_o_direct(big_file, monkeypatch):
    """Uncached: whole blocks with O_DIRECT, the tail through the page cache; cached:
    only the page cache. The bytes are the same either way."""
    path, data = big_file
    direct = []
    real = _fileread.FileReader._read_direct
    monkeypatch.setattr(_fileread.FileReader, "_read_direct",
                        lambda self, e, d: direct.append(n := real(self, e, d)) or n)
    reader = _fileread.FileReader(1 << 20)
    try:
        got = _read(path, 4096, data.size - 4096, reader)
        np.testing.assert_array_equal(got, data[4096:])
        if _pagecache.resident(reader._fd(path), 0, 4096) is not None:  # knowable here
            assert direct == [(data.size - 4096) // 4096 * 4096]
            os.pread(reader._fd(path), data.size, 0)  # now it is cached
            direct.clear()
            np.testing.assert_array_equal(_read(path, 0, data.size, reader), data)
            assert direct == []
        np.testing.assert_array_equal(_read(path, 100, 2 << 20, reader), data[100:100 + (2 << 20)])
    finally:
        reader.close()


def test_o_direct_refused_reads_through_the_page_cache(big_file, monkeypatch):
    path, data = big_file
    real_open = os.open

    def refusing(p, flags, *args):
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(22, "Invalid argument", p)
        return real_open(p, flags, *args)

    monkeypatch.setattr(_fileread.os, "open", refusing)
    reader = _fileread.FileReader(1 << 20)
    try:
        np.testing.assert_array_equal(_read(path, 0, data.size, reader), data)
    finally:
        reader.close()


def test_page_cache_residency(big_file):
    path, data = big_file
    fd = os.open(path, os.O_RDONLY)
    try:
        if _pagecache.resident(fd, 0, data.size) is None:
            pytest.skip("mincore cannot tell here")
        assert _pagecache.resident(fd, 0, data.size) is False
        os.pread(fd, 8192, 0)
        assert _pagecache.resident(fd, 0, 8192) is True
        assert _pagecache.resident(fd, 1, 100) is True
    finally:
        os.close(fd)
