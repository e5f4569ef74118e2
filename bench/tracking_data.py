"""Tracking data at scale: order_tracking with and without partitioning, at 20 million location rows.

Fills two copies of order_tracking in a throwaway schema of DATABASE_URL's
database (`bench_tracking`, dropped at the end): `plain` (one table, the
pre-partitioning layout) and `partitioned` (by day on order_created_at,
made by pg_partman as migration 0006 does), both with the indexes the
migration keeps. The rows are generated in SQL (`INSERT ... SELECT
generate_series`): `--orders` orders of `--points` points each, created over
`--days` days. Then it prints:

- bulk load and batched ingest rates (50-row INSERTs, as the API's batches);
- the hot per-order reads (snapshot position, trajectory path, events since a
  version, the ingest's client_id check), median and p95 over random orders,
  with EXPLAIN (ANALYZE, BUFFERS) of each on the partitioned table;
- table and index sizes of both, and a BRIN / B-tree index on create_time
  for comparison (no hot read filters on time, see docs/data.md);
- retention: detaching and dropping one day's partition (keeping its
  non-location events) against DELETE of the same day's rows.

Needs PostgreSQL with pg_partman (DATABASE_URL). Run it alone: about 15
minutes and ~12 GB of disk at the default size.

    python bench/tracking_data.py [--orders 200000] [--points 100] [--days 30] [--samples 200]
"""

# ruff: noqa: S608  (table names are this file's constants; the values travel as parameters)
import argparse
import os
import random
import statistics
import time

import psycopg2
from psycopg2.extras import execute_values

SCHEMA = "bench_tracking"
COLUMNS = """
    id varchar(32) NOT NULL, status smallint NOT NULL, longitude numeric(10, 6), latitude numeric(10, 6),
    address varchar(255) NOT NULL, operator_id varchar(32) NOT NULL, operator_type smallint,
    create_time timestamptz NOT NULL, kind varchar(16) NOT NULL, stage varchar(16) NOT NULL,
    recorded_at timestamptz NOT NULL, version integer NOT NULL, geohash varchar(12) NOT NULL,
    client_id varchar(64), accuracy double precision, speed double precision, heading double precision,
    data jsonb NOT NULL, order_id varchar(32) NOT NULL, order_created_at timestamptz NOT NULL
"""
START = "2026-01-01 00:00:00+00"
# Orders are created evenly over the days; each point is 15 s after the previous one.
FILL_SQL = """
INSERT INTO {table}
SELECT md5(o::text || '-' || p), 3, 121.4 + p * 0.0001, 31.2 + (o %% 1000) * 0.0001, '', '1', 1,
    created + p * interval '15 seconds', CASE WHEN p <= 5 THEN 'status' ELSE 'location' END, '',
    created + p * interval '15 seconds', p, '', CASE WHEN p <= 5 THEN NULL ELSE 'c' || p END,
    5, 6, 90, '{{}}', md5('order-' || o), created
FROM (
    SELECT o, %(start)s::timestamptz + (o::float8 / %(orders)s * %(days)s) * interval '1 day' AS created
    FROM generate_series(0, %(orders)s - 1) AS o
) AS placed, generate_series(1, %(points)s) AS p
"""
INDEXES = {
    "pkey": "CREATE UNIQUE INDEX {name} ON {table} (id, order_created_at)",
    "unique_version": "CREATE UNIQUE INDEX {name} ON {table} (order_id, version, order_created_at)",
    "unique_client_id": (
        "CREATE UNIQUE INDEX {name} ON {table} (order_id, client_id, order_created_at) WHERE client_id IS NOT NULL"
    ),
    "kind_time": "CREATE INDEX {name} ON {table} (order_id, kind, recorded_at)",
}
QUERIES = {
    "snapshot position": (
        "SELECT latitude, longitude, recorded_at FROM {table} WHERE order_id = %(order)s{prune}"
        " AND kind = 'location' ORDER BY recorded_at DESC, version DESC LIMIT 1"
    ),
    "trajectory path": (
        "SELECT latitude, longitude, recorded_at FROM {table} WHERE order_id = %(order)s{prune}"
        " AND kind = 'location' ORDER BY recorded_at, version"
    ),
    "events since version": (
        "SELECT * FROM {table} WHERE order_id = %(order)s{prune} AND version > %(since)s ORDER BY version LIMIT 101"
    ),
    "ingest client_id check": (
        "SELECT client_id FROM {table} WHERE order_id = ANY(%(orders)s){prune_any} AND client_id = ANY(%(clients)s)"
    ),
}


