"""A real S3-compatible server for tests and benchmarks: moto's server mode, in a child process.

moto answers the S3 REST API over HTTP on 127.0.0.1, so the code under test talks to it exactly as it talks to
AWS, MinIO or any S3-compatible store: through the standard ``AWS_*`` variables (``env()`` gives them). Its
objects live in the child's memory and go with it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

# Test credentials for the local moto server only: moto accepts any key; these are not secrets.
ACCESS_KEY = "edu-test-access-key"
SECRET_KEY = "edu-test-secret-key"
REGION = "us-east-1"


@dataclass
class S3Server:
    url: str
    process: subprocess.Popen

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a client at this server."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_REGION": REGION}

    def create_bucket(self, name: str) -> None:
        import s3fs

        fs = s3fs.S3FileSystem(key=ACCESS_KEY, secret=SECRET_KEY, endpoint_url=self.url,
                               client_kwargs={"region_name": REGION}, skip_instance_cache=True)
        fs.call_s3("create_bucket", Bucket=name)  # no LocationConstraint: us-east-1 refuses one

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, even by SIGKILL (no orphaned servers)."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_s3_server(timeout: float = 30.0) -> S3Server:
    """Start moto's S3 server on a free loopback port; return once it answers HTTP."""
    for _ in range(3):  # the free port may be taken between choosing it and the child binding it
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "MOTO_CALL_RESET_API": "false"},
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/moto-api/", timeout=1.0)
                return S3Server(url, proc)
            except httpx.TransportError:
                time.sleep(0.1)  # readiness poll of a starting server, not an ordering wait
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    raise RuntimeError("moto's S3 server did not start (is `moto[server]` installed? pip install -e '.[dev]')")


@contextmanager
def s3_server() -> Iterator[S3Server]:
    server = start_s3_server()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------- pytest fixtures (import them in a test module)
@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """A moto S3 server for the test module."""
    with s3_server() as server:
        yield server


@pytest.fixture
def s3_lake(s3: S3Server, lake_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``EDU_LAKE_ROOT=s3://<fresh bucket>/lake`` on the module's server, through the standard AWS variables
    (the catalog and work files stay local, under the test's ``lake_env``)."""
    bucket = f"edu-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(bucket)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    root = f"s3://{bucket}/lake"
    monkeypatch.setenv("EDU_LAKE_ROOT", root)
    return root
