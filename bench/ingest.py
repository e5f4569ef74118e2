"""GPS ingest benchmark on the production topology: riders POST /api/rider/locations/ through nginx.

Starts the processes of deploy/Procfile with honcho, as `make run` does with
DATABASE_URL/REDIS_URL set (nginx in front, gunicorn for HTTP, Daphne for
/ws/ and the long-poll, the Celery worker and beat; not the demo simulator),
on free ports and its own database (<name>_bench_ingest), then runs:

- live: 40 riders post single points back to back;
- paced: 200 riders post one point a second each (200 points/s), and every
  200 answer's point is checked in the database right after the answer;
- batch: 6 riders post 500-point offline batches back to back.

For each it prints accepted points per second, POST p50/p99 and the web
processes' CPU per accepted point (utime+stime from /proc of every gunicorn
and daphne process, summed over the tree honcho started), beside two
PostgreSQL floors measured in the same run on the same rows: one INSERT and
COMMIT per row, and COPY into a copy of the table with the same indexes and
constraints. The load generator is a minimal keep-alive HTTP/1.1 client, so
it takes little of the machine's CPU from the server.

    python bench/ingest.py [--seconds 15] [--root DIR]

`--root` runs another checkout of the project (same layout), e.g. the commit
before a change, so before and after are measured by the same benchmark.
"""

import argparse
import asyncio
import datetime as dt
import io
import itertools
import json
import os
import queue
import statistics
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from support import (  # noqa: E402  (bench/ is on sys.path when run as a script)
    PASSWORD,
    Topology,
    bench_database,
    percentile,
    recreate_database,
    require_services,
    server_env,
)

BATCH_SIZE = 500
URL = "/api/rider/locations/"


# --- data ------------------------------------------------------------------------------


def setup_data(riders: int) -> tuple[list[str], dt.datetime]:
    """Demo accounts and one delivering order per rider: (rider access tokens, when the last order was created)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import AccessToken

    from orders import services
    from orders.models import Order, Product

    call_command("migrate", verbosity=0)
    call_command("seed_demo", riders=riders, customers=1, password=PASSWORD, verbosity=0)
    users = get_user_model().objects
    operator = users.get(username="warehouse1")
    customer = users.get(username="customer1")
    sku = Product.objects.order_by("sku").first().sku
    tokens = []
    for number in range(1, riders + 1):
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
        tokens.append(str(AccessToken.for_user(users.get(username=f"rider{number}"))))
    newest = Order.objects.order_by("-create_time").values_list("create_time", flat=True).first()
    return tokens, newest


def points_body(label: str, rider: int, numbers: range, *, replay_from: dt.datetime | None) -> tuple[bytes, list[str]]:
    """A request body and its client ids: live points carry the current time, offline batches replay the past."""
    now = dt.datetime.now(dt.UTC)
    points = []
    for number in numbers:
        recorded_at = now if replay_from is None else replay_from + dt.timedelta(milliseconds=number)
        points.append(
            {
                "client_id": f"{label}-{rider}-{number}",
                "lat": 31.188 + (number % 1000) * 0.00001,
                "lon": 121.437 + (number % 1000) * 0.00001,
                "recorded_at": recorded_at.isoformat(),
                "accuracy": 8.0,
                "speed": 4.5,
            }
        )
    return json.dumps({"points": points}).encode(), [point["client_id"] for point in points]


# --- load ------------------------------------------------------------------------------


class HttpConnection:
    """One keep-alive HTTP/1.1 connection (reopened when the server closes it)."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.head = (
            f"POST {URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        header = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        status = int(header.split(" ", 2)[1])
        if "transfer-encoding: chunked" in header:
            content = b""
            while size := int((await self.reader.readline()).strip(), 16):
                content += await self.reader.readexactly(size + 2)
            await self.reader.readline()
        else:
            length = (
                int(header.split("content-length:", 1)[1].split("\r\n", 1)[0]) if "content-length:" in header else 0
            )
            content = await self.reader.readexactly(length)
        if "connection: close" in header:
            self.writer.close()
            self.writer = None
        return status, content

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class CommitChecker(threading.Thread):
    """Checks, right after each 200 answer, that the answered points are in the database."""

    def __init__(self, bench_url: str) -> None:
        super().__init__(daemon=True)
        self.bench_url = bench_url
        self.answered: queue.Queue[list[str] | None] = queue.Queue()
        self.checked = 0
        self.missing: list[str] = []

    def run(self) -> None:
        import psycopg2

        connection = psycopg2.connect(self.bench_url)
        connection.autocommit = True
        done = False
        while not done:
            client_ids = []
            item = self.answered.get()
            while True:
                if item is None:
                    done = True
                else:
                    client_ids += item
                try:
                    item = self.answered.get_nowait()
                except queue.Empty:
                    break
            if client_ids:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT client_id FROM order_tracking WHERE client_id = ANY(%s)", (client_ids,))
                    found = {row[0] for row in cursor.fetchall()}
                self.checked += len(client_ids)
                self.missing += [client_id for client_id in client_ids if client_id not in found]
        connection.close()


