"""The C library, loaded once, for the few calls Python's `os` lacks
(`renameat2`, `mmap` + `mincore`). None where it cannot be loaded."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os


@functools.cache
def libc() -> ctypes.CDLL | None:
    if os.name != "posix":
        return None
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    if hasattr(lib, "mmap"):
        lib.mmap.restype = ctypes.c_void_p
        lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                             ctypes.c_int, ctypes.c_long]
        lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    if hasattr(lib, "mincore"):
        lib.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    return lib
