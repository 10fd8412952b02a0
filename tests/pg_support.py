"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary folder, run by a non-root
user, on a free loopback port with its unix socket in that folder, stopped at the end.

``postgres_server`` (session-scoped) starts it on first use; ``new_database_url()`` hands each
test a fresh schema in it. Without PostgreSQL's server binaries the PostgreSQL half of the
tests is skipped, except in CI (``CI`` set), where a missing PostgreSQL fails: scripts/test.sh
installs Debian's ``postgresql``.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest

_SCHEMAS = itertools.count(1)


def server_bin_dir() -> Path | None:
    """Debian's newest /usr/lib/postgresql/N/bin, else wherever initdb and postgres are on PATH."""
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                    key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if debian:
        return Path(debian[-1]).parent
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if initdb and postgres and Path(initdb).parent == Path(postgres).parent:
        return Path(initdb).parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> str | None:
    """None when we are not root (run as ourselves); else a system user postgres may run as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return "postgres"


class PostgresCluster:
    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.user = _server_user()
        # /tmp: the server user must reach it (a root-only TMPDIR would not do); the socket path stays short.
        self.root = Path(tempfile.mkdtemp(prefix="orq-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self.data = self.root / "data"
        self.port = _free_port()
        if self.user is not None:
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, self.user)

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        init = self._run("initdb", "-D", str(self.data), "--auth=trust", "--username=postgres", "--encoding=UTF8",
                         "--no-sync", "--locale=C")
        if init.returncode:
            raise RuntimeError(f"initdb failed: {init.stderr or init.stdout}")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        started = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
                            "-w", "-t", "60", "start")
        if started.returncode:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"postgres did not start: {started.stderr or started.stdout}\n{log}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", schema: str | None = None) -> str:
        url = f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        if schema:
            url += "?options=" + quote(f"-c search_path={schema}")
        return url

    def new_database_url(self) -> str:
        """A URL whose tables land in a schema no other test uses (cheaper than a database each)."""
        import psycopg

        schema = f"t{os.getpid()}_{next(_SCHEMAS)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA {schema}")
        return self.url(schema=schema)


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = server_bin_dir()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's server binaries are missing; scripts/test.sh installs Debian's postgresql")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    cluster = PostgresCluster(bin_dir)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


BACKENDS = ["sqlite", "postgres"]


def store_target(backend: str, request, tmp_path: Path) -> str:
    """What ORQ_PLAYGROUND_DB (or Store(...)) gets for ``backend``: a fresh file or a fresh schema."""
    if backend == "sqlite":
        return str(tmp_path / "store.db")
    return request.getfixturevalue("postgres_server").new_database_url()
