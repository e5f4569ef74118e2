"""Fan-out benchmark: riders POST GPS points, N WebSocket watchers on one Daphne receive them.

Runs against the production topology started as `make run` starts it
(deploy/Procfile: nginx in front of gunicorn and Daphne; POSTs go to
gunicorn, sockets to Daphne, both through nginx). Staff watchers are spread
over one delivering order per rider. Prints, for a paced phase (each rider
one point per `--interval` seconds) and a saturated one (back to back): the
latency from the rider's POST to the frame arriving, the share of frames
delivered live, Daphne CPU per delivered frame (from /proc), whether every
watcher ended on the REST version within 5 s of the last POST, and frames
per second, beside two floors measured in the same run on the same machine:

- Redis PUBLISH round trip (publisher to a subscribed client), the transport
  the channel layer itself rides on;
- a bare `websockets` server broadcasting the same frames to the same number
  of clients (no Django, no database, no channel layer).

Needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL). It creates and drops
its own database (<name>_bench) and stops by itself in a few minutes.

    python bench/fanout.py [--subscribers 2000] [--riders 40] [--seconds 20] [--interval 1]
"""

import argparse
import asyncio
import contextlib
import datetime
import io
import json
import multiprocessing
import os
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
    percentile,
    process_table,
    recreate_database,
    require_services,
    server_env,
)

POST_SECONDS: list[float] = []  # each rider POST's round trip, for the report


def subscriber_process(targets: list[tuple[str, str, int]], ready, stop, results) -> None:
    """Open every target socket, authenticate, then record (order index, version, arrival, socket) until `stop`."""
    import websockets

    failures: list[str] = []
    # A ramp, not a storm: a connection storm is not what this measures.
    connecting = asyncio.Semaphore(25)

    async def one(url: str, token: str, order_index: int, records: list, opened: asyncio.Queue, socket: int) -> None:
        for attempt in range(5):
            try:
                async with connecting:
                    ws = await websockets.connect(url, max_queue=None, open_timeout=60)
                    await ws.send(json.dumps({"type": "auth", "token": token}))
                    snapshot = json.loads(await asyncio.wait_for(ws.recv(), 30))
                break
            except (OSError, TimeoutError, websockets.WebSocketException) as error:
                # Count it and come back, as a real client would.
                failures.append(repr(error)[:120])
                await asyncio.sleep(0.5 * (attempt + 1))
        else:
            return
        await opened.put(snapshot["version"])
        async with ws:
            async for text in ws:
                arrived = time.time()
                frame = json.loads(text)
                if frame["type"] == "event":
                    records.append((order_index, frame["version"], arrived, socket))

    async def main() -> None:
        records: list = []
        opened: asyncio.Queue = asyncio.Queue()
        tasks = []
        for socket, (url, token, order_index) in enumerate(targets):
            tasks.append(asyncio.create_task(one(url, token, order_index, records, opened, socket)))
        for _ in targets:
            await asyncio.wait_for(opened.get(), 90)
        if failures:
            print(f"  subscriber process: {len(failures)} connection attempts retried, e.g. {failures[0]}", flush=True)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        results.put(records)

    asyncio.run(main())


