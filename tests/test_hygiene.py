"""House rules that keep the package honest: no orbax import, small modules."""

import subprocess
import sys

from conftest import REPO

PACKAGES = ("orbax_v1", "compat_v0")


def test_package_never_imports_orbax(tmp_path):
    code = (
        "import sys, numpy as np, orbax_v1, compat_v0\n"
        f"orbax_v1.save_pytree({str(tmp_path / 'c')!r}, {{'x': np.ones(3), 's': 'a'}})\n"
        f"orbax_v1.load({str(tmp_path / 'c')!r}); orbax_v1.metadata({str(tmp_path / 'c')!r})\n"
        "bad = sorted(m for m in sys.modules if m == 'orbax' or m.startswith('orbax.'))\n"
        "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)
    for package in PACKAGES:
        for source in (REPO / package).rglob("*.py"):
            for line in source.read_text().splitlines():
                stripped = line.strip()
                assert not stripped.startswith(("import orbax.", "from orbax.", "from orbax ")) \
                    and stripped != "import orbax", f"{source}: {line}"


def test_modules_stay_small():
    for package in PACKAGES:
        for source in (REPO / package).rglob("*.py"):
            lines = len(source.read_text().splitlines())
            assert lines <= 400, f"{source} has {lines} lines: split it by job"


def test_public_names_are_exported():
    import orbax_v1
    for name in orbax_v1.__all__:
        assert hasattr(orbax_v1, name), name
    for name in ("save_pytree", "load", "load_pytree", "metadata", "pytree_metadata",
                 "PLACEHOLDER"):
        assert name in orbax_v1.__all__
    assert orbax_v1.PLACEHOLDER is ...
