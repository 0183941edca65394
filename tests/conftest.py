"""Test set-up: 8 fake CPU devices (before jax is imported) and hypothesis profiles."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib  # noqa: E402

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Local S3 (moto) and GCS (fake-gcs-server) emulators, started on demand.
pytest_plugins = ["emulator_fixtures"]

settings.register_profile(
    "default", deadline=None, max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile(
    "thorough", deadline=None, max_examples=400,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO = pathlib.Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "orbax-corpus"


@pytest.fixture
def corpus() -> pathlib.Path:
    if not CORPUS.is_dir():
        pytest.skip(f"the shared Orbax corpus is not at {CORPUS}")
    return CORPUS