class Subscribers:
    def __init__(self, targets: list[tuple[str, str, int]], processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop = context.Event()
        self.results = context.Queue()
        self.workers = []
        self.ready = []
        for index in range(processes):
            ready = context.Event()
            worker = context.Process(
                target=subscriber_process, args=(targets[index::processes], ready, self.stop, self.results)
            )
            worker.start()
            self.workers.append(worker)
            self.ready.append(ready)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        for ready in self.ready:
            if not ready.wait(max(0.1, deadline - time.monotonic())):
                raise SystemExit("subscribers did not all connect in time")

    def terminate(self) -> None:
        self.stop.set()
        for worker in self.workers:
            if worker.is_alive():
                worker.join(5)
            if worker.is_alive():
                worker.terminate()

    def collect(self) -> list[tuple[int, int, float, tuple[int, int]]]:
        """Every frame seen: (order index, version, arrival, (process, socket))."""
        self.stop.set()
        records: list = []
        for process in range(len(self.workers)):
            records.extend((o, v, at, (process, socket)) for o, v, at, socket in self.results.get(timeout=60))
        for worker in self.workers:
            worker.join(10)
        return records


def summarize(records, sent: dict[tuple[int, int], float], versions: set[int]) -> dict[str, float]:
    latencies = [arrived - sent[(o, v)] for o, v, arrived, *_ in records if v in versions and (o, v) in sent]
    arrivals = [arrived for o, v, arrived, *_ in records if v in versions]
    first_sent = min(t for (o, v), t in sent.items() if v in versions)
    elapsed = max(arrivals) - first_sent if arrivals else float("inf")
    return {
        "frames": len(arrivals),
        "p50_ms": 1000 * percentile(latencies, 0.50) if latencies else float("nan"),
        "p99_ms": 1000 * percentile(latencies, 0.99) if latencies else float("nan"),
        "frames_per_s": len(arrivals) / elapsed,
    }


# --- Daphne + Redis layer -----------------------------------------------------------------


def setup_data(riders: int, watchers: int) -> tuple[list[str], dict[str, int], list[str], list[str]]:
    """Demo accounts and one delivering order per rider: (order ids, their versions, rider and staff tokens)."""
    customers = min(riders, 10)
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import AccessToken

    from orders import services
    from orders.models import Order, Product

    call_command("migrate", verbosity=0)
    call_command("seed_demo", riders=riders, customers=customers, password=PASSWORD, verbosity=0)
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    operator = users.get(username="warehouse1")
    sku = Product.objects.order_by("sku").first().sku
    order_ids, rider_tokens = [], []
    for number in range(1, riders + 1):
        customer = users.get(username=f"customer{(number - 1) % customers + 1}")
        order = services.order_create(
            customer=customer,
            items=[{"sku": sku, "quantity": 1}],
            delivery_address="上海市徐汇区天钥桥路 1 号",
            delivery_lat=31.20,
            delivery_lon=121.45,
        )
        services.order_pay(order_id=order.id, customer=customer)
        for stage in ("picking", "picked", "packed"):
            services.order_stage_report(order_id=order.id, operator=operator, stage=stage)
        services.order_dispatch(order_id=order.id, operator=operator, rider_username=f"rider{number}")
        order_ids.append(order.id)
        rider_tokens.append(str(AccessToken.for_user(users.get(username=f"rider{number}"))))
    staff_tokens = []
    for number in range(max(1, watchers // 50)):
        user, _ = users.get_or_create(username=f"bench-staff-{number}", defaults={"is_staff": True})
        staff_tokens.append(str(AccessToken.for_user(user)))
    versions = dict(Order.objects.filter(pk__in=order_ids).values_list("id", "version"))
    return order_ids, versions, rider_tokens, staff_tokens


async def post_points(
    base_url: str,
    tokens: list[str],
    versions: list[int],
    *,
    seconds: float,
    interval: float,
    sent,
    label: str = "bench",
):
    """One task per rider: POST a point, wait for the answer, then (paced) sleep; versions follow the posts."""
    import httpx

    async def rider(index: int, client: httpx.AsyncClient) -> None:
        if interval:
            # Riders report on their own clocks, not in lockstep.
            await asyncio.sleep(interval * index / len(tokens))
        deadline = time.monotonic() + seconds
        sequence = 0
        while time.monotonic() < deadline:
            sequence += 1
            point = {
                "client_id": f"{label}-{index}-{versions[index]}-{sequence}",
                "lat": 31.19 + sequence * 1e-5,
                "lon": 121.44,
                "recorded_at": datetime.datetime.now(datetime.UTC).isoformat(),
            }
            versions[index] += 1
            sent[(index, versions[index])] = time.time()
            response = await client.post(
                "/api/rider/locations/", json={"points": [point]}, headers={"Authorization": f"Bearer {tokens[index]}"}
            )
            if label == "bench":
                POST_SECONDS.append(time.time() - sent[(index, versions[index])])
            if response.status_code != 200 or response.json()["accepted"] != 1:
                raise SystemExit(f"rider POST failed: {response.status_code} {response.text[:200]}")
            if interval:
                await asyncio.sleep(interval)

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        await asyncio.gather(*(rider(index, client) for index in range(len(tokens))))


def bench_topology(args, env: dict[str, str]) -> dict[str, dict[str, float]]:
    with contextlib.redirect_stdout(io.StringIO()):  # seed_demo prints its accounts
        order_ids, versions_by_id, rider_tokens, staff_tokens = setup_data(args.riders, args.subscribers)
    from django.db import connections

    connections.close_all()
    topology = Topology(ROOT, env, skip=("worker", "beat"))
    with contextlib.ExitStack() as stack:
        stack.callback(topology.close)
        topology.wait_ready()
        base_url = f"http://127.0.0.1:{topology.port}"
        # Warm up: every gunicorn worker imports the app on its first request.
        asyncio.run(
            post_points(
                base_url,
                rider_tokens,
                [versions_by_id[o] for o in order_ids],
                seconds=2,
                interval=0,
                sent={},
                label="warm",
            )
        )
        from orders.models import Order

        versions_by_id = dict(Order.objects.filter(pk__in=order_ids).values_list("id", "version"))
        connections.close_all()
        targets = [
            (
                f"ws://127.0.0.1:{topology.port}/ws/orders/{order_ids[i % args.riders]}/",
                staff_tokens[i % len(staff_tokens)],
                i % args.riders,
            )
            for i in range(args.subscribers)
        ]
        started = time.monotonic()
        subscribers = Subscribers(targets, args.processes)
        stack.callback(subscribers.terminate)
        subscribers.wait_ready()
        print(f"  {args.subscribers} watchers authenticated on one Daphne in {time.monotonic() - started:.1f}s")
        versions = [versions_by_id[order_id] for order_id in order_ids]
        sent: dict[tuple[int, int], float] = {}
        base = list(versions)
        cpu_before = topology.usage()["ws"]["cpu"]
        asyncio.run(
            post_points(base_url, rider_tokens, versions, seconds=args.seconds, interval=args.interval, sent=sent)
        )
        last_paced_post = max(sent.values())
        time.sleep(5)  # every watcher should be on the REST version by now
        paced_cpu = topology.usage()["ws"]["cpu"] - cpu_before
        paced = {v for index in range(args.riders) for v in range(base[index] + 1, versions[index] + 1)}
        paced_final = list(versions)
        paced_posts = list(POST_SECONDS)
        middle = list(versions)
        cpu_before = topology.usage()["ws"]["cpu"]
        asyncio.run(post_points(base_url, rider_tokens, versions, seconds=args.seconds, interval=0, sent=sent))
        time.sleep(3)  # let the last frames land
        saturated_cpu = topology.usage()["ws"]["cpu"] - cpu_before
        saturated = {v for index in range(args.riders) for v in range(middle[index] + 1, versions[index] + 1)}
        records = subscribers.collect()
    paced_sent = {key: value for key, value in sent.items() if key[1] in paced}
    saturated_sent = {key: value for key, value in sent.items() if key[1] in saturated}
    per_order = args.subscribers // args.riders
    result = {
        "paced": summarize([r for r in records if (r[0], r[1]) in paced_sent], paced_sent, paced),
        "saturated": summarize([r for r in records if (r[0], r[1]) in saturated_sent], saturated_sent, saturated),
    }
    # Every POST of a rider is one frame for each watcher of its order.
    paced_expected = len(paced_sent) * per_order
    saturated_expected = len(saturated_sent) * per_order
    result["paced"]["expected"], result["saturated"]["expected"] = paced_expected, saturated_expected
    for phase, sent_in in (("paced", paced_sent), ("saturated", saturated_sent)):
        seen = [(socket, o, v) for o, v, _, socket in records if (o, v) in sent_in]
        result[phase]["duplicates"] = len(seen) - len(set(seen))
    result["paced"]["cpu_ms_per_frame"] = 1000 * paced_cpu / max(result["paced"]["frames"], 1)
    result["saturated"]["cpu_ms_per_frame"] = 1000 * saturated_cpu / max(result["saturated"]["frames"], 1)
    # Converged: the watcher saw its order's last paced version within 5 s of the last paced POST.
    reached: dict[tuple[int, int], float] = {}
    for order_index, version, arrived, socket in records:
        if version == paced_final[order_index]:
            reached[socket] = arrived
    result["paced"]["converged"] = sum(1 for at in reached.values() if at <= last_paced_post + 5)
    result["paced"]["post_p50_ms"] = 1000 * percentile(paced_posts, 0.5)
    result["paced"]["post_p99_ms"] = 1000 * percentile(paced_posts, 0.99)
    result["saturated"]["post_p50_ms"] = 1000 * percentile(POST_SECONDS[len(paced_posts) :], 0.5)
    result["saturated"]["posts"] = sum(versions[i] - middle[i] for i in range(args.riders))
    return result


# --- floors ------------------------------------------------------------------------------------


def floor_redis(redis_url: str, samples: int = 1000) -> dict[str, float]:
    import redis.asyncio as aioredis

    async def main() -> list[float]:
        client = aioredis.Redis.from_url(redis_url)
        pubsub = client.pubsub()
        await pubsub.subscribe("xiaoxiang-bench-floor")
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        latencies = []
        payload = json.dumps({"type": "event", "padding": "x" * 300})
        for _ in range(samples):
            started = time.perf_counter()
            await client.publish("xiaoxiang-bench-floor", payload)
            while (await pubsub.get_message(timeout=1)) is None:
                pass
            latencies.append(time.perf_counter() - started)
        await pubsub.aclose()
        await client.aclose()
        return latencies

    latencies = asyncio.run(main())
    return {"p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99)}


def bare_server_process(port: int, riders: int, seconds: float, interval: float, ready, go, sent_queue) -> None:
    """A bare websockets server: clients join /ws/orders/<index>/; 'riders' broadcast frames shaped like ours."""
    import websockets

    groups: dict[int, set] = {index: set() for index in range(riders)}

    async def handler(ws) -> None:
        index = int(ws.request.path.strip("/").split("/")[-1])
        await ws.recv()  # the auth message, accepted as is
        await ws.send(json.dumps({"type": "snapshot", "version": 0, "order": {}}))
        groups[index].add(ws)
        try:
            await ws.wait_closed()
        finally:
            groups[index].discard(ws)

    def frame(version: int) -> str:
        return json.dumps(
            {
                "type": "event",
                "version": version,
                "event": {
                    "id": "0" * 32,
                    "kind": "location",
                    "status": 3,
                    "stage": None,
                    "lat": 31.19,
                    "lon": 121.44,
                    "recorded_at": "2026-01-01T00:00:00+00:00",
                    "version": version,
                    "operator_type": 1,
                    "data": {},
                },
                "changes": {
                    "rider_position": {"lat": 31.19, "lon": 121.44, "recorded_at": "2026-01-01T00:00:00+00:00"},
                    "version": version,
                    "update_time": "2026-01-01T00:00:00+00:00",
                },
            }
        )

    async def rider(index: int, start_version: int, paced: bool, sent: dict) -> int:
        version = start_version
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            version += 1
            text = frame(version)
            sent[(index, version)] = time.time()
            # Awaiting each send gives the same back-pressure a real fan-out has.
            await asyncio.gather(*(ws.send(text) for ws in list(groups[index])), return_exceptions=True)
            await asyncio.sleep(interval if paced else 0)
        return version

    async def main() -> None:
        async with websockets.serve(handler, "127.0.0.1", port, max_queue=None):
            ready.set()
            while not go.is_set():
                await asyncio.sleep(0.05)
            sent: dict = {}
            middle = await asyncio.gather(*(rider(index, 0, True, sent) for index in range(riders)))
            await asyncio.gather(*(rider(index, middle[index], False, sent) for index in range(riders)))
            sent_queue.put((sent, list(middle)))
            await asyncio.sleep(3)

    asyncio.run(main())


def floor_bare_websockets(args) -> dict[str, dict[str, float]]:
    context = multiprocessing.get_context("spawn")
    port = free_port()
    ready, go, sent_queue = context.Event(), context.Event(), context.Queue()
    server = context.Process(
        target=bare_server_process, args=(port, args.riders, args.seconds, args.interval, ready, go, sent_queue)
    )
    server.start()
    try:
        ready.wait(30)
        targets = [
            (f"ws://127.0.0.1:{port}/ws/orders/{i % args.riders}/", "-", i % args.riders)
            for i in range(args.subscribers)
        ]
        subscribers = Subscribers(targets, args.processes)
        try:
            subscribers.wait_ready()
        except BaseException:
            subscribers.terminate()
            raise
        cpu_before = process_table()[server.pid][1]
        go.set()
        sent, middle = sent_queue.get(timeout=args.seconds * 3 + 60)
        cpu = process_table()[server.pid][1] - cpu_before
        time.sleep(1)
        records = subscribers.collect()
    finally:
        server.join(10)
        if server.is_alive():
            server.terminate()
    paced = {key: t for key, t in sent.items() if key[1] <= middle[key[0]]}
    saturated = {key: t for key, t in sent.items() if key[1] > middle[key[0]]}
    result = {
        "paced": summarize([r for r in records if (r[0], r[1]) in paced], paced, {v for _, v in paced}),
        "saturated": summarize([r for r in records if (r[0], r[1]) in saturated], saturated, {v for _, v in saturated}),
    }
    frames = result["paced"]["frames"] + result["saturated"]["frames"]
    result["cpu_ms_per_frame"] = 1000 * cpu / max(frames, 1)
    return result


# --- main ------------------------------------------------------------------------------------------


def _out_of_time(signum, frame) -> None:
    raise SystemExit("fanout: out of time, stopping")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--riders", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase (paced, saturated)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between a rider's points when paced")
    parser.add_argument("--processes", type=int, default=2, help="subscriber client processes")
    parser.add_argument("--deadline", type=int, default=420, help="hard stop, seconds")
    args = parser.parse_args()

    database_url, redis_url = require_services()
    admin_url, bench_url = bench_database(database_url, "bench")
    env = server_env(bench_url, redis_url, WS_MAX_CONNECTIONS_PER_USER="100000", WS_MAX_CONNECTIONS_PER_IP="100000")
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xiaoxiang.settings")
    recreate_database(admin_url, bench_url)
    started = time.monotonic()
    # Stops by itself: a wedged run is cut off (and cleaned up) rather than left hanging.
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(args.deadline)
    try:
        import django

        django.setup()
        print(f"fanout: {args.subscribers} subscribers, {args.riders} riders, phases of {args.seconds:g}s")
        daphne = bench_topology(args, env)
        from django.db import connections

        connections.close_all()
        print("  floors: Redis PUBLISH round trip, bare websockets broadcast ...")
        redis_floor = floor_redis(redis_url)
        bare = floor_bare_websockets(args)
    finally:
        recreate_database(admin_url, bench_url, drop_only=True)

    paced, saturated = daphne["paced"], daphne["saturated"]
    print()
    print(f"{'':34}{'Daphne+Redis':>14}{'Redis PUBLISH':>15}{'bare websockets':>17}{'x Redis':>9}{'x bare':>8}")
    for key, label in (("p50_ms", "POST→frame p50 (ms, paced)"), ("p99_ms", "POST→frame p99 (ms, paced)")):
        print(
            f"{label:34}{paced[key]:14.1f}{redis_floor[key]:15.2f}{bare['paced'][key]:17.2f}"
            f"{paced[key] / redis_floor[key]:9.1f}{paced[key] / bare['paced'][key]:8.1f}"
        )
    for key, label in (("p50_ms", "POST→frame p50 (ms, saturated)"), ("p99_ms", "POST→frame p99 (ms, saturated)")):
        ratio = saturated[key] / bare["saturated"][key]
        print(f"{label:34}{saturated[key]:14.1f}{'':15}{bare['saturated'][key]:17.2f}{'':9}{ratio:8.1f}")
    rate, bare_rate = saturated["frames_per_s"], bare["saturated"]["frames_per_s"]
    print(f"{'frames/s delivered (saturated)':34}{rate:14.0f}{'':15}{bare_rate:17.0f}{'':9}{rate / bare_rate:8.2f}")
    floor_cpu = bare["cpu_ms_per_frame"]
    for phase, label in ((paced, "CPU per frame (ms, paced)"), (saturated, "CPU per frame (ms, saturated)")):
        cost = phase["cpu_ms_per_frame"]
        print(f"{label:34}{cost:14.3f}{'':15}{floor_cpu:17.3f}{'':9}{cost / floor_cpu:8.1f}")
    print(
        f"\n  paced: {paced['frames']}/{paced['expected']} frames delivered live "
        f"({100 * paced['frames'] / max(paced['expected'], 1):.1f} %); {paced['converged']}/{args.subscribers} "
        f"watchers on the REST version within 5 s of the last POST; {paced['duplicates']} frames seen twice by "
        f"one watcher; POST p50/p99 {paced['post_p50_ms']:.0f}/"
        f"{paced['post_p99_ms']:.0f} ms.\n  saturated: {saturated['posts']} POSTs, {saturated['frames']}/"
        f"{saturated['expected']} frames ({100 * saturated['frames'] / max(saturated['expected'], 1):.1f} %); "
        f"POST p50 {saturated['post_p50_ms']:.0f} ms. Total {time.monotonic() - started:.0f}s."
    )


if __name__ == "__main__":
    main()
