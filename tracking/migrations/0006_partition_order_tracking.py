"""PostgreSQL only: order_tracking becomes a table partitioned by day on order_created_at, kept by pg_partman.

SQLite (the embedded default) keeps the plain table. The partition key is the
order's creation time (0005), so all of an order's events share a partition
and the unique keys, which must include it, still mean "per order". Existing
rows are copied into the new partitions. docs/data.md explains the design.
"""

from django.db import migrations

PARENT = "public.order_tracking"
PREMAKE_DAYS = 7
FOREIGN_KEY = "order_tracking_order_id_fk_orders_id"

PARTITIONED_SQL = f"""
CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;
ALTER TABLE order_tracking RENAME TO order_tracking_unpartitioned;
-- The old table's keys and indexes give their names to the new table's (it is dropped below).
DO $$
DECLARE item record;
BEGIN
    FOR item IN SELECT conname FROM pg_constraint
        WHERE conrelid = 'order_tracking_unpartitioned'::regclass AND contype IN ('p', 'u', 'f') LOOP
        EXECUTE format('ALTER TABLE order_tracking_unpartitioned DROP CONSTRAINT %I', item.conname);
    END LOOP;
    FOR item IN SELECT indexrelid::regclass::text AS name FROM pg_index
        WHERE indrelid = 'order_tracking_unpartitioned'::regclass LOOP
        EXECUTE 'DROP INDEX ' || item.name;
    END LOOP;
END $$;
CREATE TABLE order_tracking (LIKE order_tracking_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (order_created_at);
ALTER TABLE order_tracking ADD CONSTRAINT order_tracking_pkey PRIMARY KEY (id, order_created_at);
ALTER TABLE order_tracking ADD CONSTRAINT order_tracking_unique_version UNIQUE (order_id, version, order_created_at);
CREATE UNIQUE INDEX order_tracking_unique_client_id ON order_tracking (order_id, client_id, order_created_at)
    WHERE client_id IS NOT NULL;
CREATE INDEX order_tracking_kind_time ON order_tracking (order_id, kind, recorded_at);
ALTER TABLE order_tracking ADD CONSTRAINT {FOREIGN_KEY}
    FOREIGN KEY (order_id) REFERENCES orders (id) DEFERRABLE INITIALLY DEFERRED;
"""

PLAIN_SQL = f"""
ALTER TABLE order_tracking RENAME TO order_tracking_partitioned;
CREATE TABLE order_tracking (LIKE order_tracking_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
INSERT INTO order_tracking SELECT * FROM order_tracking_partitioned;
DROP TABLE order_tracking_partitioned CASCADE;
DELETE FROM partman.part_config WHERE parent_table = '{PARENT}';
DROP TABLE IF EXISTS partman.template_public_order_tracking;
ALTER TABLE order_tracking ADD CONSTRAINT order_tracking_pkey PRIMARY KEY (id);
ALTER TABLE order_tracking ADD CONSTRAINT order_tracking_unique_version UNIQUE (order_id, version, order_created_at);
CREATE UNIQUE INDEX order_tracking_unique_client_id ON order_tracking (order_id, client_id, order_created_at)
    WHERE client_id IS NOT NULL;
CREATE INDEX order_tracking_kind_time ON order_tracking (order_id, kind, recorded_at);
ALTER TABLE order_tracking ADD CONSTRAINT {FOREIGN_KEY}
    FOREIGN KEY (order_id) REFERENCES orders (id) DEFERRABLE INITIALLY DEFERRED;
"""


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(PARTITIONED_SQL)
        # Partitions from the oldest existing order's day (else today) to a week ahead; older
        # rows would land in the default partition, so none are older.
        cursor.execute(
            "SELECT to_char(coalesce(min(order_created_at), now()), 'YYYY-MM-DD') FROM order_tracking_unpartitioned"
        )
        (start,) = cursor.fetchone()
        # pg_partman 4 (Debian 12) names declarative partitioning 'native', 5 (PGDG images) 'range'.
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'")
        kind = "native" if cursor.fetchone()[0].startswith("4.") else "range"
        cursor.execute(
            "SELECT partman.create_parent(p_parent_table := %s, p_control := 'order_created_at', p_type := %s,"
            " p_interval := '1 day', p_premake := %s, p_start_partition := %s, p_jobmon := false)",
            [PARENT, kind, PREMAKE_DAYS, start],
        )
        # pg_partman's own retention would drop the status, stage, ETA and alert events
        # too: tracking/retention.py detaches and drops instead (after archiving).
        cursor.execute(
            "UPDATE partman.part_config SET infinite_time_partitions = true WHERE parent_table = %s", [PARENT]
        )
        cursor.execute("INSERT INTO order_tracking SELECT * FROM order_tracking_unpartitioned")
        cursor.execute("DROP TABLE order_tracking_unpartitioned")


def unpartition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(PLAIN_SQL)


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0005_order_created_at"),
    ]

    operations = [migrations.RunPython(partition, unpartition, elidable=False)]
