"""Fault tests: real processes of the Procfile topology on private servers, killed and restarted.

Each test gets its own `redis-server` on a free port (never the shared one),
which it may kill and bring back on the same port with the data it had (an
append-only file, fsynced on every write). Processes run from their very
deploy/Procfile line; every process a test starts is killed by pid at the end.
"""

import contextlib
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import connection

from tests.live import ROOT, free_port, server_env, wait_until

VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_]+)(?::-(?P<default>[^}]*))?\}")
SUPERVISOR = [".venv/bin/python", "deploy/supervise.py"]


def procfile_argv(role: str, env: dict[str, str], *, supervised: bool = True) -> list[str]:
    """The role's deploy/Procfile line as argv, ${VARIABLE}s filled from env; without the supervisor if asked."""
    for line in (ROOT / "deploy/Procfile").read_text().splitlines():
        if line.startswith(f"{role}:"):
            command = VARIABLE.sub(lambda m: env.get(m["name"], m["default"] or ""), line.split(":", 1)[1])
            argv = shlex.split(command)
            return argv if supervised else argv[len(SUPERVISOR) :]
    raise KeyError(role)


def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def waiting_for_a_lock() -> int:
    """Backends of this test database waiting for a row lock (a server process blocked mid-request or mid-task)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid)"
            " WHERE NOT granted AND datname = current_database()"
        )
        return cursor.fetchone()[0]


@dataclass
class Process:
    """A process started by a test, in its own session, with its output in a log file."""

    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, *, count: int = 1, timeout: float = 60) -> None:
        wait_until(
            lambda: self.log().count(text) >= count or self.popen.poll() is not None,
            timeout=timeout,
            what=f"{text!r} x{count} in the log",
        )
        assert self.log().count(text) >= count, self.log()

    def kill(self) -> None:
        """SIGKILL its whole session (its children too), then reap it."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait()


@dataclass
class Processes:
    log_dir: Path
    started: list[Process] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        log_path = self.log_dir / f"{name}-{len(self.started)}.log"
        popen = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )
        process = Process(popen, log_path)
        self.started.append(process)
        return process


@pytest.fixture
def processes(tmp_path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    for process in reversed(started.started):
        for child in children(process.pid):  # a supervisor's child runs in a session of its own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child, signal.SIGKILL)
        process.kill()


@dataclass
class RedisServer:
    port: int
    data_dir: Path
    processes: Processes
    persistent: bool = True  # an append-only file fsynced on every write: back with all it had
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        persistence = ["--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always"]
        argv += [*persistence, "--dir", str(self.data_dir)]
        self.process = self.processes.start("redis", argv, os.environ.copy())
        self.process.wait_for_log("Ready to accept connections", timeout=20)

    def kill(self) -> None:
        self.process.kill()


@pytest.fixture
def private_redis(processes, tmp_path) -> RedisServer:
    server = RedisServer(port=free_port(), data_dir=tmp_path / "redis", processes=processes)
    server.data_dir.mkdir()
    server.start()
    return server


def role_env(redis: RedisServer, **extra: str) -> dict[str, str]:
    """A server process on the test database and the private Redis, with the ETA and alert jobs on."""
    return server_env(REDIS_URL=redis.url, TRACKING_JOBS_ENABLED="true", **extra)
