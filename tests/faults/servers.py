"""A PostgreSQL cluster of a fault test's own, on a free port (tests.live.start_redis makes a redis-server).

The shared Redis and PostgreSQL of the machine are never stopped: a fault
test points the topology at its own server and stops that one.
"""

import os
import subprocess
import time

from tests.live import free_port


class PostgresCluster:
    """A PostgreSQL cluster of its own (pg_createcluster) on a free port, trust auth; dropped by drop()."""

    def __init__(self) -> None:
        self.version = sorted(os.listdir("/etc/postgresql"))[-1]
        self.port = free_port()
        self.name = f"xxfault{self.port}"
        subprocess.run(
            ["pg_createcluster", self.version, self.name, "--port", str(self.port), "--", "--auth=trust"],
            check=True,
            capture_output=True,
        )
        self.start()
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q", "-c", "CREATE DATABASE xx"],
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/xx"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, *args],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self._ctl("start")
        deadline = time.monotonic() + 30
        while subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-q"]).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster {self.name} did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, in-flight transactions roll back."""
        self._ctl("stop", "-m", "fast")

    def drop(self) -> None:
        subprocess.run(["pg_dropcluster", "--stop", self.version, self.name], capture_output=True)
