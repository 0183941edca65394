"""Pytest fixtures for the local S3 and GCS emulators in ``emulators.py``.

Register in conftest.py with ``pytest_plugins = ["emulator_fixtures"]``.

- ``s3_server`` / ``gcs_server``: one emulator process each per test session,
  stopped by pid at the end.
- ``s3_bucket`` / ``gcs_bucket``: a new, uniquely named bucket on that server,
  with the clients' environment set through ``monkeypatch``; yields
  ``"s3://<bucket>"`` / ``"gs://<bucket>"``.
- ``fresh_s3_server`` / ``fresh_gcs_server``: a private emulator for one test,
  which it may kill or freeze; the environment points at it.
"""

from __future__ import annotations

import uuid

import pytest

import emulators


def _unique_bucket() -> str:
    return f"test-{uuid.uuid4().hex[:16]}"


def _set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _gcs_client_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    _set_env(monkeypatch, emulators.gcs_env(endpoint))
    try:
        import fsspec.config  # pylint: disable=import-outside-toplevel
    except ImportError:
        return
    # gcsfs (epath's gs:// backend) then sends no credentials at all, so it
    # never looks for a developer's real ones.
    conf = fsspec.config.conf
    monkeypatch.setitem(conf, "gs", {**conf.get("gs", {}), "token": "anon"})


@pytest.fixture(scope="session")
def s3_server():
    server = emulators.start_s3()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gcs_server():
    server = emulators.start_gcs()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    if not s3_server.running():
        pytest.fail(f"the session's S3 emulator died; its log:\n{s3_server.log()}")
    _set_env(monkeypatch, emulators.s3_env(s3_server.endpoint))
    name = _unique_bucket()
    emulators.create_s3_bucket(s3_server.endpoint, name)
    yield f"s3://{name}"


@pytest.fixture
def gcs_bucket(gcs_server, monkeypatch):
    if not gcs_server.running():
        pytest.fail(f"the session's GCS emulator died; its log:\n{gcs_server.log()}")
    _gcs_client_env(monkeypatch, gcs_server.endpoint)
    name = _unique_bucket()
    emulators.create_gcs_bucket(gcs_server.endpoint, name)
    yield f"gs://{name}"


@pytest.fixture
def fresh_s3_server(monkeypatch):
    server = emulators.start_s3()
    _set_env(monkeypatch, emulators.s3_env(server.endpoint))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_gcs_server(monkeypatch):
    server = emulators.start_gcs()
    _gcs_client_env(monkeypatch, server.endpoint)
    try:
        yield server
    finally:
        server.stop()
