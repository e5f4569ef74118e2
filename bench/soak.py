"""Soak benchmark: the production topology under steady light traffic for half an hour; does memory grow?

Starts deploy/Procfile as `make run` does (support.Topology: nginx, gunicorn,
Daphne, the Celery worker and beat, each under deploy/supervise.py; jobs on)
on its own database (<name>_bench_soak), then for the whole duration:

- riders: each posts one live point every RIDER_INTERVAL seconds through nginx;
- watchers: WebSocket customers on /ws/orders/<id>/, reconnecting if dropped;
- readers: the customer reads each order's REST detail every READ_INTERVAL seconds.

Every SAMPLE_INTERVAL seconds it reads the RSS of every process of the
topology from /proc/<pid>/statm. At the end it prints, per process, the
median RSS over the minute after the warm-up and over the last minute, and
the growth between them; the target is at most 10 % for every process. A
process that was restarted (new pid) is reported as such.

    python bench/soak.py [--seconds 1800] [--warmup 300] [--riders 10] [--watchers 20]

The duration may also come from SOAK_SECONDS. Not part of CI (`make soak`).
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from ingest import HttpConnection, points_body, setup_data  # noqa: E402  (bench/ is on sys.path)
from support import (  # noqa: E402
    SUPERVISOR_MARK,
    Topology,
    bench_database,
    process_table,
    recreate_database,
    require_services,
    server_env,
)

RIDER_INTERVAL = 2.0
READ_INTERVAL = 30.0
SAMPLE_INTERVAL = 10.0
WINDOW = 60.0  # seconds of samples whose median is "the RSS at" a moment
TARGET_GROWTH = 10.0


def process_name(command: str, parent_command: str) -> str | None:
    """A readable role for one process of the topology, or None for what is not one (the shells honcho uses)."""
    if command.startswith("/bin/sh"):
        return None
    if SUPERVISOR_MARK in command:
        return f"supervise ({process_name(command.split(SUPERVISOR_MARK, 1)[1].strip(), '')})"
    under_own_role = SUPERVISOR_MARK not in parent_command
    if command.startswith("nginx"):
        return "nginx " + command.split()[1].rstrip(":")  # nginx: master process / worker process
    if "deploy/nginx/run.py" in command:
        return "nginx"
    if "gunicorn" in command:
        return "gunicorn worker" if under_own_role and "gunicorn" in parent_command else "gunicorn master"
    if "daphne" in command:
        return "daphne"
    if "celery" in command and " beat" in command:
        return "celery beat"
    if "celery" in command and " worker" in command:
        return "celery pool child" if under_own_role and "celery" in parent_command else "celery worker"
    return None


def topology_processes(root_pid: int) -> dict[int, tuple[str, int]]:
    """pid: (name, RSS KiB) of every process below root_pid."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, *_rest) in table.items():
        children.setdefault(parent, []).append(pid)
    found, pending = {}, list(children.get(root_pid, []))
    while pending:
        pid = pending.pop()
        pending += children.get(pid, [])
        parent, _cpu, rss_kib, command = table[pid]
        name = process_name(command, table.get(parent, (0, 0, 0, ""))[3])
        if name:
            found[pid] = (name, rss_kib)
    return found


async def riders(port: int, tokens: list[str], until: float, counts: dict[str, int]) -> None:
    async def one(index: int, token: str) -> None:
        connection = HttpConnection(port, token)
        number = 0
        await asyncio.sleep(random.uniform(0, RIDER_INTERVAL))
        while time.monotonic() < until:
            body, _ = points_body("soak", index, range(number, number + 1), replay_from=None)
            number += 1
            try:
                status, _ = await connection.post(body)
                counts["posts" if status == 200 else f"post {status}"] += 1
            except (OSError, EOFError, ValueError):  # the connection dropped (EOFError: IncompleteReadError)
                counts["post errors"] += 1
                connection.close()
                connection.writer = None
            await asyncio.sleep(RIDER_INTERVAL)
        connection.close()

    await asyncio.gather(*(one(index, token) for index, token in enumerate(tokens)))


async def watchers(port: int, order_ids: list[str], token: str, count: int, until: float, counts) -> None:
    import websockets

    async def one(order_id: str) -> None:
        delay = 0.25
        while time.monotonic() < until:
            try:
                async with websockets.connect(f"ws://127.0.0.1:{port}/ws/orders/{order_id}/", open_timeout=30) as ws:
                    await ws.send(json.dumps({"type": "auth", "token": token}))
                    counts["watcher connects"] += 1
                    while time.monotonic() < until:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(ws.recv(), 5)
                            counts["frames"] += 1
            except (OSError, TimeoutError, websockets.WebSocketException):
                counts["watcher drops"] += 1
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    await asyncio.gather(*(one(order_ids[i % len(order_ids)]) for i in range(count)))


