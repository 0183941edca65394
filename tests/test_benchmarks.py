"""The benchmark scripts still run (tiny sizes, ours only): they are run on request,
so nothing else would notice them break. Their timings are not checked here."""

import subprocess
import sys

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
