"""Retention of location events: archive each completed trajectory on its order, then drop what expired.

On PostgreSQL order_tracking is partitioned by day on order_created_at (the
order's creation time, tracking/migrations/0006) and pg_partman makes the
partitions ahead of time. An expired partition is detached, its status,
stage, ETA and alert events (a few per order) are copied back into the
table, where they land in the default partition (no partition covers that
day any more), and the detached table is dropped: no DELETE over millions
of rows, no vacuum debt. pg_partman's own retention cannot keep those
events, so it stays off and this service decides. SQLite keeps one plain
table, so there the same rule is a DELETE.
"""

import bisect
import datetime as dt
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from orders.models import Order, OrderStatus
from tracking.models import EventKind, TrackingEvent
from tracking.selectors import order_path, order_timeline
from tracking.snapshot import timeline_entry

PARENT_TABLE = "public.order_tracking"
DEFAULT_PARTITION = "order_tracking_default"
# Metres a simplified path may stray from the recorded one: below GPS noise, so replay looks the same.
ARCHIVE_TOLERANCE_M = 5.0
EARTH_RADIUS_M = 6_371_000.0


@dataclass
class RetentionResult:
    archived: int = 0
    dropped_partitions: list[str] = field(default_factory=list)
    deleted: int = 0


def path_simplify(
    path: list[tuple[float, float, Any]], *, tolerance_m: float, keep: set[int] = frozenset()
) -> list[tuple[float, float, Any]]:
    """Douglas-Peucker on (lat, lon, ...) points: keep the points that stray more than tolerance_m from the line.

    The indexes in `keep` stay too (each span between them is simplified on its own).
    """
    cuts = sorted({0, len(path) - 1, *(index for index in keep if 0 < index < len(path) - 1)})
    if len(cuts) > 2:
        simplified: list[tuple[float, float, Any]] = []
        for first, last in itertools.pairwise(cuts):
            simplified.extend(path_simplify(path[first : last + 1], tolerance_m=tolerance_m)[:-1])
        return [*simplified, path[-1]]
    if len(path) < 3:
        return list(path)
    # Local flat projection in metres: a delivery spans a few kilometres, far below where it distorts.
    lat0 = math.radians(sum(float(point[0]) for point in path) / len(path))
    xy = [
        (math.radians(float(lon)) * math.cos(lat0) * EARTH_RADIUS_M, math.radians(float(lat)) * EARTH_RADIUS_M)
        for lat, lon, *_ in path
    ]
    keep = [False] * len(path)
    keep[0] = keep[-1] = True
    stack = [(0, len(path) - 1)]
    while stack:  # iterative: a long straight ride must not hit the recursion limit
        first, last = stack.pop()
        (x1, y1), (x2, y2) = xy[first], xy[last]
        length = math.hypot(x2 - x1, y2 - y1)
        farthest, distance = first, -1.0
        for index in range(first + 1, last):
            x0, y0 = xy[index]
            if length == 0:
                gap = math.hypot(x0 - x1, y0 - y1)
            else:
                gap = abs((x2 - x1) * (y1 - y0) - (x1 - x0) * (y2 - y1)) / length
            if gap > distance:
                farthest, distance = index, gap
        if distance > tolerance_m:
            keep[farthest] = True
            stack.extend([(first, farthest), (farthest, last)])
    return [point for point, kept in zip(path, keep, strict=True) if kept]


