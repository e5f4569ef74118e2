"""A PostgreSQL cluster of a fault test's own, on a free port (tests.live.start_redis makes a redis-server),
and a client that keeps sending while a server is down.

The shared Redis and PostgreSQL of the machine are never stopped: a fault
test points the topology at its own server and stops that one.
"""

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from django.utils import timezone

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


@dataclass
class Answer:
    sent_at: float  # time.monotonic()
    status: int
    retry_after: str | None
    body: dict
    point_id: str  # the client_id of the point it posted (a fresh id per request)
    seconds: float


class Poster(threading.Thread):
    """Sends one request every 0.25 s until `stopping` is set, and keeps every answer.

    `request(client, point_id)` sends one (see `point_post`).
    """

    def __init__(self, url: str, request: Callable[[httpx.Client, str], httpx.Response]) -> None:
        super().__init__(daemon=True)
        self.url, self.request = url, request
        self.answers: list[Answer] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=15) as client:
            while not self.stopping.is_set():
                point_id = uuid.uuid4().hex
                sent_at = time.monotonic()
                response = self.request(client, point_id)
                json_body = response.headers.get("content-type", "").startswith("application/json")
                self.answers.append(
                    Answer(
                        sent_at,
                        response.status_code,
                        response.headers.get("retry-after"),
                        response.json() if json_body else {"text": response.text},
                        point_id,
                        time.monotonic() - sent_at,
                    )
                )
                self.stopping.wait(0.25)

    def between(self, start: float, end: float) -> list[Answer]:
        return [answer for answer in self.answers if start <= answer.sent_at < end]


def point_post(headers: dict[str, str]) -> Callable[[httpx.Client, str], httpx.Response]:
    """A rider's live point now, as `Poster`'s request."""

    def post(client: httpx.Client, point_id: str) -> httpx.Response:
        point = {"client_id": point_id, "lat": 31.19, "lon": 121.44, "recorded_at": timezone.now().isoformat()}
        return client.post("/api/rider/locations/", json={"points": [point]}, headers=headers)

    return post
