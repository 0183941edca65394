"""Pausing Python's cyclic garbage collector while a save or load walks a tree.

Saving or loading a tree of thousands of leaves allocates tens of thousands of small
containers (metadata entries, key tuples, futures). Each burst of allocations starts
a collection, and the older generations' collections traverse the whole heap, the
caller's objects included: in a 10,000-leaf save or load they cost as much as the
work itself. These phases create no reference cycles worth freeing early, so the
collector is paused while any of them runs, in any thread, and resumed (if it was
on) when the last one ends. Reference counting still frees everything else at once.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

_F = TypeVar("_F", bound=Callable)
_lock = threading.Lock()
_depth = 0
_resume = False


@contextlib.contextmanager
def paused() -> Iterator[None]:
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()


def while_paused(fn: _F) -> _F:
    """Decorator: `fn` runs with the collector paused."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with paused():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]