def order_trajectory_archive(*, order: Order) -> dict[str, Any]:
    """Store the order's compact trajectory (simplified path, status/stage timeline) on the order."""
    path = order_path(order=order)
    timeline = order_timeline(order=order)
    # The trajectory places an event without coordinates at the rider's last point before it:
    # those points stay, so the archived trajectory shows every event where the full one did.
    times = [recorded_at for _, _, recorded_at, _ in path]
    anchors = {bisect.bisect_right(times, event.recorded_at) - 1 for event in timeline}
    simplified = path_simplify(path, tolerance_m=ARCHIVE_TOLERANCE_M, keep=anchors)
    archive = {
        "tolerance_m": ARCHIVE_TOLERANCE_M,
        "recorded_points": len(path),
        "path": [[float(lat), float(lon), recorded_at.isoformat()] for lat, lon, recorded_at, _ in simplified],
        "timeline": [
            timeline_entry(kind=event.kind, status=event.status, stage=event.stage, time=event.recorded_at)
            for event in timeline
        ],
        "archived_at": timezone.now().isoformat(),
    }
    # Only this column: the archive is no change of the order (no version bump, nothing pushed).
    Order.objects.filter(pk=order.pk).update(trajectory_archive=archive)
    order.trajectory_archive = archive
    return archive


def orders_archive(*, created_before: dt.datetime) -> int:
    """Archive every completed order created before the time that has no archive yet; safe to run twice."""
    orders = Order.objects.filter(
        status=OrderStatus.COMPLETED, create_time__lt=created_before, trajectory_archive__isnull=True
    ).order_by("id")
    count = 0
    for order in orders.iterator(chunk_size=500):
        with transaction.atomic():
            order_trajectory_archive(order=order)
        count += 1
    return count


def order_tracking_partitioned() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = 'order_tracking'::regclass")
        return cursor.fetchone()[0] == "p"


def partitions_expired(*, cutoff: dt.datetime) -> list[tuple[str, dt.datetime]]:
    """(name, end) of each partition whose whole range is before the cutoff, oldest first (pg_partman's view)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT child.partition_tablename, info.child_end_time"
            " FROM partman.show_partitions(%s) AS child,"
            " LATERAL partman.show_partition_info(child.partition_schemaname || '.' || child.partition_tablename)"
            " AS info WHERE info.child_end_time <= %s ORDER BY info.child_end_time",
            [PARENT_TABLE, cutoff],
        )
        return cursor.fetchall()


@transaction.atomic
def partition_drop(*, name: str) -> None:
    """Detach one expired partition, keep its non-location events, drop it."""
    table = connection.ops.quote_name(name)
    with connection.cursor() as cursor:
        # Deferred foreign-key checks queued on the partition would forbid the DROP: run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # DETACH takes a short exclusive lock on order_tracking; the copy is a few rows per order.
        cursor.execute(f"ALTER TABLE order_tracking DETACH PARTITION {table}")
        # The table name comes from pg_partman's catalogue, quoted: no input reaches it.
        cursor.execute(f"INSERT INTO order_tracking SELECT * FROM {table} WHERE kind <> %s", [EventKind.LOCATION])  # noqa: S608
        cursor.execute(f"DROP TABLE {table}")


def tracking_retention_apply(*, now: dt.datetime | None = None) -> RetentionResult:
    """Remove location events of orders created more than TRACKING_RETENTION_DAYS ago, archiving first."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=settings.TRACKING_RETENTION_DAYS)
    result = RetentionResult()
    if not order_tracking_partitioned():
        result.archived = orders_archive(created_before=cutoff)
        result.deleted, _ = TrackingEvent.objects.filter(kind=EventKind.LOCATION, order_created_at__lt=cutoff).delete()
        return result
    for name, end in partitions_expired(cutoff=cutoff):
        result.archived += orders_archive(created_before=end)
        partition_drop(name=name)
        result.dropped_partitions.append(name)
    # Rows older than the first partition live in the default one (data from before partitioning); few.
    result.archived += orders_archive(created_before=cutoff)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {DEFAULT_PARTITION} WHERE kind = %s AND order_created_at < %s",  # noqa: S608 (a constant)
            [EventKind.LOCATION, cutoff],
        )
        result.deleted = cursor.rowcount
        # Make the partitions ahead of time (PREMAKE_DAYS of migration 0006).
        cursor.execute("SELECT partman.run_maintenance(%s, p_jobmon := false)", [PARENT_TABLE])
    return result
