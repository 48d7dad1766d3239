"""A throwaway PostgreSQL cluster in a temp dir, for tests and benchmarks.

`initdb` refuses to run as root, so as root the cluster runs as the
`postgres` user (trust auth, loopback only). fsync is off by default (it
holds test data); a benchmark that counts the server's cost turns it on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .processes import free_port


class PostgresMissingError(RuntimeError):
    pass


def pg_bin(name: str) -> str:
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise PostgresMissingError(f"PostgreSQL's {name} is missing: run scripts/setup-system.sh")
    return found


@contextmanager
def throwaway_postgres(max_connections: int = 100, *, fsync: bool = False) -> Iterator[str]:
    """Start a cluster; yield its base URL (`postgresql+psycopg://postgres@127.0.0.1:PORT`).

    `fsync=True` runs it as a production server does (every commit flushed
    to disk), for figures that count what the database costs."""
    root = Path(tempfile.mkdtemp(prefix="fogline-pg-"))
    data, sockdir = root / "data", root / "sock"
    sockdir.mkdir()
    port = free_port()
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockdir, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    initdb = [pg_bin("initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8"]
    subprocess.run([*as_postgres, *initdb], check=True, capture_output=True)
    options = (
        f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1 -c fsync={'on' if fsync else 'off'} "
        f"-c max_connections={max_connections}"
    )
    pg_ctl = pg_bin("pg_ctl")
    log = str(root / "log")
    subprocess.run(
        [*as_postgres, pg_ctl, "-D", str(data), "-o", options, "-w", "-l", log, "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*as_postgres, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def create_database(base_url: str, name: str) -> str:
    """A new empty database on the cluster; returns its URL."""
    import psycopg

    plain = base_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(f"{plain}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base_url}/{name}"
