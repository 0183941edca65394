"""One data file, written once, front to back, with the bytes of each array copied once.

Values are appended into a few page-aligned buffers; full buffers are written by a
small pool of threads while the next one fills. Where the filesystem allows it the file
is opened with `O_DIRECT`, so array bytes go from these buffers to the disk without
passing through (and first allocating) the page cache: on the machines we measured,
filling the page cache with fresh pages costs more than the disk write itself. Where
`O_DIRECT` is refused (tmpfs, some network filesystems) the same code writes through
the page cache. `close()` makes the file durable (fdatasync) and reports any error a
write met.
"""

from __future__ import annotations

import errno
import os
import queue
import threading

import numpy as np

from orbax_v1._storage import aligned as _aligned
from orbax_v1._storage.aligned import ALIGN

WRITE_THREADS = 3
BUFFERS = WRITE_THREADS + 1
MAX_BUFFER_BYTES = 8 << 20
MIN_BUFFER_BYTES = 64 << 10


def buffer_bytes_for(total_bytes: int) -> int:
    """Buffer size for a file of about `total_bytes`: all buffers together stay near 3%
    of the data (a save must not grow memory much), between 64 KiB and 8 MiB each."""
    size = min(MAX_BUFFER_BYTES, max(MIN_BUFFER_BYTES, total_bytes // (BUFFERS * 32)))
    return -(-size // ALIGN) * ALIGN


def _open(path: str) -> tuple[int, bool]:
    """Opens a new file with O_DIRECT if the filesystem takes it (tried with one aligned
    block, which the data overwrites or `close` truncates), else without."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    direct = getattr(os, "O_DIRECT", 0)
    if direct:
        fd = None
        try:
            fd = os.open(path, flags | direct, 0o644)
            probe = _aligned.empty((ALIGN,))
            probe[:] = 0  # never uninitialised memory on disk, even for a moment
            os.pwrite(fd, probe, 0)
            return fd, True
        except OSError as e:
            if fd is not None:
                os.close(fd)
            if e.errno != errno.EINVAL:
                raise
            if os.path.exists(path):
                os.unlink(path)
    return os.open(path, flags, 0o644), False


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        written = os.pwrite(fd, data, offset)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        data, offset = data[written:], offset + written


class DataFile:
    """Appends byte strings and arrays to a new file; `append` returns their offset."""

    def __init__(self, path: str, *, buffer_bytes: int = MAX_BUFFER_BYTES):
        self.path = path
        self._fd, self.direct = _open(path)
        self._size = buffer_bytes
        self._free: queue.Queue[np.ndarray] = queue.Queue()
        for _ in range(BUFFERS):
            self._free.put(_aligned.empty((buffer_bytes,)))
        self._jobs: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []  # started on the first full buffer
        self._errors: list[BaseException] = []
        self._buffer = self._free.get()
        self._filled = 0
        self._buffer_offset = 0  # file offset of the current buffer's first byte
        self._closed = False

    def tell(self) -> int:
        return self._buffer_offset + self._filled

    def pad_to(self, alignment: int) -> None:
        """Appends zeros up to the next multiple of `alignment`."""
        pad = -self.tell() % alignment
        if pad:
            self.append(bytes(pad))

    def append(self, data) -> int:
        """Appends `data` (bytes, or a numpy array: its C-order little-endian bytes)."""
        offset = self.tell()
        if isinstance(data, np.ndarray):
            self._append_array(data)
        else:
            self._append_flat(np.frombuffer(data, np.uint8))
        return offset

    def _append_array(self, array: np.ndarray) -> None:
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        if array.flags.c_contiguous:
            self._append_flat(array.reshape(-1).view(np.uint8))
            return
        # A strided block (a chunk cut across a trailing axis): copy whole leading rows
        # straight into the buffer in C order, and split a row only where it straddles.
        while len(array):
            rows = min(len(array), (self._size - self._filled) // array[0].nbytes)
            if rows == 0:
                self._append_array(array[0])
                array = array[1:]
                continue
            nbytes = rows * array[0].nbytes
            target = self._buffer[self._filled:self._filled + nbytes]
            np.copyto(target.view(array.dtype).reshape((rows, *array.shape[1:])), array[:rows])
            self._filled += nbytes
            array = array[rows:]
            if self._filled == self._size:
                self._submit()

    def _append_flat(self, flat: np.ndarray) -> None:
        while flat.size:
            n = min(flat.size, self._size - self._filled)
            self._buffer[self._filled:self._filled + n] = flat[:n]
            self._filled += n
            flat = flat[n:]
            if self._filled == self._size:
                self._submit()

    def _submit(self) -> None:
        buffer, length = self._buffer, self._filled
        if self.direct:  # the last, partial buffer is padded; close() truncates
            padded = -(-length // ALIGN) * ALIGN
            buffer[length:padded] = 0
            length = padded
        if len(self._threads) < WRITE_THREADS:  # plain threads: they also start at exit
            thread = threading.Thread(target=self._write_jobs, name="orbax_v1-write")
            thread.start()
            self._threads.append(thread)
        self._jobs.put((buffer, length, self._buffer_offset))
        self._raise_errors()
        self._buffer_offset += self._filled
        self._buffer, self._filled = self._free.get(), 0

    def _write_jobs(self) -> None:
        while (job := self._jobs.get()) is not None:
            buffer, length, offset = job
            try:
                if not self._errors:
                    _pwrite_all(self._fd, memoryview(buffer[:length]), offset)
            except BaseException as e:  # reported by the writing thread's next call
                self._errors.append(e)
            finally:
                self._free.put(buffer)

    def _raise_errors(self) -> None:
        if self._errors:
            raise self._errors[0]

    def _stop_threads(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def close(self) -> int:
        """Writes what is left, waits, syncs and closes; returns the file's length."""
        if self._closed:
            return self.tell()
        self._closed = True
        try:
            end = self.tell()
            if self._filled:
                self._submit()
            self._stop_threads()
            self._raise_errors()
            if self.direct:
                os.ftruncate(self._fd, end)
            getattr(os, "fdatasync", os.fsync)(self._fd)  # macOS has only fsync
            return end
        finally:
            self._stop_threads()
            os.close(self._fd)

    def abort(self) -> None:
        """Stops without syncing (after a failure elsewhere); the file is left incomplete."""
        if not self._closed:
            self._closed = True
            self._stop_threads()
            os.close(self._fd)
