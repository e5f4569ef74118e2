"""Migrations 0005 (order_created_at) and 0006 (partitioning) on a database that already holds
tracking data: every row survives with its order's creation time, and the keys hold afterwards.
(The suite's own test database is the fresh case: it is migrated from nothing.)"""

import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
from django.db import connection

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]
ORDERS = 40
EVENTS_PER_ORDER = 25


def _database_url(name: str) -> str:
    settings = connection.settings_dict
    return f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{name}"


def _migrate(url: str, *target: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0", *target],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        timeout=240,
    )


@pytest.fixture
def scratch_database():
    name = f"{connection.settings_dict['NAME']}_migrate"
    admin = psycopg2.connect(_database_url("postgres"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield _database_url(name)
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


# ORDERS orders of EVENTS_PER_ORDER events each.
EXISTING_DATA_SQL = """
INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name, email, is_staff, is_active,
    date_joined) VALUES (1, '!', false, 'alice', '', '', '', false, true, now());
INSERT INTO warehouses (id, code, name, address, latitude, longitude, geohash, active)
    VALUES (1, 'WH-1', 'w', '', 31.188, 121.437, '', true);
-- Orders created over the last 40 days, some in the future's premade range: several partitions.
INSERT INTO orders (id, status, total_amount, create_time, update_time, stage, delivery_address, delivery_lat,
    delivery_lon, promised_at, version, user_id, warehouse_id)
SELECT md5('order-' || o), 4, 10, now() - o * interval '1 day', now(), '', 'x', 'x', 'x', now(),
    25, 1, 1
FROM generate_series(0, 39) AS o;
INSERT INTO order_tracking (id, order_id, status, longitude, latitude, address, operator_id, operator_type,
    create_time, kind, stage, recorded_at, version, geohash, client_id, data)
SELECT md5(o || '-' || v), md5('order-' || o), 3, 121.4, 31.2, '', '1', 1, now(),
    CASE WHEN v <= 5 THEN 'status' ELSE 'location' END, '', now() - o * interval '1 day' + v * interval '15 seconds',
    v, '', CASE WHEN v <= 5 THEN NULL ELSE 'c-' || v END, '{}'
FROM generate_series(0, 39) AS o, generate_series(1, 25) AS v;
"""
ROWS_SQL = "SELECT id, order_id, version, kind, client_id, recorded_at FROM order_tracking ORDER BY order_id, version"


def test_partitioning_migrates_a_table_with_data(scratch_database):
    # Given the schema before this work (tracking 0004), holding tracking data,
    _migrate(scratch_database, "tracking", "0004")
    database = psycopg2.connect(scratch_database)
    database.autocommit = True
    cursor = database.cursor()
    cursor.execute(EXISTING_DATA_SQL)
    cursor.execute(ROWS_SQL)
    before = cursor.fetchall()

    # when it migrates forward,
    _migrate(scratch_database)

    # then every row is there, each with its order's creation time, spread over the days' partitions,
    cursor.execute(ROWS_SQL)
    assert cursor.fetchall() == before
    assert len(before) == ORDERS * EVENTS_PER_ORDER
    cursor.execute(
        "SELECT count(*) FROM order_tracking JOIN orders ON orders.id = order_id"
        " WHERE order_created_at = orders.create_time"
    )
    assert cursor.fetchone() == (ORDERS * EVENTS_PER_ORDER,)
    cursor.execute(
        "SELECT count(DISTINCT tableoid), count(*) FILTER (WHERE tableoid = 'order_tracking_default'::regclass)"
        " FROM order_tracking"
    )
    assert cursor.fetchone() == (ORDERS, 0)
    # and the keys still refuse a second client_id or version for an order.
    for version, client_id in ((999, "c-6"), (6, None)):
        cursor.execute(
            "INSERT INTO order_tracking (id, order_id, order_created_at, status, kind, stage, address, operator_id,"
            " recorded_at, version, geohash, client_id, data, create_time) SELECT 'new', id, create_time, 3,"
            " 'location', '', '', '', now(), %s, '', %s, '{}', now() FROM orders WHERE id = md5('order-3')"
            " ON CONFLICT DO NOTHING",
            [version, client_id],
        )
        assert cursor.rowcount == 0
    cursor.execute("SELECT count(*) FROM order_tracking")
    assert cursor.fetchone() == (ORDERS * EVENTS_PER_ORDER,)
    # 0007: every existing point is unflagged, and every partition has the column, also one pg_partman
    # makes afterwards (a week further ahead), where a flagged point is stored like anywhere else.
    cursor.execute("SELECT count(*) FROM order_tracking WHERE quality_flags = ''")
    assert cursor.fetchone() == (ORDERS * EVENTS_PER_ORDER,)
    cursor.execute("UPDATE partman.part_config SET premake = 14 WHERE parent_table = 'public.order_tracking'")
    cursor.execute("SELECT partman.run_maintenance('public.order_tracking')")
    cursor.execute(PARTITIONS_WITHOUT_FLAGS_SQL)
    partitions, without = cursor.fetchone()
    assert (partitions > ORDERS + 7, without) == (True, 0)
    cursor.execute(
        "INSERT INTO orders (id, status, total_amount, create_time, update_time, stage, delivery_address,"
        " delivery_lat, delivery_lon, promised_at, version, user_id, warehouse_id)"
        " VALUES ('later', 3, 10, now() + interval '12 days', now(), '', 'x', 'x', 'x', now(), 1, 1, 1)"
    )
    cursor.execute(
        "INSERT INTO order_tracking (id, order_id, order_created_at, status, kind, stage, address, operator_id,"
        " recorded_at, version, geohash, client_id, data, create_time, quality_flags) SELECT 'flagged', id,"
        " create_time, 3, 'location', '', '', '', now(), 1, '', 'c-1', '{}', now(), 'zero' FROM orders"
        " WHERE id = 'later' RETURNING tableoid::regclass::text, quality_flags"
    )
    table, flags = cursor.fetchone()
    assert (table != "order_tracking_default", flags) == (True, "zero")
    database.close()


# Partitions of order_tracking, and how many of them lack quality_flags.
PARTITIONS_WITHOUT_FLAGS_SQL = """
SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (
    SELECT 1 FROM pg_attribute WHERE attrelid = inhrelid AND attname = 'quality_flags' AND NOT attisdropped
))
FROM pg_inherits WHERE inhparent = 'order_tracking'::regclass
"""
