"""Helpers shared by the benchmarks (not a benchmark itself): ports, the
throwaway bench database, percentiles and the server's environment."""

import os
import socket
import subprocess
import time
from urllib.parse import urlparse, urlunparse

PASSWORD = "bench-password-123"  # noqa: S105  (throwaway accounts in a throwaway database)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"daphne exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout}s")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def bench_database(database_url: str, suffix: str) -> tuple[str, str]:
    """(admin URL, bench URL): the bench database sits beside the configured one."""
    parsed = urlparse(database_url)
    name = parsed.path.lstrip("/") or "xiaoxiang"
    return urlunparse(parsed._replace(path="/postgres")), urlunparse(parsed._replace(path=f"/{name}_{suffix}"))


def recreate_database(admin_url: str, bench_url: str, *, drop_only: bool = False) -> None:
    import psycopg2

    name = urlparse(bench_url).path.lstrip("/")
    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()


def require_services() -> tuple[str, str]:
    """DATABASE_URL (PostgreSQL) and REDIS_URL, or stop with how to set them."""
    database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")) or not redis_url:
        raise SystemExit("the benchmarks need DATABASE_URL=postgres://... and REDIS_URL=redis://...")
    return database_url, redis_url


def server_env(bench_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """A production-like server environment with limits out of the way; only the request path is measured."""
    from cryptography.fernet import Fernet

    return {
        **os.environ,
        "DATABASE_URL": bench_url,
        "REDIS_URL": redis_url,
        "DEBUG": "false",
        "HTTPS_ONLY": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or "bench-" + Fernet.generate_key().decode(),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "PASSWORD_HASHERS": "django.contrib.auth.hashers.MD5PasswordHasher",
        "THROTTLE_USER": "1000000/min",
        "THROTTLE_ANON": "1000000/min",
        "THROTTLE_INGEST": "1000000/min",
        # Without a worker, ETA/alert jobs would just queue up.
        "TRACKING_JOBS_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_table() -> dict[int, tuple[int, float, int, str]]:
    """pid: (parent pid, CPU seconds of it and its reaped children, RSS KiB, command line), from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()  # noqa: SIM115
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                command = file.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/statm") as file:
                rss_kib = int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = sum(int(value) for value in fields[11:15]) / CLOCK_TICKS  # utime, stime, cutime, cstime
        table[int(entry)] = (int(fields[1]), cpu, rss_kib, command)
    return table


SUPERVISOR_MARK = "deploy/supervise.py"
ROLE_MARKS = {"web": ("gunicorn",), "ws": ("daphne",), "worker": ("celery",), "nginx": ("nginx",)}


def tree_usage(root_pids: list[int]) -> dict[str, dict[str, float]]:
    """CPU seconds and RSS KiB so far of each role's processes (by command line) at or below `root_pids`."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, *_rest) in table.items():
        children.setdefault(parent, []).append(pid)
    usage = {role: {"cpu": 0.0, "rss_kib": 0.0} for role in ROLE_MARKS}
    pending = [pid for pid in root_pids if pid in table]
    seen: set[int] = set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        pending += children.get(pid, [])
        _, cpu, rss_kib, command = table[pid]
        if SUPERVISOR_MARK in command:
            continue  # deploy/supervise.py: its child is counted, not it
        for role, marks in ROLE_MARKS.items():
            if any(mark in command for mark in marks):
                usage[role]["cpu"] += cpu
                usage[role]["rss_kib"] += rss_kib
                break
    return usage


def procfile_commands(root) -> dict[str, str]:
    """deploy/Procfile's process lines: name -> command."""
    commands = {}
    for line in (root / "deploy" / "Procfile").read_text().splitlines():
        if line and not line.startswith("#") and ":" in line:
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


class Topology:
    """The production topology of deploy/Procfile on free ports, started as `make run` starts it.

    Every process but the demo simulator runs under honcho, as `make run`
    does, except those named in `own`: those run from their very Procfile
    command line in a shell of their own, so a benchmark can stop and start
    one of them (honcho stops everything when one of its processes ends).
    """

    def __init__(self, root, env: dict[str, str], *, own: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> None:
        import tempfile

        self.root = root
        self.port = free_port()
        self.env = {
            **env,
            "PORT": str(self.port),
            "WEB_PORT": str(free_port()),
            "WS_PORT": str(free_port()),
            "CELERY_BEAT_SCHEDULE": os.path.join(tempfile.mkdtemp(prefix="bench-beat-"), "schedule"),
        }
        self.commands = procfile_commands(root)
        names = [name for name in self.commands if name not in ("simulator", *own, *skip)]
        self.log = tempfile.NamedTemporaryFile("w", prefix="bench-topology-", suffix=".log", delete=False)  # noqa: SIM115
        self.honcho = subprocess.Popen(
            [str(root / ".venv" / "bin" / "honcho"), "-f", "deploy/Procfile", "start", *names],
            cwd=root,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.own: dict[str, subprocess.Popen] = {}
        for name in own:
            self.start(name)

    def start(self, name: str) -> None:
        # exec: the shell becomes the process, so its pid is the server's.
        self.own[name] = subprocess.Popen(
            ["bash", "-c", f"exec {self.commands[name]}"],
            cwd=self.root,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, name: str, sig: int = 15) -> None:
        process = self.own.pop(name)
        process.send_signal(sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def pid(self, name: str) -> int:
        return self.own[name].pid

    def wait_ready(self, timeout: float = 60) -> None:
        import httpx

        wait_for_port(self.port, self.honcho, timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ws_up = httpx.get(f"http://127.0.0.1:{self.env['WS_PORT']}/healthz", timeout=2).status_code == 200
                if ws_up and httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise SystemExit(f"the topology did not answer /healthz; see {self.log.name}")

    def usage(self) -> dict[str, dict[str, float]]:
        return tree_usage([self.honcho.pid, *(process.pid for process in self.own.values())])

    def close(self) -> None:
        import signal

        for name in list(self.own):
            self.stop(name)
        self.honcho.send_signal(signal.SIGTERM)
        try:
            self.honcho.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.honcho.pid, signal.SIGKILL)
            self.honcho.wait(5)
        self.log.close()
