"""Every ```python block in docs/*.md runs, in order, one namespace per page."""

import os
import re

import pytest

from conftest import REPO

PAGES = sorted((REPO / "docs").glob("*.md"))


def _blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_docs_have_examples():
    assert sum(len(_blocks(p.read_text())) for p in PAGES) >= 8


def _example_buckets(request) -> None:
    """docs/storage.md uses `example-bucket` on S3 and GCS: the emulators' (the
    fixtures point the environment at them)."""
    import emulators
    for scheme in ("s3", "gcs"):
        request.getfixturevalue(f"{scheme}_bucket")
        server = request.getfixturevalue(f"{scheme}_server")
        try:
            getattr(emulators, f"create_{scheme}_bucket")(server.endpoint, "example-bucket")
        except Exception:  # noqa: BLE001 - created by an earlier run in this session
            pass


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_doc_examples_run(page, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    if page.name == "storage.md":
        _example_buckets(request)
    namespace: dict = {"__name__": f"docs.{page.stem}"}
    for i, block in enumerate(_blocks(page.read_text())):
        try:
            exec(compile(block, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # pragma: no cover - the message is the point
            raise AssertionError(f"{page.name} block {i} failed:\n{block}") from e


def test_demo_runs(tmp_path, capsys, monkeypatch):
    import runpy
    monkeypatch.setattr("sys.argv", ["demo.py", str(tmp_path / "demo")])
    runpy.run_path(str(REPO / "docs" / "demo.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "restored state is identical" in out and "pytree/_METADATA" in out
    assert os.path.isdir(tmp_path / "demo" / "pytree")
