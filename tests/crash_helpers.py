"""What the SIGKILL tests share: running a child until killed, calling with a hang
deadline, and exact tree comparison."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np


def run_and_kill(args, stderr_path, *, kill_after_s, timeout_s, ctx=""):
    """Runs `python args...`; SIGKILLs it `kill_after_s` after it prints `ready`.

    `kill_after_s=None` lets it run (or die) on its own. Every wait has `timeout_s`.
    Returns (returncode, the `committed <n>` numbers it printed in order, stderr text).
    """
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, *map(str, args)], stdout=subprocess.PIPE,
                                stderr=stderr, env=env, text=True)
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        try:
            first = lines.get(timeout=timeout_s)
        except queue.Empty:
            first = None
        if first == "ready" and kill_after_s is not None:
            time.sleep(kill_after_s)
            proc.send_signal(signal.SIGKILL)
        returncode = proc.wait(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=timeout_s)
    reader.join(timeout=timeout_s)
    assert not reader.is_alive(), f"{ctx}: child's stdout never closed"
    proc.stdout.close()
    rest = []
    if first is not None:  # else the queue holds nothing (or only what came after a timeout)
        while (line := lines.get_nowait()) is not None:
            rest.append(line)
    with open(stderr_path) as f:
        err = f.read()
    assert first == "ready", f"{ctx}: child did not start: first line {first!r}\n{err}"
    assert all(line.startswith("committed ") for line in rest), f"{ctx}: {rest}\n{err}"
    return returncode, [int(line.split()[1]) for line in rest], err


def call_with_timeout(fn, what, timeout_s=60.0):
    """fn() on a daemon thread; fails the test if it runs past `timeout_s` (a hang)."""
    result = {}

    def work():
        try:
            result["ok"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test thread
            result["exc"] = e

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout_s)
    assert not worker.is_alive(), f"{what} hung for more than {timeout_s}s"
    if "exc" in result:
        raise result["exc"]
    return result["ok"]


def _leaf_problem(expected, got) -> str | None:
    if isinstance(expected, jax.Array):  # no abstract tree: loads into host memory
        if type(got) is not np.ndarray:
            return f"expected a saved jax.Array to load as np.ndarray, got {type(got)}"
    elif type(got) is not type(expected):
        return f"expected type {type(expected)}, got {type(got)}"
    if isinstance(expected, (str, bool, int, float)) and not isinstance(expected, np.generic):
        return None if got == expected else f"expected {expected!r}, got {got!r}"
    e, g = np.asarray(expected), np.asarray(got)
    if e.dtype != g.dtype or e.shape != g.shape:
        return f"expected {e.dtype}{e.shape}, got {g.dtype}{g.shape}"
    return None if np.array_equal(e, g) else f"expected {e!r}, got {g!r}"


def tree_problem(expected, got) -> str | None:
    """None when `got` equals `expected` exactly (structure, leaf types, dtypes, values)."""
    e_leaves, e_def = jax.tree_util.tree_flatten_with_path(expected)
    g_leaves, g_def = jax.tree_util.tree_flatten_with_path(got)
    if e_def != g_def:
        return f"tree structure differs: expected {e_def}, got {g_def}"
    for (keypath, e), (_, g) in zip(e_leaves, g_leaves):
        problem = _leaf_problem(e, g)
        if problem:
            return f"leaf {jax.tree_util.keystr(keypath)}: {problem}"
    return None
