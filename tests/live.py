"""A real Daphne serving the test database, for integration tests.

Use the `daphne_server` fixture together with `transactional_db` (or
`django_db(transaction=True)`): the server is another process and only sees
committed rows.
"""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


def server_env(**extra: str) -> dict[str, str]:
    """The environment of a server process sharing the test process's database, Redis and keys."""
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "DEBUG": "false",
        "HTTPS_ONLY": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECRET_KEY": settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "PYTHONUNBUFFERED": "1",
        "PASSWORD_HASHERS": ",".join(settings.PASSWORD_HASHERS),
    }
    env.pop("REDIS_URL", None)
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    env.update(extra)
    return env


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s")


@dataclass
class LiveServer:
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_listening(name: str, argv: list[str], port: int, tmp_dir: Path, **popen) -> LiveServer:
    """Start a server process logging to tmp_dir/<name>-<port>.log; return once it listens on `port`."""
    log_path = tmp_dir / f"{name}-{port}.log"
    process = subprocess.Popen(argv, stdout=log_path.open("w"), stderr=subprocess.STDOUT, **popen)
    try:
        wait_for_port(port, process)
    except RuntimeError:
        process.kill()
        raise RuntimeError(log_path.read_text()) from None
    return LiveServer(port=port, process=process, log_path=log_path)


def start_daphne(tmp_dir: Path, **env: str) -> LiveServer:
    port = free_port()
    argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "xiaoxiang.asgi:application"]
    return start_listening("daphne", argv, port, tmp_dir, cwd=ROOT, env=server_env(**env))


def start_redis(tmp_dir: Path, port: int | None = None) -> LiveServer:
    """A throwaway redis-server of this test's own (never the shared one): fault tests may stop it.

    Restart one on the same `port` to bring a stopped one back.
    """
    port = port or free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return start_listening("redis", argv, port, tmp_dir, cwd=tmp_dir)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str | Callable[[], str]) -> object:
    """Poll `predicate` until it returns something true (returned), or fail after `timeout` seconds.

    `what` names what was awaited in the failure; a callable is asked then (to say what is still missing).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")


@pytest.fixture(scope="session")
def daphne_server(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[LiveServer]:
    """Daphne (HTTP + WebSocket) on the test database, for the whole session."""
    with django_db_blocker.unblock():
        server = start_daphne(tmp_path_factory.mktemp("live"), THROTTLE_ANON="100000/min", THROTTLE_USER="100000/min")
    yield server
    stop(server.process)