def timed(cursor, sql: str, params=None) -> float:
    started = time.perf_counter()
    cursor.execute(sql, params)
    return time.perf_counter() - started


def size(cursor, relation: str) -> int:
    """Bytes of a table or index; of a partitioned one, the sum over its partitions."""
    cursor.execute(
        "SELECT coalesce(sum(pg_relation_size(relid)), 0) FROM pg_partition_tree(%s) WHERE isleaf", [relation]
    )
    (total,) = cursor.fetchone()
    if total == 0:
        cursor.execute("SELECT pg_relation_size(%s)", [relation])
        (total,) = cursor.fetchone()
    return total


def mb(value: float) -> str:
    return f"{value / 2**20:,.0f} MB" if value >= 10 * 2**20 else f"{value / 2**10:,.0f} kB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    connection = psycopg2.connect(os.environ["DATABASE_URL"])
    connection.autocommit = True
    cursor = connection.cursor()
    cursor.execute("SET synchronous_commit = off")
    cursor.execute("SET maintenance_work_mem = '256MB'")
    cursor.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    cursor.execute(f"CREATE SCHEMA {SCHEMA}")
    cursor.execute("CREATE SCHEMA IF NOT EXISTS partman; CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman")
    rows = args.orders * args.points
    locations = args.orders * (args.points - 5)
    print(f"{rows:,} rows ({locations:,} location), {args.orders:,} orders over {args.days} days")
    params = {"start": START, "orders": args.orders, "days": args.days, "points": args.points}
    try:
        results = {}
        for layout in ("plain", "partitioned"):
            table = f"{SCHEMA}.{layout}"
            if layout == "plain":
                cursor.execute(f"CREATE TABLE {table} ({COLUMNS})")
            else:
                cursor.execute(f"CREATE TABLE {table} ({COLUMNS}) PARTITION BY RANGE (order_created_at)")
                cursor.execute(
                    "SELECT partman.create_parent(%s, 'order_created_at', 'native', 'daily', p_premake := 7,"
                    " p_start_partition := %s, p_jobmon := false)",
                    [table, START[:10]],
                )
            load = timed(cursor, FILL_SQL.format(table=table), params)
            index_build = 0.0
            for suffix, ddl in INDEXES.items():
                index_build += timed(cursor, ddl.format(name=f"{layout}_{suffix}", table=table))
            cursor.execute(f"VACUUM ANALYZE {table}")
            results[layout] = {"load": load, "index_build": index_build}
            print(f"{layout}: bulk load {rows / load:,.0f} rows/s ({load:.0f} s), indexes built in {index_build:.0f} s")

        cursor.execute(f"SELECT DISTINCT order_id, order_created_at FROM {SCHEMA}.plain WHERE version = 1")
        orders = cursor.fetchall()
        rng = random.Random(15)
        sample = rng.sample(orders, min(args.samples, len(orders)))

        print("\n## batched ingest (50-row INSERTs of new points on 50 existing orders, indexes in place)")
        for layout, result in results.items():
            table = f"{SCHEMA}.{layout}"
            batch_orders = sample[:50]
            values = []
            for batch in range(40):
                values.append(
                    [
                        (
                            f"{layout[:2]}{batch:04d}{index:026d}",
                            3,
                            121.4,
                            31.2,
                            "",
                            "1",
                            1,
                            "2026-02-01",
                            "location",
                            "",
                            "2026-02-01",
                            1000 + batch,
                            "",
                            f"n{batch}",
                            5,
                            6,
                            90,
                            "{}",
                            order_id,
                            created_at,
                        )
                        for index, (order_id, created_at) in enumerate(batch_orders)
                    ]
                )
            started = time.perf_counter()
            for batch in values:
                execute_values(cursor, f"INSERT INTO {table} VALUES %s ON CONFLICT DO NOTHING", batch)
            elapsed = time.perf_counter() - started
            result["ingest"] = 40 * 50 / elapsed
            print(f"{layout}: {result['ingest']:,.0f} rows/s")

        print("\n## hot reads (ms over", len(sample), "random orders: median / p95)")
        for name, sql in QUERIES.items():
            line = [f"{name}:"]
            for layout, prune in (("plain", False), ("partitioned", False), ("partitioned", True)):
                table = f"{SCHEMA}.{layout}"
                statement = sql.format(
                    table=table,
                    prune=" AND order_created_at = %(created)s" if prune else "",
                    prune_any=" AND order_created_at = ANY(%(created_any)s)" if prune else "",
                )
                times = []
                for order_id, created_at in sample:
                    query = {
                        "order": order_id,
                        "created": created_at,
                        "since": args.points - 20,
                        "orders": [order_id],
                        "created_any": [created_at],
                        "clients": [f"c{args.points - 1}", "c-new"],
                    }
                    times.append(timed(cursor, statement, query) * 1000)
                    cursor.fetchall()
                times.sort()
                label = layout + (" pruned" if prune else "")
                line.append(f"{label} {statistics.median(times):.2f} / {times[int(0.95 * len(times))]:.2f}")
                results.setdefault("reads", {})[(name, label)] = (
                    statistics.median(times),
                    times[int(0.95 * len(times))],
                )
                if layout == "partitioned":
                    order_id, created_at = sample[0]
                    cursor.execute(
                        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY OFF) " + statement,
                        {
                            "order": order_id,
                            "created": created_at,
                            "since": args.points - 20,
                            "orders": [order_id],
                            "created_any": [created_at],
                            "clients": [f"c{args.points - 1}"],
                        },
                    )
                    plan = [row[0] for row in cursor.fetchall()]
                    print(f"  EXPLAIN {name} ({label}): " + " | ".join(line.strip() for line in plan[:6]))
            print("  ".join(line))

        print("\n## sizes")
        for layout in ("plain", "partitioned"):
            table = f"{SCHEMA}.{layout}"
            indexes = {suffix: size(cursor, f"{SCHEMA}.{layout}_{suffix}") for suffix in INDEXES}
            print(
                f"{layout}: table {mb(size(cursor, table))}, indexes "
                + ", ".join(f"{suffix} {mb(value)}" for suffix, value in indexes.items())
                + f", total {mb(size(cursor, table) + sum(indexes.values()))}"
            )
        brin = timed(cursor, f"CREATE INDEX plain_time_brin ON {SCHEMA}.plain USING brin (create_time)")
        btree = timed(cursor, f"CREATE INDEX plain_time_btree ON {SCHEMA}.plain (create_time)")
        print(
            f"create_time on plain: BRIN {mb(size(cursor, SCHEMA + '.plain_time_brin'))} ({brin:.0f} s),"
            f" B-tree {mb(size(cursor, SCHEMA + '.plain_time_btree'))} ({btree:.0f} s)"
        )

        print("\n## retention of one day (the oldest)")
        cursor.execute(
            "SELECT child.partition_tablename FROM partman.show_partitions(%s) AS child LIMIT 1",
            [f"{SCHEMA}.partitioned"],
        )
        (oldest,) = cursor.fetchone()
        cursor.execute(f"SELECT count(*) FROM {SCHEMA}.{oldest}")
        (day_rows,) = cursor.fetchone()
        cursor.execute("BEGIN")
        drop = timed(cursor, f"ALTER TABLE {SCHEMA}.partitioned DETACH PARTITION {SCHEMA}.{oldest}")
        drop += timed(
            cursor,
            f"INSERT INTO {SCHEMA}.partitioned SELECT * FROM {SCHEMA}.{oldest} WHERE kind <> 'location'",
        )
        drop += timed(cursor, f"DROP TABLE {SCHEMA}.{oldest}")
        drop += timed(cursor, "COMMIT")
        cursor.execute("BEGIN")
        delete = timed(
            cursor,
            f"DELETE FROM {SCHEMA}.plain WHERE kind = 'location'"
            f" AND order_created_at < %s::timestamptz + interval '1 day'",
            [START],
        )
        delete += timed(cursor, "COMMIT")
        vacuum = timed(cursor, f"VACUUM {SCHEMA}.plain")
        print(
            f"{day_rows:,} rows: detach + keep non-location + drop {drop * 1000:,.0f} ms;"
            f" DELETE {delete * 1000:,.0f} ms, then VACUUM {vacuum * 1000:,.0f} ms"
        )
    finally:
        cursor.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        cursor.execute("DELETE FROM partman.part_config WHERE parent_table LIKE %s", [f"{SCHEMA}.%"])
        connection.close()


if __name__ == "__main__":
    main()
