"""Whether a byte range of a file is in the page cache, asked without reading it.

A read that finds its pages cached is a memory copy; one that does not is better done
with `O_DIRECT`, so that a cold load does not first allocate and fill the page cache.
`mincore` on a mapping of the range answers without touching a page (a probing read,
even with `RWF_NOWAIT`, starts readahead). Linux reports the page cache only for files
the caller may write (its own checkpoints); elsewhere, or where `mincore` is missing,
the answer is None and the caller reads through the page cache as usual.
"""

from __future__ import annotations

import ctypes
import mmap

import numpy as np

from orbax_v1._storage import libc

_PAGE = mmap.PAGESIZE


_LIBC = libc.libc()
_HAS_MINCORE = _LIBC is not None and hasattr(_LIBC, "mincore")
_MAP_FAILED = ctypes.c_void_p(-1).value


def resident(fd: int, offset: int, length: int) -> bool | None:
    """True if every page of `fd[offset:offset + length]` is cached, False if one is
    not, None if this cannot be known here."""
    if not _HAS_MINCORE or length <= 0:
        return None
    start = offset // _PAGE * _PAGE
    size = offset + length - start
    addr = _LIBC.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, start)
    if addr in (None, _MAP_FAILED):
        return None
    try:
        pages = np.zeros(-(-size // _PAGE), np.uint8)
        if _LIBC.mincore(addr, size, pages.ctypes.data) != 0:
            return None
        return bool((pages & 1).all())
    finally:
        _LIBC.munmap(addr, size)
