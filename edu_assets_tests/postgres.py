"""Start a throwaway PostgreSQL server for tests (PostgreSQL refuses to run as root: use the postgres user)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PgServer:
    host: str
    port: int
    user: str
    password: str
    db: str


def find_bin_dir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server(bin_dir: Path) -> Iterator[PgServer]:
    as_root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="edu-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    pwfile = base / "pw"
    password = "edu-test-pw"
    pwfile.write_text(password)
    if as_root:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        shutil.chown(pwfile, "postgres")
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    port = _free_port()
    subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "edu", "--auth=md5",
                    f"--pwfile={pwfile}", "-E", "UTF8"], check=True, capture_output=True)
    subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                    f"-p {port} -c listen_addresses=127.0.0.1 -k {sock}", "start"], check=True, capture_output=True)
    try:
        env = {**os.environ, "PGPASSWORD": password}
        for _ in range(50):
            ok = subprocess.run([str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "edu", "-d", "postgres",
                                 "-c", "CREATE DATABASE dagster"], env=env, capture_output=True)
            if ok.returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(ok.stderr.decode())
        yield PgServer("127.0.0.1", port, "edu", password, "dagster")
    finally:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
