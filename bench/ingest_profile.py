"""In-process profile of the GPS ingest request: CPU and SQL statements per POST, for py-spy to sample.

Runs POST /api/rider/locations/ through Django's test client (full middleware,
JWT auth, the view, the service, the after-commit publish) on PostgreSQL and
Redis, in one process, so `py-spy record` sees the whole request:

    .venv/bin/py-spy record -r 250 -f raw -o /tmp/single.txt -- \\
        .venv/bin/python bench/ingest_profile.py --batch 1 --seconds 20
    .venv/bin/python bench/ingest_profile.py --summary /tmp/single.txt

It creates and drops its own database (<name>_bench_profile).
"""

import argparse
import collections
import datetime as dt
import itertools
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import setup_data  # noqa: E402  (bench/ is on sys.path when run as a script)
from support import bench_database, recreate_database, require_services, server_env  # noqa: E402

# Where a request's time goes: the first of these frames (outermost first) names a sample's share.
PHASES = (
    ("publish after commit", ("events_publish", "points_publish", "rider_position_publish", "group_send_many")),
    ("jobs after commit", ("_order_jobs_enqueue",)),
    ("ingest service (SQL, locks)", ("location_points_ingest",)),
    ("parse + validate points", ("location_batch_parse",)),
    ("JSON body parse", ("Request.data", "Request._parse")),
    ("authentication", ("Request.user", "Request._authenticate")),
    ("permissions, throttles", ("APIView.check_permissions", "APIView.check_throttles")),
    ("response render", ("Response.rendered_content", "IngestResultSerializer")),
)


def summarize(path: str, top: int) -> None:
    """Phase shares, then self time per function, of the request samples in py-spy's raw (collapsed) output."""
    phases: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "Client.request" not in stack:
            continue  # set-up, not a request
        samples = int(count)
        total += samples
        names = [frame.split(" (")[0] for frame in stack.split(";")]
        phase = next((label for name in names for label, markers in PHASES if name in markers), "rest of Django/DRF")
        phases[phase] += samples
        leaf = stack.split(";")[-1]
        own[leaf.split(" (")[0] + " (" + leaf.split(" (")[-1].rsplit(":", 1)[0] + ")"] += samples
    print(f"{total} request samples\n\nphase")
    for phase, samples in phases.most_common():
        print(f"  {100 * samples / total:5.1f}%  {phase}")
    print("\nself time")
    for frame, samples in own.most_common(top):
        print(f"  {100 * samples / total:5.1f}%  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1, help="points per POST")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--summary", help="summarize a py-spy raw profile instead of running")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--root", type=Path, default=ROOT, help="the project checkout to profile")
    args = parser.parse_args()
    sys.path.insert(0, str(args.root.resolve()))
    os.chdir(args.root)  # Celery puts the working directory first on sys.path
    if args.summary:
        summarize(args.summary, args.top)
        return

    database_url, redis_url = require_services()
    admin_url, bench_url = bench_database(database_url, "bench_profile")
    os.environ.update(server_env(bench_url, redis_url, ALLOWED_HOSTS="testserver", TRACKING_JOBS_ENABLED="true"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xiaoxiang.settings")
    recreate_database(admin_url, bench_url)
    try:
        import django

        django.setup()
        from django.db import connection
        from django.test import Client

        tokens, newest = setup_data(1)
        client = Client(HTTP_AUTHORIZATION=f"Bearer {tokens[0]}")
        sequence = itertools.count()
        start_at = newest + dt.timedelta(seconds=1)

        def body() -> str:
            points = []
            for _ in range(args.batch):
                number = next(sequence)
                recorded_at = (
                    dt.datetime.now(dt.UTC) if args.batch == 1 else start_at + dt.timedelta(milliseconds=number)
                )
                points.append(
                    {
                        "client_id": f"p-{number}",
                        "lat": 31.188 + (number % 1000) * 0.00001,
                        "lon": 121.437 + (number % 1000) * 0.00001,
                        "recorded_at": recorded_at.isoformat(),
                        "accuracy": 8.0,
                        "speed": 4.5,
                    }
                )
            return json.dumps({"points": points})

        def post() -> None:
            response = client.post("/api/rider/locations/", body(), content_type="application/json")
            assert response.status_code == 200 and response.json()["accepted"] == args.batch, response.content

        for _ in range(5):
            post()
        statements: list[str] = []

        def record(execute, sql, params, many, context):
            statements.append(sql)
            return execute(sql, params, many, context)

        # request_started resets connection.queries, so statements are collected with a wrapper.
        with connection.execute_wrapper(record):
            post()
        requests, cpu_started, deadline = 0, time.process_time(), time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            post()
            requests += 1
        cpu = time.process_time() - cpu_started
        print(
            f"{args.batch}-point POST: {requests} requests, {1000 * cpu / requests:.2f} ms CPU per request, "
            f"{1000 * cpu / requests / args.batch:.3f} ms per point, {len(statements)} SQL statements:"
        )
        for sql in statements:
            print("   ", sql[:110])
        connection.close()
    finally:
        recreate_database(admin_url, bench_url, drop_only=True)


if __name__ == "__main__":
    main()
