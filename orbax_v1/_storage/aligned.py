"""Page-aligned host memory, which both directions of the array engine need.

`O_DIRECT` reads and writes take only aligned memory, offsets and sizes (4 KiB suits
every device), and `jax.device_put` onto a CPU device uses an aligned numpy array in
place instead of copying it; numpy's huge-page advice applies to such arrays too.
"""

from __future__ import annotations

import math

import numpy as np

ALIGN = 4096


def empty(shape: tuple[int, ...], dtype=np.uint8) -> np.ndarray:
    """An uninitialised C-order array whose data starts on an `ALIGN` boundary."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)
