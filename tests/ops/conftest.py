"""The production topology of deploy/Procfile, started the way `make run` starts it.

honcho runs nginx (on PORT), gunicorn, Daphne, the Celery worker and beat
against the test database and Redis, on free ports. Tests talk to nginx
like a browser or a rider app would, and read each process's /metrics like
the scraper.
"""

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.live import ROOT, LiveServer, free_port, server_env

METRICS_TOKEN = "scraper-token-for-tests"
PROCESSES = ("nginx", "web", "ws", "worker", "beat")  # the Procfile without the demo simulator
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


@dataclass
class Topology(LiveServer):
    """The topology behind nginx: `port` is nginx's, `process` is honcho, `log_path` its log."""

    web_port: int
    ws_port: int
    worker_metrics_port: int
    processes: tuple[str, ...] = PROCESSES

    @property
    def metrics_ports(self) -> dict[str, int]:
        ports = {"web": self.web_port, "ws": self.ws_port, "worker": self.worker_metrics_port}
        return {role: port for role, port in ports.items() if role in self.processes}

    def pids(self, *words: str) -> list[int]:
        """honcho's descendants (each Procfile process leads a session of its own) with these arguments.

        Not the supervisors (deploy/supervise.py) the Procfile runs them under: the process itself.
        """
        children: dict[int, list[int]] = {}
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):  # gone meanwhile
                children.setdefault(_parent(int(proc.name)), []).append(int(proc.name))
        found, pending = [], list(children.get(self.process.pid, []))
        while pending:
            pid = pending.pop()
            pending += children.get(pid, [])
            with contextlib.suppress(OSError):
                argv = set(Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0"))
                if set(words) <= argv and "deploy/supervise.py" not in argv:
                    found.append(pid)
        return found

    def main_pid(self, *words: str) -> int:
        """The one process `pids` finds whose parent it does not find (a pool's parent, not its children)."""
        pids = self.pids(*words)
        mains = [pid for pid in pids if _parent(pid) not in pids]
        assert len(mains) == 1, {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in mains}
        return mains[0]

    def samples(self, role: str) -> dict[tuple[str, str], float]:
        """One process's /metrics as {(name, labels): value}."""
        response = httpx.get(
            f"http://127.0.0.1:{self.metrics_ports[role]}/metrics",
            headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
            timeout=10,
        )
        response.raise_for_status()
        found = {}
        for line in response.text.splitlines():
            match = SAMPLE.match(line)
            if match:
                found[(match["name"], match["labels"] or "")] = float(match["value"])
        return found


def _parent(pid: int) -> int:
    # /proc/<pid>/stat: "pid (command) state ppid ...", the command may hold spaces and parentheses.
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _up(topology: Topology) -> bool:
    try:
        ready = httpx.get(f"{topology.url}/readyz", timeout=2).status_code == 200
        scraped = all(topology.samples(role) for role in topology.metrics_ports)
    except httpx.HTTPError:
        return False
    return ready and scraped


def topology_start(log_dir: Path, processes: tuple[str, ...] = PROCESSES, **env: str) -> Topology:
    ports = {name: free_port() for name in ("PORT", "WEB_PORT", "WS_PORT", "WORKER_METRICS_PORT")}
    log_path = log_dir / "honcho.log"
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/honcho"), "-f", "deploy/Procfile", "start", *processes],
        cwd=ROOT,
        env=server_env(
            **{name: str(port) for name, port in ports.items()},
            METRICS_TOKEN=METRICS_TOKEN,
            WEB_CONCURRENCY="2",
            CELERY_BEAT_SCHEDULE=str(log_dir / "celerybeat-schedule"),
            THROTTLE_ANON="100000/min",
            THROTTLE_USER="100000/min",
            **env,
        ),
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        # Its own process group: teardown reaches every process honcho started.
        start_new_session=True,
    )
    topology = Topology(
        port=ports["PORT"],
        web_port=ports["WEB_PORT"],
        ws_port=ports["WS_PORT"],
        worker_metrics_port=ports["WORKER_METRICS_PORT"],
        process=process,
        log_path=log_path,
        processes=processes,
    )
    deadline = time.monotonic() + 60
    while not _up(topology):
        if process.poll() is not None or time.monotonic() > deadline:
            topology_stop(topology)
            raise RuntimeError(f"the topology did not come up:\n{topology.log()}")
        time.sleep(0.5)
    return topology


def topology_stop(topology: Topology) -> None:
    if topology.process.poll() is None:
        os.killpg(topology.process.pid, signal.SIGTERM)  # honcho passes it on to each process
        with contextlib.suppress(subprocess.TimeoutExpired):
            topology.process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(topology.process.pid, signal.SIGKILL)  # anything still left of this group
    topology.process.wait()


@pytest.fixture(scope="module")
def topology_env() -> dict[str, str]:
    """Extra environment variables of the topology; a test module overrides this fixture to set some."""
    return {}


# Per module, not per session: its worker and beat run ETA and alert jobs,
# which would add events to other tests' orders.
@pytest.fixture(scope="module")
def topology(topology_env, django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Topology]:
    """nginx + gunicorn + Daphne + Celery worker and beat, with the jobs on (ETAs, alerts)."""
    from tests.jobs.test_production import _purge_broker

    with django_db_blocker.unblock():
        _purge_broker()
        started = topology_start(tmp_path_factory.mktemp("topology"), TRACKING_JOBS_ENABLED="true", **topology_env)
    yield started
    topology_stop(started)
