"""The one background thread that finishes asynchronous saves and runs async loads.

It is a plain worker thread owned by the library (no asyncio loop is created or
patched), so async calls work the same from scripts, notebooks and servers that
already run an event loop. Jobs run one at a time, in the order they were submitted.
At interpreter exit, pending jobs are finished first (a message on stderr says so),
and a job that failed without anyone having seen its error is reported loudly.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import sys
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_executor: concurrent.futures.ThreadPoolExecutor | None = None
_unseen: list[AsyncResponse] = []


class AsyncResponse(Generic[T]):
    """The handle of a background operation."""

    def __init__(self, future: concurrent.futures.Future, description: str):
        self._future = future
        self._description = description
        self._seen = False

    def result(self, timeout: float | None = None) -> T:
        """Waits for the operation and returns its value, or re-raises its error.

        Raises `TimeoutError` if it is not done within `timeout` seconds (it goes on).
        """
        try:
            value = self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"{self._description} not done after {timeout} s") from None
        except BaseException:
            self._seen = True
            raise
        self._seen = True
        return value

    def done(self) -> bool:
        return self._future.done()

    @property
    def seen(self) -> bool:
        """Whether `.result()` or `.exception()` already reported the outcome."""
        return self._seen

    def exception(self) -> BaseException | None:
        """The error it failed with, once done (None on success); marks it as seen."""
        if not self._future.done():
            return None
        self._seen = True
        return self._future.exception()

    def on_complete(self, callback: Callable[[AsyncResponse], None]) -> None:
        """Calls `callback(self)` when done (at once if it already is)."""
        self._future.add_done_callback(lambda _: callback(self))

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<AsyncResponse {self._description}: {state}>"


def completed(value: Any, description: str = "operation") -> AsyncResponse:
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_result(value)
    return AsyncResponse(future, description)


def submit(fn: Callable[[], T], description: str) -> AsyncResponse[T]:
    """Runs `fn()` on the background thread; returns its handle at once."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="orbax_v1-background")
            _register_shutdown_notice()
        response = AsyncResponse(_executor.submit(fn), description)
        _unseen[:] = [r for r in _unseen if not (r.done() and r._seen)]
        _unseen.append(response)
    return response


def pending() -> list[AsyncResponse]:
    with _lock:
        return [r for r in _unseen if not r.done()]


def _register_shutdown_notice() -> None:
    """Says on stderr that exit waits for pending saves (before the executor drains)."""
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - every CPython 3.9+ has it
        return

    def notice():
        waiting = pending()
        if waiting:
            print(f"orbax_v1: finishing {len(waiting)} pending background operation(s) "
                  f"before exit: {', '.join(r._description for r in waiting)}",
                  file=sys.stderr, flush=True)

    register(notice)


@atexit.register
def _report_unseen_failures() -> None:
    for response in list(_unseen):
        if not response.done():
            print(f"orbax_v1: WARNING: {response._description} did NOT finish before exit; "
                  "that checkpoint was not committed.", file=sys.stderr, flush=True)
        elif not response._seen and response._future.exception() is not None:
            print(f"orbax_v1: WARNING: {response._description} FAILED in the background and "
                  f"its error was never retrieved: {response._future.exception()!r}",
                  file=sys.stderr, flush=True)
