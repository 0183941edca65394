"""Reading byte ranges of data files straight into result memory, on a few threads.

The load path's costs on the machines we measured are copies into fresh memory, not
the disk: each page touched for the first time costs a page fault. So chunks are read
with `preadv` directly into the page-aligned result wherever the stored bytes are the
result's bytes; only chunks that need reshaping or a cast go through a temporary
buffer, and those buffers are reused and bounded in total. `preadv` and `np.copyto`
release the GIL, so a small pool keeps several reads in flight (four measured best
for cold reads). Each data file is opened once per load; `close()` closes them.

A large value the page cache does not hold (`_pagecache`) is read with `O_DIRECT`
straight from the disk into the result, so a cold load does not fill (and first
allocate) the page cache either; a cached one is copied from the cache. Values we
wrote start on 4 KiB boundaries for this; anything unaligned, or a filesystem that
refuses `O_DIRECT`, is read through the page cache.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from orbax_v1._storage import aligned as _aligned
from orbax_v1._storage import pagecache as _pagecache
from orbax_v1._storage.aligned import ALIGN
from orbax_v1._storage.locate import Extent

READ_THREADS = 4
DIRECT_MIN_BYTES = 1 << 20  # smaller values are read through the page cache
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class DataFileError(ValueError):
    """A data file is missing, unreadable, or shorter than a value it should hold."""


class FileReader:
    """The data-file reads of one load.

    `read_into` fills a caller's buffer; `read_then` reads into a temporary buffer and
    hands it to a function (run on the reading thread). At most `limit` bytes of
    temporary buffers exist at a time (one larger read is let through alone).
    """

    def __init__(self, limit: int, threads: int = READ_THREADS):
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="orbax_v1-read")
        self._fds: dict[str, int] = {}
        self._direct_fds: dict[str, int | None] = {}  # None: the filesystem refuses O_DIRECT
        self._fds_lock = threading.Lock()
        self._budget = threading.Condition()
        self._limit = limit
        self._held = 0  # bytes of temporary buffers in use or kept for reuse
        self._spare: list[np.ndarray] = []

    def _fd(self, path: str) -> int:
        with self._fds_lock:
            fd = self._fds.get(path)
            if fd is None:
                try:
                    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                except OSError as e:
                    raise DataFileError(f"the data file {path} cannot be opened: {e}") from e
                self._fds[path] = fd
            return fd

    def _direct_fd(self, path: str) -> int | None:
        with self._fds_lock:
            if path not in self._direct_fds:
                try:
                    fd = os.open(path, os.O_RDONLY | _O_DIRECT | getattr(os, "O_CLOEXEC", 0))
                except OSError:
                    fd = None  # refused (EINVAL) or unreadable: the buffered path reports it
                self._direct_fds[path] = fd
            return self._direct_fds[path]

    def _read_direct(self, extent: Extent, dest: memoryview) -> int:
        """Reads the whole 4 KiB blocks of `extent` with O_DIRECT; returns how many
        leading bytes of `dest` are filled (the caller reads the rest as usual)."""
        direct, done = self._direct_fd(extent.path), 0
        if direct is None:
            return 0
        end = extent.length // ALIGN * ALIGN
        while done < end:
            try:
                n = os.preadv(direct, [dest[done:end]], extent.offset + done)
            except OSError:
                break  # e.g. alignment refused: the buffered read finishes the value
            if n <= 0 or n % ALIGN:
                return done + max(n, 0) // ALIGN * ALIGN
            done += n
        return done

    def _read(self, extent: Extent, dest: memoryview) -> None:
        fd, done = self._fd(extent.path), 0
        if (_O_DIRECT and extent.length >= DIRECT_MIN_BYTES and extent.offset % ALIGN == 0
                and np.frombuffer(dest, np.uint8).ctypes.data % ALIGN == 0
                and _pagecache.resident(fd, extent.offset, extent.length) is False):
            done = self._read_direct(extent, dest)
        while done < extent.length:
            try:
                n = os.preadv(fd, [dest[done:]], extent.offset + done)
            except OSError as e:
                raise DataFileError(f"the data file {extent.path} cannot be read: {e}") from e
            if n == 0:
                raise DataFileError(
                    f"the data file {extent.path} ends before byte {extent.offset + done}; "
                    f"a value of {extent.length} bytes at offset {extent.offset} is cut short")
            done += n

    def read_into(self, extent: Extent, dest: memoryview) -> Future:
        """Starts reading `extent` into `dest` (exactly `extent.length` bytes)."""
        if dest.nbytes != extent.length:
            raise ValueError(f"a buffer of {dest.nbytes} bytes for {extent.length} bytes")
        return self._pool.submit(self._read, extent, dest)

    def read_then(self, extent: Extent, use: Callable[[np.ndarray], None]) -> Future:
        """Starts reading `extent` into a temporary uint8 buffer, then calls `use(buffer)`."""
        return self._pool.submit(self._read_then, extent, use)

    def _read_then(self, extent: Extent, use: Callable[[np.ndarray], None]) -> None:
        whole = self._take(extent.length)
        try:
            buffer = whole[:extent.length]
            self._read(extent, memoryview(buffer))
            use(buffer)
        finally:
            self._give_back(whole)

    def _take(self, nbytes: int) -> np.ndarray:
        """A page-aligned temporary buffer of at least `nbytes` (a spare one if any fits)."""
        with self._budget:
            while True:
                fits = [b for b in self._spare if b.nbytes >= nbytes]
                if fits:
                    best = min(fits, key=lambda b: b.nbytes)
                    self._spare.remove(best)
                    return best
                if self._spare and self._held + nbytes > self._limit:
                    self._held -= self._spare.pop().nbytes  # too small: make room
                    continue
                if self._held == 0 or self._held + nbytes <= self._limit:
                    self._held += nbytes
                    return _aligned.empty((nbytes,))
                self._budget.wait()

    def _give_back(self, whole: np.ndarray) -> None:
        with self._budget:
            self._spare.append(whole)
            self._budget.notify_all()

    def close(self) -> None:
        """Waits for (or cancels) the reads still queued, then closes every file."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._fds_lock:
            fds = [*self._fds.values(), *(fd for fd in self._direct_fds.values() if fd is not None)]
            self._fds, self._direct_fds = {}, {}
        for fd in fds:
            os.close(fd)
        with self._budget:
            self._spare, self._held = [], 0
