"""Reading data files: aligned results, exact reads, typed errors, bounded temporaries,
each file opened once and closed at the end."""

import os
import threading
import time

import numpy as np
import pytest
from hypothesis import given, strategies as st

from orbax_v1 import _fileread
from orbax_v1._locate import Extent


@given(st.lists(st.integers(0, 7), max_size=3).map(tuple),
       st.sampled_from([np.uint8, np.int16, np.float32, np.complex128, np.bool_]))
def test_aligned_empty(shape, dtype):
    a = _fileread.aligned_empty(shape, dtype)
    assert a.shape == shape and a.dtype == dtype
    assert a.flags.c_contiguous and a.flags.writeable
    assert a.size == 0 or a.ctypes.data % _fileread.ALIGN == 0


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
