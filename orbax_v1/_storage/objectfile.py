"""The data files of one OCDBT database in an object store, written as bounded parts.

An object is written with one request, so a database's values are cut into several
data files (`d/<32 hex>` each, as TensorStore names them) of about `PART_BYTES`:
values are appended into a buffer, a full buffer is uploaded in the background while
the next one fills, and at most `MAX_PENDING` uploads are in flight. Memory stays
bounded by a few parts whatever the checkpoint's size. The b+tree nodes (written
last, by `writer.ArrayWriter`) refer to each value by its file and offset.
"""

from __future__ import annotations

import collections

import numpy as np

from orbax_v1 import errors
from orbax_v1._storage import objects, ocdbt
from orbax_v1._storage.paths import join

PART_BYTES = 8 << 20  # measured: 32 MiB parts cost more CPU and memory (benchmarks/save_load.py)
MAX_PENDING = 4


class ObjectDataFiles:
    """Appends values to the data files of the database at `directory` (a remote path).

    `append` returns (file index, offset); `names` lists the data files by index.
    """

    def __init__(self, directory: str, *, part_bytes: int | None = None,
                 max_pending: int | None = None):
        self._dir = directory
        self._part_bytes = PART_BYTES if part_bytes is None else part_bytes
        self._max_pending = MAX_PENDING if max_pending is None else max_pending
        self.names: list[str] = []
        self._buf = bytearray()
        self._pending: collections.deque = collections.deque()
        self._open = False  # whether names[-1] is the part being filled

    def _current(self) -> int:
        if not self._open:
            self.names.append(ocdbt.new_data_file_name())
            self._open = True
        return len(self.names) - 1

    def pad_to(self, alignment: int) -> None:
        """Nothing to align for: object reads are not O_DIRECT."""

    def append(self, data: bytes | np.ndarray) -> tuple[int, int]:
        if isinstance(data, np.ndarray):  # its little-endian C-order bytes, copied once
            if data.dtype.byteorder == ">":
                data = data.astype(data.dtype.newbyteorder("<"))
            raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8).data
        else:
            raw = data
        if self._buf and len(self._buf) + len(raw) > self._part_bytes:
            self._flush()
        index = self._current()
        offset = len(self._buf)
        self._buf += raw
        return index, offset

    def _flush(self) -> None:
        """Starts uploading the current part; the next append starts a new one."""
        name = self.names[-1]
        future = objects.write_async(join(self._dir, name), self._buf)  # handed over, not copied
        self._pending.append((name, future))
        self._buf = bytearray()
        self._open = False
        while len(self._pending) > self._max_pending:
            self._wait(*self._pending.popleft())

    def _wait(self, name: str, future) -> None:
        try:
            future.result()
        except Exception as e:  # noqa: BLE001 - a failed upload fails the save, typed
            raise errors.StorageError(f"Cannot write {join(self._dir, name)}: {e}") from e

    def close(self) -> None:
        """Uploads the last part and waits for every upload; raises on any failure."""
        if self._open:
            self._flush()
        while self._pending:
            self._wait(*self._pending.popleft())

    def abort(self) -> None:
        """Waits for the uploads in flight, ignoring their errors (the save failed)."""
        while self._pending:
            try:
                self._pending.popleft()[1].result()
            except Exception:  # noqa: BLE001 - already failing
                pass
