"""Watcher benchmark: many authenticated order sockets on one Daphne of the production topology.

Starts deploy/Procfile on free ports as `make run` does (nginx in front;
Daphne from its own Procfile line, so it can be restarted), then measures:

- connect: N watchers open /ws/orders/<id>/ through nginx and authenticate
  with a first-message JWT; connects per second and Daphne CPU per connect;
- idle: Daphne CPU while the N sockets sit open (heartbeats, catch-up
  checks, slot renewals), as % of one core per 1,000 watchers, and RSS per
  watcher;
- storm: Daphne is stopped with SIGTERM and started again; every client
  reconnects with a jittered backoff (as the pages do) and the time until
  all N are back on the order's current version is printed.

The floor, measured in the same run with the same clients: a bare
`websockets` server that accepts the same auth message and answers a
snapshot-sized frame. CPU and RSS from /proc. Needs PostgreSQL and Redis
(DATABASE_URL, REDIS_URL); creates and drops its own database.

    python bench/watchers.py [--watchers 2000] [--orders 40] [--idle 45]
"""

import argparse
import asyncio
import contextlib
import io
import json
import multiprocessing
import os
import random
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from support import (  # noqa: E402  (bench/ is on sys.path when run as a script)
    PASSWORD,
    Topology,
    bench_database,
    free_port,
    process_table,
    recreate_database,
    require_services,
    server_env,
)


def client_process(targets, commands, results) -> None:
    """Open `targets` (url, token, expected version) on command, hold them, reconnect them when they drop."""
    import websockets

    sockets: dict[int, object] = {}
    versions: dict[int, int] = {}
    back_at: dict[int, float] = {}
    storming = [False]

    async def open_one(index: int, url: str, token: str) -> None:
        delay = 0.0
        while True:
            if delay:
                await asyncio.sleep(delay)
            try:
                ws = await websockets.connect(url, max_queue=None, open_timeout=30, compression=None)
                await ws.send(json.dumps({"type": "auth", "token": token}))
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if frame.get("type") != "snapshot":
                    raise ConnectionError(frame)
                sockets[index] = ws
                versions[index] = frame["version"]
                if storming[0]:
                    back_at[index] = time.time()
                return
            except (OSError, TimeoutError, ConnectionError, websockets.WebSocketException):
                # The pages' backoff: jittered, growing, capped.
                delay = min(5.0, max(0.25, delay * 2)) * random.uniform(0.5, 1.0)

    async def hold(index: int, url: str, token: str) -> None:
        while True:
            ws = sockets.get(index)
            if ws is None:
                await open_one(index, url, token)
                continue
            with contextlib.suppress(websockets.WebSocketException):
                async for _ in ws:
                    pass
            sockets.pop(index, None)

    async def serve_commands() -> None:
        loop = asyncio.get_running_loop()
        holders: list[asyncio.Task] = []
        while True:
            command = await loop.run_in_executor(None, commands.get)
            if command == "connect":

                async def one(index: int, url: str, token: str, limit: asyncio.Semaphore) -> None:
                    async with limit:
                        await open_one(index, url, token)

                limit = asyncio.Semaphore(100)
                started = time.time()
                await asyncio.gather(*(one(i, url, token, limit) for i, (url, token, _) in enumerate(targets)))
                results.put(("connected", started, time.time(), len(sockets)))
                holders = [asyncio.create_task(hold(i, url, token)) for i, (url, token, _) in enumerate(targets)]
            elif command == "storm":
                storming[0] = True
                back_at.clear()
                results.put(("storm-armed",))
            elif command == "report":
                # Back after the storm, on the version the order has in the database.
                results.put(("report", [at for i, at in back_at.items() if versions.get(i) == targets[i][2]]))
            elif command == "stop":
                for task in holders:
                    task.cancel()
                for ws in list(sockets.values()):
                    with contextlib.suppress(Exception):
                        await ws.close()
                results.put(("stopped",))
                return

    asyncio.run(serve_commands())


