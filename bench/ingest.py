"""GPS ingest benchmark: many riders POST /api/rider/locations/ to one Daphne on PostgreSQL.

Two phases, each a fixed number of seconds:

- live: every rider posts single points back to back (the app's ~15 s report,
  with many riders);
- batch: fewer riders upload 500-point offline batches back to back.

Prints points stored per second for both, beside the floor measured on the
same machine in the same run: PostgreSQL `COPY ... FROM STDIN` of the very
rows the server stored, into a copy of the table with the same indexes and
constraints. The ratio says how far the HTTP path (auth, validation, locking,
versioning, bulk insert, publish) is from the database's own bulk-load speed.

Needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL). It creates and drops its
own database (<name>_bench_ingest) and stops by itself in about a minute.

    python bench/ingest.py [--riders 40] [--batch-riders 6] [--seconds 12]
"""

import argparse
import asyncio
import datetime as dt
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from support import (  # noqa: E402  (bench/ is on sys.path when run as a script)
    PASSWORD,
    bench_database,
    free_port,
    percentile,
    recreate_database,
    require_services,
    server_env,
    wait_for_port,
)

BATCH_SIZE = 500


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


# --- load --------------------------------------------------------------------------------


async def drive(
    base_url: str, tokens: list[str], *, seconds: float, batch: int, start_at: dt.datetime, label: str
) -> dict[str, float]:
    """One task per rider posting `batch`-point bodies back to back for `seconds`."""
    import httpx

    accepted = 0
    requests = 0
    latencies: list[float] = []
    errors: dict[int, int] = {}
    deadline = time.monotonic() + seconds

    async def rider(index: int, client: httpx.AsyncClient) -> None:
        nonlocal accepted, requests
        headers = {"Authorization": f"Bearer {tokens[index]}", "Content-Type": "application/json"}
        sequence = itertools.count()
        while time.monotonic() < deadline:
            now = dt.datetime.now(dt.UTC)
            points = []
            for _ in range(batch):
                number = next(sequence)
                # Live points carry the current time; offline batches replay the past, in order.
                recorded_at = now if batch == 1 else start_at + dt.timedelta(milliseconds=number)
                points.append(
                    {
                        "client_id": f"{label}-{index}-{number}",
                        "lat": 31.188 + (number % 1000) * 0.00001,
                        "lon": 121.437 + (number % 1000) * 0.00001,
                        "recorded_at": recorded_at.isoformat(),
                        "accuracy": 8.0,
                        "speed": 4.5,
                    }
                )
            body = json.dumps({"points": points})
            sent = time.perf_counter()
            response = await client.post("/api/rider/locations/", content=body, headers=headers)
            latencies.append(time.perf_counter() - sent)
            requests += 1
            if response.status_code == 200:
                accepted += response.json()["accepted"]
            else:
                errors[response.status_code] = errors.get(response.status_code, 0) + 1

    limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=len(tokens))
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(rider(index, client) for index in range(len(tokens))))
        elapsed = time.perf_counter() - started
    if errors:
        print(f"  {label}: non-200 answers {errors}")
    return {
        "points": accepted,
        "requests": requests,
        "seconds": elapsed,
        "points_per_s": accepted / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
    }


def run_daphne(env: dict[str, str], args: argparse.Namespace, tokens: list[str], start_at: dt.datetime) -> dict:
    port = free_port()
    log = tempfile.NamedTemporaryFile("w", prefix="ingest-daphne-", suffix=".log", delete=False)  # noqa: SIM115
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "xiaoxiang.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, daphne)
        base_url = f"http://127.0.0.1:{port}"
        print(f"  live: {len(tokens)} riders posting single points for {args.seconds:g}s ...")
        live = asyncio.run(drive(base_url, tokens, seconds=args.seconds, batch=1, start_at=start_at, label="live"))
        batch_tokens = tokens[: args.batch_riders]
        print(f"  batch: {len(batch_tokens)} riders posting {BATCH_SIZE}-point batches for {args.seconds:g}s ...")
        batch = asyncio.run(
            drive(base_url, batch_tokens, seconds=args.seconds, batch=BATCH_SIZE, start_at=start_at, label="batch")
        )
    finally:
        daphne.terminate()
        try:
            daphne.wait(10)
        except subprocess.TimeoutExpired:
            daphne.kill()
        log.close()
    return {"live": live, "batch": batch, "log": log.name}


# --- floor -------------------------------------------------------------------------------


def copy_floor(bench_url: str) -> dict[str, float]:
    """COPY the stored location rows into an identical table (same indexes and constraints), timed."""
    import psycopg2

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
    finally:
        connection.close()
    seconds = statistics.median(timings)
    return {"rows": count, "seconds": seconds, "rows_per_s": count / seconds}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--riders", type=int, default=40, help="riders posting live single points")
    parser.add_argument("--batch-riders", type=int, default=6, help="riders posting 500-point batches")
    parser.add_argument("--seconds", type=float, default=12, help="length of each phase")
    args = parser.parse_args()

    database_url, redis_url = require_services()
    admin_url, bench_url = bench_database(database_url, "bench_ingest")
    env = server_env(bench_url, redis_url)
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xiaoxiang.settings")
    started = time.monotonic()
    recreate_database(admin_url, bench_url)
    try:
        import django

        django.setup()
        from django.db import connections

        print(f"ingest: {args.riders} live riders, {args.batch_riders} batch riders, phases of {args.seconds:g}s")
        tokens, newest_order = setup_data(args.riders)
        connections.close_all()
        # Offline batches replay time after the newest order was created (older points would be rejected).
        start_at = newest_order + dt.timedelta(seconds=1)
        result = run_daphne(env, args, tokens, start_at)
        stored = stored_locations(bench_url)
        print("  floor: PostgreSQL COPY of the same rows ...")
        floor = copy_floor(bench_url)
    finally:
        recreate_database(admin_url, bench_url, drop_only=True)

    live, batch = result["live"], result["batch"]
    expected = live["points"] + batch["points"]
    print()
    print(f"{'':30}{'points/s':>10}{'requests':>10}{'p50 ms':>9}{'p95 ms':>9}{'x COPY':>9}")
    for name, phase in (("live, 1 point per POST", live), (f"batch, {BATCH_SIZE} points per POST", batch)):
        print(
            f"{name:30}{phase['points_per_s']:10.0f}{phase['requests']:10d}{phase['p50_ms']:9.1f}"
            f"{phase['p95_ms']:9.1f}{phase['points_per_s'] / floor['rows_per_s']:9.3f}"
        )
    print(f"{'PostgreSQL COPY (floor)':30}{floor['rows_per_s']:10.0f}{'':10}{'':9}{'':9}{1:9.3f}")
    print(
        f"\n  stored {stored} location rows (accepted {expected}); COPY of {floor['rows']} rows took "
        f"{floor['seconds'] * 1000:.0f} ms; total {time.monotonic() - started:.0f}s. Server log: {result['log']}"
    )
    if stored != expected:
        raise SystemExit("stored rows differ from the accepted count")


if __name__ == "__main__":
    main()
