"""Run one command and restart it whenever it exits, until told to stop.

    .venv/bin/python deploy/supervise.py COMMAND [ARGUMENT ...]

The Procfile topology's supervisor: honcho starts processes but never
restarts one (and stops them all when any exits), so each Procfile line runs
its process through this. A child that exits, whatever its exit code or
signal, is started again after a backoff that doubles from 1 s up to 30 s
and starts over once a child has stayed up for a minute. SIGTERM and SIGINT
go to the child, which shuts down gracefully in its own way (gunicorn and
Celery finish in-flight work, Daphne closes sockets with 1012); then this
exits with the child's exit code. Containers do not use it: Docker and
Kubernetes restart the container (docs/operations.md, "Supervision").

The child runs in its own session, so only this process signals it, once;
and it is killed if this process is (Linux's parent-death signal), so a
SIGKILL of the supervisor never leaves an orphan.
"""

import ctypes
import signal
import subprocess
import sys
import time

FIRST_DELAY = 1.0
MAX_DELAY = 30.0
STABLE_SECONDS = 60.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _log(message: str) -> None:
    print(f"supervise: {message}", file=sys.stderr, flush=True)


def supervise(argv: list[str]) -> int:
    stopping: list[int] = []
    child: subprocess.Popen | None = None

    def forward(signum: int, frame) -> None:
        stopping.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    delay = FIRST_DELAY
    while True:
        started = time.monotonic()
        child = subprocess.Popen(argv, start_new_session=True, preexec_fn=_die_with_parent)  # noqa: S603 (the Procfile line)
        _log(f"started {argv[0]} (pid {child.pid})")
        if stopping:  # a signal that came while the child was being started
            child.send_signal(stopping[-1])
        returncode = child.wait()
        if stopping:
            return returncode if returncode >= 0 else 128 - returncode
        if time.monotonic() - started >= STABLE_SECONDS:
            delay = FIRST_DELAY
        _log(f"{argv[0]} (pid {child.pid}) exited with {returncode}; restarting in {delay:g} s")
        deadline = time.monotonic() + delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        if stopping:
            return 0
        delay = min(delay * 2, MAX_DELAY)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(supervise(sys.argv[1:]))