async def readers(port: int, order_ids: list[str], token: str, until: float, counts) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        while time.monotonic() < until:
            for order_id in order_ids:
                response = await client.get(f"/api/orders/{order_id}/", headers={"Authorization": f"Bearer {token}"})
                counts["reads" if response.status_code == 200 else f"read {response.status_code}"] += 1
            await asyncio.sleep(READ_INTERVAL)


async def sampler(root_pid: int, until: float, samples: list[tuple[float, dict]]) -> None:
    started = time.monotonic()
    while time.monotonic() < until:
        samples.append((time.monotonic() - started, topology_processes(root_pid)))
        await asyncio.sleep(SAMPLE_INTERVAL)
    samples.append((time.monotonic() - started, topology_processes(root_pid)))


async def run(topology: Topology, tokens, order_ids, customer_token, args, samples, counts) -> None:
    until = time.monotonic() + args.seconds
    await asyncio.gather(
        sampler(topology.honcho.pid, until, samples),
        riders(topology.port, tokens, until, counts),
        watchers(topology.port, order_ids, customer_token, args.watchers, until, counts),
        readers(topology.port, order_ids, customer_token, until, counts),
    )


def median_rss(samples, pid: int, start: float, end: float) -> float | None:
    values = [found[pid][1] for at, found in samples if start <= at <= end and pid in found]
    return statistics.median(values) if values else None


def report(samples, warmup: float, seconds: float, counts) -> bool:
    """Print the table; True when every process grew at most TARGET_GROWTH %."""
    # The processes of the first sample after the warm-up, oldest first.
    first = next(found for at, found in samples if at >= warmup)
    last_found = samples[-1][1]
    print(f"\nsoak: {seconds / 60:g} min, warm-up {warmup / 60:g} min; traffic {dict(sorted(counts.items()))}")
    print(f"{'process':<28} {'pid':>8} {'after warm-up MiB':>18} {'at end MiB':>11} {'growth':>8}")
    met = True
    for pid, (name, _rss) in sorted(first.items(), key=lambda item: (item[1][0], item[0])):
        start = median_rss(samples, pid, warmup, warmup + WINDOW)
        end = median_rss(samples, pid, seconds - WINDOW, seconds + SAMPLE_INTERVAL)
        if start is None or end is None or pid not in last_found:
            # A pool child or worker replaced by its parent (or a crash the supervisor restarted).
            print(f"{name:<28} {pid:>8} {'replaced during the run':>30}")
            continue
        growth = (end - start) * 100 / start
        met = met and growth <= TARGET_GROWTH
        print(f"{name:<28} {pid:>8} {start / 1024:>18.1f} {end / 1024:>11.1f} {growth:>7.1f}%")
    print(f"target: every process at most {TARGET_GROWTH:g} % growth after warm-up: {'met' if met else 'NOT met'}")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 1800)))
    parser.add_argument("--warmup", type=float, default=None, help="default: a sixth of the run, at most 300 s")
    parser.add_argument("--riders", type=int, default=10, help=f"riders posting a point every {RIDER_INTERVAL:g} s")
    parser.add_argument("--watchers", type=int, default=20, help="WebSocket watchers over the riders' orders")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else min(300.0, args.seconds / 6)
    root = BENCH.parent
    sys.path.insert(0, str(root))
    os.chdir(root)

    database_url, redis_url = require_services()
    admin_url, bench_url = bench_database(database_url, "bench_soak")
    # Jobs on, as in production; tokens outlive the run, so no socket is closed for an expired one.
    env = server_env(bench_url, redis_url, TRACKING_JOBS_ENABLED="true", JWT_ACCESS_MINUTES="240")
    recreate_database(admin_url, bench_url)
    topology = None
    try:
        os.environ.update({**env, "TRACKING_JOBS_ENABLED": "false"})  # set-up writes the past: no jobs for it
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xiaoxiang.settings")
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.db import connections
        from rest_framework_simplejwt.tokens import AccessToken

        from orders.models import Order

        tokens, _ = setup_data(args.riders)
        order_ids = list(Order.objects.order_by("pk").values_list("pk", flat=True))
        customer_token = str(AccessToken.for_user(get_user_model().objects.get(username="customer1")))
        connections.close_all()

        topology = Topology(root, env)
        topology.wait_ready()
        print(
            f"soak: {args.seconds:g} s on port {topology.port}: {args.riders} riders every {RIDER_INTERVAL:g} s, "
            f"{args.watchers} watchers, a detail read per order every {READ_INTERVAL:g} s; log {topology.log.name}"
        )
        samples: list[tuple[float, dict]] = []
        counts: Counter[str] = Counter()
        asyncio.run(run(topology, tokens, order_ids, customer_token, args, samples, counts))
        met = report(samples, warmup, args.seconds, counts)
    finally:
        if topology is not None:
            topology.close()
        recreate_database(admin_url, bench_url, drop_only=True)
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
