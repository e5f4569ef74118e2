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
