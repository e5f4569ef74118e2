"""Private servers for fault tests: a redis-server and a PostgreSQL cluster of their own, on free ports.

The shared Redis and PostgreSQL of the machine are never stopped: a fault
test points the topology at its own server and kills that one.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.live import free_port


class RedisServer:
    """A redis-server on a free port; kill() and start() again keep the port (and lose the data, like a crash)."""

    def __init__(self, tmp_dir: Path) -> None:
        self.port = free_port()
        self.log_path = tmp_dir / f"redis-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=self.log_path.open("a"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if redis.Redis(port=self.port, socket_connect_timeout=0.5).ping():
                    return
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start:\n{self.log_path.read_text()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: connections drop without a goodbye, as in a crash or a network cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        self.kill()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                tree.setdefault(parent, []).append(int(entry))
    return tree


def descendants(root: int) -> list[int]:
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        for child in tree.get(pid, []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    return []


def topology_pids(topology, *words: str) -> list[int]:
    """The pids under the topology whose command line contains every one of `words`."""
    return [
        pid
        for pid in descendants(topology.process.pid)
        if all(any(word in part for part in cmdline(pid)) for word in words)
    ]


def process_alive(pids: list[int]) -> bool:
    """Whether every pid still runs (and is not a zombie)."""
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state == "Z":
            return False
    return bool(pids)


def terminate(pid: int, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


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