async def drive(
    port: int,
    tokens: list[str],
    *,
    seconds: float,
    batch: int,
    label: str,
    interval: float | None = None,
    replay_from: dt.datetime | None = None,
    checker: CommitChecker | None = None,
) -> dict[str, float]:
    """One task per rider: `batch`-point POSTs back to back, or one every `interval` seconds."""
    accepted = requests = 0
    latencies: list[float] = []
    errors: dict[str, int] = {}
    started = time.monotonic()
    deadline = started + seconds

    async def rider(index: int) -> None:
        nonlocal accepted, requests
        connection = HttpConnection(port, tokens[index])
        sequence = itertools.count()
        # Paced riders spread their start over the interval, as phones would.
        next_at = started + (interval * index / len(tokens) if interval else 0)
        try:
            while True:
                if interval:
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                    next_at += interval
                if time.monotonic() >= deadline:
                    return
                first = next(sequence) * batch
                body, client_ids = points_body(label, index, range(first, first + batch), replay_from=replay_from)
                sent = time.perf_counter()
                try:
                    status, content = await connection.post(body)
                except (OSError, asyncio.IncompleteReadError) as error:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                    connection.close()
                    connection = HttpConnection(port, tokens[index])
                    continue
                latencies.append(time.perf_counter() - sent)
                requests += 1
                if status == 200:
                    accepted += json.loads(content)["accepted"]
                    if checker is not None:
                        checker.answered.put(client_ids)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
        finally:
            connection.close()

    await asyncio.gather(*(rider(index) for index in range(len(tokens))))
    elapsed = time.monotonic() - started
    if errors:
        print(f"  {label}: failed requests {errors}")
    return {
        "points": accepted,
        "requests": requests,
        "seconds": elapsed,
        "points_per_s": accepted / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


# --- the topology ------------------------------------------------------------------------


class IngestTopology(Topology):
    """deploy/Procfile as `make run` starts it (support.Topology), plus the warm-up the phases need."""

    @property
    def processes(self) -> list[str]:
        return [name for name in self.commands if name != "simulator"]

    def settle(self, tokens: list[str]) -> int:
        """Warm every web process up (pre-fork workers import the app on boot), wait for them to go idle.

        Returns the points the warm-up stored."""
        warm = asyncio.run(drive(self.port, tokens, seconds=3, batch=1, label="warm"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            before = self.cpu()["web"]
            time.sleep(1)
            if self.cpu()["web"] - before < 0.05:
                break
        return warm["points"]

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: the web processes (gunicorn and Daphne), the Celery ones, nginx."""
        usage = self.usage()
        return {
            "web": usage["web"]["cpu"] + usage["ws"]["cpu"],
            "worker": usage["worker"]["cpu"],
            "nginx": usage["nginx"]["cpu"],
        }

    def stop(self) -> None:
        self.close()


def phase(topology: Topology, run) -> dict[str, float]:
    before = topology.cpu()
    result = asyncio.run(run)
    after = topology.cpu()
    points = max(result["points"], 1)
    for name in before:
        result[f"{name}_ms_per_point"] = (after[name] - before[name]) * 1000 / points
    return result


# --- floors ------------------------------------------------------------------------------


def floors(bench_url: str, insert_rows: int = 2000) -> dict[str, dict[str, float]]:
    """PostgreSQL alone on the stored location rows: COPY of all, and one INSERT + COMMIT per row."""
    import psycopg2
    import psycopg2.extras

    psycopg2.extensions.register_adapter(dict, psycopg2.extras.Json)  # the jsonb column
    connection = psycopg2.connect(bench_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE order_tracking_copy (LIKE order_tracking INCLUDING ALL)")
            rows = io.StringIO()
            cursor.copy_expert("COPY (SELECT * FROM order_tracking WHERE kind = 'location') TO STDOUT", rows)
            count = rows.getvalue().count("\n")
            connection.commit()
            timings = []
            for _ in range(3):
                cursor.execute("TRUNCATE order_tracking_copy")
                connection.commit()
                rows.seek(0)
                started = time.perf_counter()
                cursor.copy_expert("COPY order_tracking_copy FROM STDIN", rows)
                connection.commit()
                timings.append(time.perf_counter() - started)
            copy = {"rows": count, "points_per_s": count / statistics.median(timings)}

            cursor.execute("TRUNCATE order_tracking_copy")
            cursor.execute("SELECT * FROM order_tracking WHERE kind = 'location' LIMIT %s", (insert_rows,))
            sample = cursor.fetchall()
            connection.commit()
            placeholders = ", ".join(["%s"] * len(sample[0]))
            started = time.perf_counter()
            for row in sample:
                cursor.execute(f"INSERT INTO order_tracking_copy VALUES ({placeholders})", row)  # noqa: S608
                connection.commit()
            per_row = {"rows": len(sample), "points_per_s": len(sample) / (time.perf_counter() - started)}
    finally:
        connection.close()
    return {"copy": copy, "per_row": per_row}


def stored_locations(bench_url: str) -> int:
    import psycopg2

    connection = psycopg2.connect(bench_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM order_tracking WHERE kind = 'location'")
            return cursor.fetchone()[0]
    finally:
        connection.close()


# --- main ----------------------------------------------------------------------------------


def report(phases: dict[str, dict], floor: dict[str, dict]) -> None:
    copy = floor["copy"]["points_per_s"]
    print(
        f"\n{'ingest':34}{'points/s':>10}{'requests':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'web CPU':>9}{'worker':>8}{'x COPY':>8}"
    )
    print(f"{'':34}{'':>10}{'':>10}{'':>9}{'':>9}{'ms/point':>9}{'ms/pt':>8}{'':>8}")
    for name, result in phases.items():
        print(
            f"{name:34}{result['points_per_s']:10.0f}{result['requests']:10d}{result['p50_ms']:9.1f}"
            f"{result['p99_ms']:9.1f}{result['web_ms_per_point']:9.2f}{result['worker_ms_per_point']:8.2f}"
            f"{result['points_per_s'] / copy:8.3f}"
        )
    print(f"{'PostgreSQL INSERT+COMMIT per row':34}{floor['per_row']['points_per_s']:10.0f}{'':55}")
    print(f"{'PostgreSQL COPY (floor)':34}{copy:10.0f}{'':47}{1:8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--live-riders", type=int, default=40, help="riders posting single points back to back")
    parser.add_argument("--paced-riders", type=int, default=200, help="riders posting one point a second each")
    parser.add_argument("--batch-riders", type=int, default=6, help="riders posting 500-point batches")
    parser.add_argument("--seconds", type=float, default=15, help="length of each phase")
    parser.add_argument("--root", type=Path, default=BENCH.parent, help="the project checkout to run")
    args = parser.parse_args()
    root = args.root.resolve()
    sys.path.insert(0, str(root))
    os.chdir(root)

    database_url, redis_url = require_services()
    admin_url, bench_url = bench_database(database_url, "bench_ingest")
    # The Procfile's worker runs the ETA and alert jobs, as in production.
    env = server_env(bench_url, redis_url, TRACKING_JOBS_ENABLED="true")
    started = time.monotonic()
    recreate_database(admin_url, bench_url)
    topology = None
    try:
        os.environ.update({**env, "TRACKING_JOBS_ENABLED": "false"})  # set-up writes the past: no jobs for it
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xiaoxiang.settings")
        import django

        django.setup()
        from django.db import connections

        riders = max(args.live_riders, args.paced_riders, args.batch_riders)
        print(f"ingest: {riders} riders with a delivering order each; phases of {args.seconds:g}s; root {root}")
        tokens, newest_order = setup_data(riders)
        connections.close_all()

        topology = IngestTopology(root, env)
        topology.wait_ready()
        warm_points = topology.settle(tokens[: args.live_riders])
        print(f"  topology: {', '.join(topology.processes)} (honcho, deploy/Procfile) on port {topology.port}")
        # Offline batches replay time after the newest order was created (older points would be rejected).
        replay_from = newest_order + dt.timedelta(seconds=1)
        phases = {}
        print(f"  live: {args.live_riders} riders, single points back to back ...")
        phases[f"live, {args.live_riders} riders back to back"] = phase(
            topology, drive(topology.port, tokens[: args.live_riders], seconds=args.seconds, batch=1, label="live")
        )
        print(f"  paced: {args.paced_riders} riders at 1 point/s each ...")
        checker = CommitChecker(bench_url)
        checker.start()
        phases[f"paced, {args.paced_riders} riders at 1 Hz"] = phase(
            topology,
            drive(
                topology.port,
                tokens[: args.paced_riders],
                seconds=args.seconds,
                batch=1,
                label="paced",
                interval=1.0,
                checker=checker,
            ),
        )
        checker.answered.put(None)
        checker.join()
        print(f"  batch: {args.batch_riders} riders, {BATCH_SIZE}-point batches back to back ...")
        phases[f"batch, {args.batch_riders} riders x {BATCH_SIZE} points"] = phase(
            topology,
            drive(
                topology.port,
                tokens[: args.batch_riders],
                seconds=args.seconds,
                batch=BATCH_SIZE,
                label="batch",
                replay_from=replay_from,
            ),
        )
        topology.stop()
        topology = None
        stored = stored_locations(bench_url)
        print("  floors: PostgreSQL INSERT+COMMIT per row and COPY of the same rows ...")
        floor = floors(bench_url)
    finally:
        if topology is not None:
            topology.stop()
        recreate_database(admin_url, bench_url, drop_only=True)

    report(phases, floor)
    accepted = sum(result["points"] for result in phases.values()) + warm_points
    print(
        f"\n  stored {stored} location rows, accepted {accepted}; paced: {checker.checked} answered points checked "
        f"right after their 200, {len(checker.missing)} not in the database; total {time.monotonic() - started:.0f}s"
    )
    if stored != accepted or checker.missing:
        raise SystemExit("stored rows differ from the accepted points, or an answered point was not committed")


if __name__ == "__main__":
    main()
