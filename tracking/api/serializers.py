"""Input and output shapes of the tracking API: rider GPS batches and the GeoJSON trajectory."""

import datetime as dt
import math
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from djgeojson.serializers import Serializer as GeoJSONSerializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from orders.models import STATUS_NAMES, Order, OrderStatus
from tracking.models import TrackingEvent
from tracking.quality import flags_read
from tracking.role_views import flagged_points_visible, path_visible, position_digits
from tracking.services import LocationPoint, location_max_future
from tracking.snapshot import timeline_entry
from xiaoxiang.api import StrictFloatField
from xiaoxiang.payloads import text_error


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO-8601 string with an explicit zone: a naive device time is ambiguous, so it is refused."""

    default_error_messages = {
        "invalid": "Must be an ISO-8601 date-time with a time zone, e.g. 2026-01-01T08:00:00+08:00.",
        "naive": "The time zone is missing.",
    }

    def to_internal_value(self, value: Any) -> dt.datetime:
        if not isinstance(value, str):
            self.fail("invalid")
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
        if parsed is None:
            self.fail("invalid")
        if timezone.is_naive(parsed):
            self.fail("naive")
        return parsed


CLIENT_ID_MAX_LENGTH = 64
# A device clock before this is broken; it also keeps far-past times (year 1) out of date arithmetic.
EARLIEST_DEVICE_TIME = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
EARLIEST_DEVICE_TIME_ERROR = "Not a plausible device time (before 2000)."


class LocationPointInputSerializer(serializers.Serializer):
    """One GPS point; documents the rules that location_point_parse applies."""

    client_id = serializers.CharField(
        max_length=CLIENT_ID_MAX_LENGTH, help_text="The rider app's id for this point; re-uploads are no-ops."
    )
    lat = StrictFloatField(min_value=-90, max_value=90)
    lon = StrictFloatField(min_value=-180, max_value=180)
    recorded_at = AwareDateTimeField(help_text="Device time, ISO-8601 with zone.")
    accuracy = StrictFloatField(required=False, allow_null=True, min_value=0, help_text="Metres.")
    speed = StrictFloatField(required=False, allow_null=True, min_value=0, help_text="Metres per second.")
    heading = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=360, help_text="Degrees.")

    def validate_recorded_at(self, value: dt.datetime) -> dt.datetime:
        if value > timezone.now() + location_max_future():
            raise ValidationError(f"More than {settings.LOCATION_MAX_FUTURE_SECONDS} seconds in the future.")
        if value < EARLIEST_DEVICE_TIME:
            raise ValidationError(EARLIEST_DEVICE_TIME_ERROR)
        return value


class LocationBatchInputSerializer(serializers.Serializer):
    """Documents the body; `location_batch_parse` validates it point by point."""

    points = LocationPointInputSerializer(many=True, min_length=1, max_length=settings.LOCATION_BATCH_MAX)


class RejectedPointSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the point in the request's `points`.")
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = RejectedPointSerializer(many=True)


_REQUIRED_NUMBERS = (("lat", -90.0, 90.0), ("lon", -180.0, 180.0))
_OPTIONAL_NUMBERS = (("accuracy", 0.0, None), ("speed", 0.0, None), ("heading", 0.0, 360.0))


def _finite_number(value: Any, low: float, high: float | None) -> tuple[float | None, str | None]:
    """(number, None) or (None, error): a JSON number only (not a boolean or a string), finite, in range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, "A number is required."
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return None, "Must be a finite number."
    if not math.isfinite(number):
        return None, "Must be a finite number."
    if number < low or (high is not None and number > high):
        return None, f"Must be between {low:g} and {high:g}." if high is not None else f"Must be at least {low:g}."
    return number, None


def location_point_parse(item: Any, *, latest: dt.datetime) -> tuple[LocationPoint | None, dict[str, list[str]]]:
    """Validate one point of a batch: (point, {}) or (None, errors by field).

    The rules of LocationPointInputSerializer, as a plain function: a batch
    has up to 500 points and this is about ten times faster than running a
    DRF serializer per point. `latest` is the newest device time accepted.
    """
    if not isinstance(item, dict):
        return None, {"non_field_errors": ["Expected an object."]}
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}

    client_id = item.get("client_id")
    if isinstance(client_id, int) and not isinstance(client_id, bool):
        client_id = str(client_id)
    client_id = client_id.strip() if isinstance(client_id, str) else ""
    if not client_id:
        errors["client_id"] = ["Required: a non-empty string."]
    elif len(client_id) > CLIENT_ID_MAX_LENGTH:
        errors["client_id"] = [f"At most {CLIENT_ID_MAX_LENGTH} characters."]
    elif error := text_error(client_id):
        errors["client_id"] = [error]
    values["client_id"] = client_id

    for name, low, high in _REQUIRED_NUMBERS + _OPTIONAL_NUMBERS:
        value = item.get(name)
        if value is None:
            if (name, low, high) in _REQUIRED_NUMBERS:
                errors[name] = ["This field is required."]
            continue
        values[name], error = _finite_number(value, low, high)
        if error:
            errors[name] = [error]

    recorded_at = item.get("recorded_at")
    try:
        parsed = parse_datetime(recorded_at.strip()) if isinstance(recorded_at, str) else None
    except ValueError:  # well-formed but impossible, e.g. month 13
        parsed = None
    if parsed is None:
        errors["recorded_at"] = [AwareDateTimeField.default_error_messages["invalid"]]
    elif timezone.is_naive(parsed):
        errors["recorded_at"] = [AwareDateTimeField.default_error_messages["naive"]]
    elif parsed > latest:
        errors["recorded_at"] = [f"More than {settings.LOCATION_MAX_FUTURE_SECONDS} seconds in the future."]
    elif parsed < EARLIEST_DEVICE_TIME:
        errors["recorded_at"] = [EARLIEST_DEVICE_TIME_ERROR]
    values["recorded_at"] = parsed

    if errors:
        return None, errors
    return LocationPoint(**values), {}


