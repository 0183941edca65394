"""The benchmark scripts still run (tiny sizes, ours only), locally and on the object
store emulators: they are run on request, so nothing else would notice them break.
Their timings are not checked here."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO


def test_save_load_benchmark_prints_its_table(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "save_load.py"), "--scale", "0.002",
         "--repeats", "1", "--only", "ac", "--libs", "orbax_v1", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split("|")[1:3] for line in out.stdout.splitlines() if line.startswith("| ")]
    names = [(w.strip(), lib.strip()) for w, lib in rows]
    for workload in "ac":
        assert (workload, "orbax_v1") in names
        assert (workload, "floor: O_DIRECT read of our files") in names


@pytest.mark.parametrize("backend", ["s3", "gcs"])
def test_save_load_benchmark_on_an_object_store(backend):
    """The script starts the emulator itself, prints one load column, and stops it."""
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "save_load.py"), "--scale", "0.002",
         "--repeats", "1", "--only", "a", "--libs", "orbax_v1", "--backend", backend],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    heading = next(line for line in out.stdout.splitlines() if line.startswith("### "))
    assert heading.startswith(f"### {backend}: ")
    assert "| load s (GB/s) |" in out.stdout and "load cold" not in out.stdout
    rows = [line.split("|")[1:3] for line in out.stdout.splitlines() if line.startswith("| ")]
    names = [(w.strip(), lib.strip()) for w, lib in rows]
    assert ("a", "orbax_v1") in names
    assert ("a", "raw GETs of our objects, all at once") in names
    pid = int(re.search(r"pid (\d+)", heading).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the emulator was stopped by its pid
