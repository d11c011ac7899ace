"""A throwaway PostgreSQL cluster from the Debian package, started and stopped by the tests themselves."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.server_process import free_port


def postgres_bin() -> Path | None:
    """The folder holding initdb/pg_ctl, installing Debian's `postgresql` package if it is missing."""
    def find() -> Path | None:
        found = shutil.which("initdb") and shutil.which("pg_ctl")
        if found:
            return Path(os.path.realpath(shutil.which("pg_ctl"))).parent
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        return Path(versions[-1]).parent if versions else None

    if find() is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "postgresql"], env=env,
                       capture_output=True, check=False, timeout=900)
    return find()


class PostgresCluster:
    """initdb + pg_ctl in a temp dir on a free loopback port; runs as `postgres` when we are root."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="slimserve-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.root, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")

    @property
    def url(self) -> str:
        """A libpq URL for the superuser on loopback."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bindir / tool), *args], check=True, capture_output=True,
                       timeout=120, cwd=self.root)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "start")

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut, as in an outage)."""
        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                        "stop"], capture_output=True, timeout=120, check=False, cwd=self.root)

    def remove(self) -> None:
        """Stop if running and delete the cluster's files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module", name="cluster")
def cluster_fixture():
    """One throwaway cluster for the test module, removed even when a test fails."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed and `apt-get install postgresql` was not possible here")
    pg = PostgresCluster(bindir)
    try:
        pg.start()
        yield pg
    finally:
        pg.remove()