def location_batch_parse(data: Any) -> tuple[list[tuple[int, LocationPoint]], list[dict[str, Any]]]:
    """Split a request body into valid (index, point) pairs and rejected points with their errors.

    A body that is not {"points": [1..LOCATION_BATCH_MAX items]} is a 400 for the whole request.
    """
    limit = settings.LOCATION_BATCH_MAX
    points = data.get("points") if isinstance(data, dict) else None
    if not isinstance(points, list) or not 1 <= len(points) <= limit:
        raise ValidationError({"points": [f"Expected a list of 1 to {limit} points."]})
    latest = timezone.now() + location_max_future()
    valid: list[tuple[int, LocationPoint]] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(points):
        point, errors = location_point_parse(item, latest=latest)
        if point is None:
            rejected.append({"index": index, "errors": errors})
        else:
            valid.append((index, point))
    return valid, rejected


class GeometrySerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["Point", "LineString"])
    coordinates = serializers.JSONField(help_text="[lon, lat] for a Point, a list of them for a LineString.")


class FeatureSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["Feature"])
    id = serializers.CharField()
    geometry = GeometrySerializer()
    properties = serializers.DictField(
        help_text=(
            "The path: kind=path, times (recorded_at of each vertex); for staff also quality_flags (each "
            "vertex's GPS quality flags, [] when the point is fit to be a position). "
            "An event: kind (status or stage), status, status_name, stage, label, time, version."
        )
    )


class FeatureCollectionSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["FeatureCollection"])
    features = FeatureSerializer(many=True)


PATH_PROPERTIES = ["kind", "times", "started_at", "ended_at", "quality_flags"]
EVENT_PROPERTIES = ["kind", "status", "status_name", "stage", "label", "time", "version"]


def trajectory_geojson(*, order: Order, role: str, path: list[tuple], timeline: list[TrackingEvent]) -> str:
    """The order's trajectory as a GeoJSON FeatureCollection (RFC 7946: [lon, lat], no crs member).

    The rider's path is one LineString in device-time order; each status and
    stage event is a Point where it happened (its own coordinates, else the
    rider's last point before it, else the warehouse). Customers see the path
    only once the order is dispatched, and every coordinate at 4 decimals.
    `path` is order_path's: points the GPS quality rule flagged come only for
    staff, who see every vertex's flags; events are placed at the rider's
    last point fit to be a position.
    """
    digits = position_digits(role)
    if not path_visible(role, dispatched=order.dispatched_at is not None):
        path = []
    with_flags = flagged_points_visible(role)

    def position(lat: Decimal | float, lon: Decimal | float) -> list[float]:
        return [round(float(lon), digits), round(float(lat), digits)]

    features: list[dict[str, Any]] = []
    if path:
        coordinates = [position(lat, lon) for lat, lon, _, _ in path]
        if len(coordinates) == 1:
            # A LineString needs two positions; a degenerate one keeps the feature's type stable for clients.
            coordinates.append(coordinates[0])
        line = {
            "id": "path",
            "geometry": {"type": "LineString", "coordinates": coordinates},
            "kind": "path",
            "times": [recorded_at.isoformat() for _, _, recorded_at, _ in path],
            "started_at": path[0][2].isoformat(),
            "ended_at": path[-1][2].isoformat(),
        }
        if with_flags:
            line["quality_flags"] = [flags_read(flags) for _, _, _, flags in path]
        features.append(line)

    warehouse = (order.warehouse.latitude, order.warehouse.longitude)
    positions = [point for point in path if not point[3]]
    position_index = 0
    for event in sorted(timeline, key=lambda event: (event.recorded_at, event.version)):
        while position_index < len(positions) and positions[position_index][2] <= event.recorded_at:
            position_index += 1
        if event.latitude is not None and event.longitude is not None:
            where = (event.latitude, event.longitude)
        elif position_index:
            where = positions[position_index - 1][:2]
        else:
            where = warehouse
        entry = timeline_entry(kind=event.kind, status=event.status, stage=event.stage, time=event.recorded_at)
        features.append(
            {
                "id": event.id,
                "geometry": {"type": "Point", "coordinates": position(*where)},
                **entry,
                "status_name": STATUS_NAMES[OrderStatus(event.status)],
                "version": event.version,
            }
        )
    return GeoJSONSerializer().serialize(
        features,
        geometry_field="geometry",
        primary_key="id",
        properties=PATH_PROPERTIES + EVENT_PROPERTIES,
        crs=False,
        with_modelname=False,
        ensure_ascii=False,
    )
