"""gunicorn for the web role (HTTP only: nginx sends /ws/ and the long-poll to Daphne).

Listens on WEB_HOST:WEB_PORT (127.0.0.1 behind the Procfile's nginx, 0.0.0.0
in a container). Pre-fork workers, sized from the core count unless
WEB_CONCURRENCY says otherwise.
"""

import os
import shutil
import tempfile

bind = f"{os.environ.get('WEB_HOST', '127.0.0.1')}:{os.environ.get('WEB_PORT', '8000')}"
# The request path is mostly CPU (JSON, ORM) with short database waits: two per core keeps cores busy.
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * (os.cpu_count() or 1) + 1)
timeout = 30
graceful_timeout = 20
keepalive = 75  # longer than nginx's upstream keepalive, so nginx closes idle connections first
accesslog = None
errorlog = "-"

# prometheus-client's multiprocess mode: every worker writes its samples to
# files here and a scrape of any worker sums them. It must be in the
# environment before the workers import the app, hence here, in the master.
metrics_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="xiaoxiang-web-metrics-"))


def on_starting(server) -> None:
    # Samples of an earlier run (a restart reusing the directory) would be summed in.
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