class Clients:
    def __init__(self, targets, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.results = context.Queue()
        self.commands = [context.Queue() for _ in range(processes)]
        self.workers = [
            context.Process(target=client_process, args=(targets[i::processes], self.commands[i], self.results))
            for i in range(processes)
        ]
        for worker in self.workers:
            worker.start()

    def ask(self, command: str, expect: str, timeout: float = 300) -> list[tuple]:
        for queue in self.commands:
            queue.put(command)
        answers = []
        while len(answers) < len(self.workers):
            answer = self.results.get(timeout=timeout)
            if answer[0] == expect:
                answers.append(answer)
        return answers

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("stop", "stopped", timeout=30)
        for worker in self.workers:
            worker.join(10)
            if worker.is_alive():
                worker.terminate()


def setup_orders(orders: int, staff_users: int) -> tuple[list[str], dict[str, int], list[str]]:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import AccessToken

    from orders import services
    from orders.models import Order, Product

    call_command("migrate", verbosity=0)
    with contextlib.redirect_stdout(io.StringIO()):
        call_command("seed_demo", riders=2, customers=2, password=PASSWORD, verbosity=0)
    users = get_user_model().objects
    customer = users.get(username="customer1")
    sku = Product.objects.order_by("sku").first().sku
    order_ids = []
    for _ in range(orders):
        order = services.order_create(
            customer=customer,
            items=[{"sku": sku, "quantity": 1}],
            delivery_address="上海市徐汇区天钥桥路 1 号",
            delivery_lat=31.20,
            delivery_lon=121.45,
        )
        services.order_pay(order_id=order.id, customer=customer)
        order_ids.append(order.id)
    tokens = []
    for number in range(staff_users):
        user, _ = users.get_or_create(username=f"bench-staff-{number}", defaults={"is_staff": True})
        tokens.append(str(AccessToken.for_user(user)))
    versions = dict(Order.objects.filter(pk__in=order_ids).values_list("id", "version"))
    return order_ids, versions, tokens


def measure(clients: Clients, cpu_of, rss_of, idle: float) -> dict[str, float]:
    rss_before, cpu_before = rss_of(), cpu_of()
    answers = clients.ask("connect", "connected")
    cpu_after = cpu_of()
    started = min(answer[1] for answer in answers)
    finished = max(answer[2] for answer in answers)
    opened = sum(answer[3] for answer in answers)
    time.sleep(2)  # the last snapshots are written; nothing else is going on
    idle_before = cpu_of()
    time.sleep(idle)
    idle_cpu = cpu_of() - idle_before
    return {
        "opened": opened,
        "connects_per_s": opened / (finished - started),
        "cpu_ms_per_connect": 1000 * (cpu_after - cpu_before) / max(opened, 1),
        "idle_pct_per_1000": 100 * idle_cpu / idle * 1000 / max(opened, 1),
        "rss_kib_per_watcher": (rss_of() - rss_before) / max(opened, 1),
    }


def bare_server_process(port: int, ready) -> None:
    import websockets

    snapshot = json.dumps({"type": "snapshot", "version": 1, "order": {"padding": "x" * 1500}})

    async def handler(ws) -> None:
        await ws.recv()  # the auth message, accepted as is
        await ws.send(snapshot)
        await ws.wait_closed()

    async def serve() -> None:
        async with websockets.serve(handler, "127.0.0.1", port, max_queue=None, compression=None):
            ready.set()
            await asyncio.Future()

    asyncio.run(serve())


def floor_bare(args) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    port = free_port()
    ready = context.Event()
    server = context.Process(target=bare_server_process, args=(port, ready))
    server.start()

    def own() -> tuple[float, int]:
        _, cpu, rss_kib, _ = process_table()[server.pid]
        return cpu, rss_kib

    try:
        ready.wait(30)
        targets = [(f"ws://127.0.0.1:{port}/ws/orders/{i}/", "-", 1) for i in range(args.watchers)]
        clients = Clients(targets, args.processes)
        try:
            return measure(clients, lambda: own()[0], lambda: own()[1], min(args.idle, 10))
        finally:
            clients.close()
    finally:
        server.terminate()
        server.join(10)


def storm(topology: Topology, clients: Clients, watchers: int, timeout: float) -> dict[str, float]:
    """SIGTERM Daphne, start it again at once; seconds until every watcher is back on the current version."""
    clients.ask("storm", "storm-armed")
    started = time.time()
    topology.stop("ws", signal.SIGTERM)
    topology.start("ws")
    while True:
        time.sleep(0.5)
        times = sorted(at for answer in clients.ask("report", "report") for at in answer[1])
        if len(times) >= watchers or time.time() > started + timeout:
            return {
                "back": len(times),
                "seconds_to_all": times[-1] - started if len(times) >= watchers else float("inf"),
                "seconds_p50": times[len(times) // 2] - started if times else float("inf"),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", type=int, default=2000)
    parser.add_argument("--orders", type=int, default=40)
    parser.add_argument("--idle", type=float, default=45, help="seconds held open (covers two 20 s heartbeats)")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--storm-timeout", type=float, default=60)
    parser.add_argument("--deadline", type=int, default=420, help="hard stop, seconds")
    args = parser.parse_args()

    database_url, redis_url = require_services()
    admin_url, bench_url = bench_database(database_url, "bench_watchers")
    env = server_env(bench_url, redis_url, WS_MAX_CONNECTIONS_PER_USER="100000", WS_MAX_CONNECTIONS_PER_IP="100000")
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xiaoxiang.settings")
    recreate_database(admin_url, bench_url)

    def out_of_time(signum, frame) -> None:
        raise SystemExit("watchers: out of time, stopping")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(args.deadline)
    try:
        import django

        django.setup()
        order_ids, versions_by_id, tokens = setup_orders(args.orders, staff_users=max(1, args.watchers // 50))
        from django.db import connections

        connections.close_all()
        topology = Topology(ROOT, env, own=("ws",), skip=("worker", "beat"))
        try:
            topology.wait_ready()
            targets = [
                (
                    f"ws://127.0.0.1:{topology.port}/ws/orders/{order_ids[i % args.orders]}/",
                    tokens[i % len(tokens)],
                    versions_by_id[order_ids[i % args.orders]],
                )
                for i in range(args.watchers)
            ]
            clients = Clients(targets, args.processes)
            try:
                daphne = measure(
                    clients, lambda: topology.usage()["ws"]["cpu"], lambda: topology.usage()["ws"]["rss_kib"], args.idle
                )
                stormed = storm(topology, clients, args.watchers, args.storm_timeout)
            finally:
                clients.close()
        finally:
            topology.close()
        bare = floor_bare(args)
    finally:
        recreate_database(admin_url, bench_url, drop_only=True)

    print(f"\nwatchers: {args.watchers} order sockets over {args.orders} orders, JWT first-message auth, via nginx")
    print(f"{'':34}{'Daphne':>12}{'bare websockets':>17}{'ratio':>8}")
    rows = (
        ("connects/s", "connects_per_s", "{:.0f}"),
        ("CPU per connect (ms)", "cpu_ms_per_connect", "{:.2f}"),
        ("idle CPU, % core per 1,000", "idle_pct_per_1000", "{:.2f}"),
        ("RSS per watcher (KiB)", "rss_kib_per_watcher", "{:.1f}"),
    )
    for label, key, fmt in rows:
        value, floor = daphne[key], bare[key]
        ratio = value / floor if floor else float("nan")
        print(f"{label:34}{fmt.format(value):>12}{fmt.format(floor):>17}{ratio:8.2f}")
    print(
        f"\nreconnect storm (Daphne SIGTERM, restarted at once): {stormed['back']}/{args.watchers} back on the "
        f"current version; all in {stormed['seconds_to_all']:.1f}s (half in {stormed['seconds_p50']:.1f}s)"
    )


if __name__ == "__main__":
    main()
