"""GPS data quality through the real ingest (issue 12, point 7): a point with bad accuracy, at (0, 0)
or at an impossible speed is stored and flagged, and never becomes the live position, ETA input or
alert input; staff see the flags on the trajectory and the events, nobody else gets such a point's
position. Runs on SQLite and on partitioned PostgreSQL (the one-statement insert)."""

import datetime as dt
import json

import orjson
import pytest
from django.utils import timezone

from orders.models import Order
from tests.api.conftest import point, rider_state
from tests.jobs.conftest import backdate, toward_home
from tests.jobs.conftest import ingest as ingest_service
from tracking import publish
from tracking.alert_services import order_alerts_evaluate, order_track_recent
from tracking.eta_services import deliveries_history, order_eta_predict
from tracking.models import Alert, EventKind, Rider, TrackingEvent
from xiaoxiang.push import group_send_many

pytestmark = pytest.mark.django_db

URL = "/api/rider/locations/"
LON = 121.437


def _post(api, rider, points: list[dict]) -> dict:
    response = api(rider).post(URL, {"points": points}, format="json")
    assert response.status_code == 200
    return response.json()


def _mixed_batch(start: dt.datetime) -> list[dict]:
    """A ride north, 15 s apart, with one point of each kind of bad fix between good ones (shuffled)."""

    def at(seconds: int) -> dt.datetime:
        return start + dt.timedelta(seconds=seconds)

    points = [
        point("good-0", at=at(0), lat=31.1880, lon=LON, accuracy=8.0),
        point("vague-1", at=at(15), lat=31.1885, lon=LON, accuracy=250.0),
        point("zero-2", at=at(30), lat=0.0, lon=0.0),
        point("jump-3", at=at(45), lat=31.2300, lon=LON, accuracy=5.0),  # 4.7 km in 45 s
        point("good-4", at=at(60), lat=31.1890, lon=LON, accuracy=8.0),  # 111 m from good-0 in 60 s
    ]
    return [points[3], points[0], points[4], points[2], points[1]]


EXPECTED_FLAGS = {"good-0": "", "vague-1": "accuracy", "zero-2": "zero,speed", "jump-3": "speed", "good-4": ""}


def _stored_flags(order: Order) -> dict[str, str]:
    return dict(
        TrackingEvent.objects.filter(order=order, kind=EventKind.LOCATION).values_list("client_id", "quality_flags")
    )


def test_bad_fixes_are_stored_with_their_flags_and_count_as_accepted(api, rider, make_order, other_customer):
    first = make_order("delivering")
    second = make_order("delivering", owner=other_customer)
    start = timezone.now()

    result = _post(api, rider, _mixed_batch(start))

    assert result == {"accepted": 5, "duplicates": 0, "rejected": []}
    # The history is complete, on every order of the rider, and each point carries its own flags.
    assert _stored_flags(first) == _stored_flags(second) == EXPECTED_FLAGS
    # Versions still follow device time over all five points.
    stored = TrackingEvent.objects.filter(order=first, kind=EventKind.LOCATION).order_by("version")
    assert [event.client_id for event in stored] == ["good-0", "vague-1", "zero-2", "jump-3", "good-4"]


def test_a_re_upload_of_a_flagged_point_is_a_duplicate_and_keeps_its_flags(api, rider, make_order):
    order = make_order("delivering")
    batch = _mixed_batch(timezone.now())
    _post(api, rider, batch)

    assert _post(api, rider, batch) == {"accepted": 0, "duplicates": 5, "rejected": []}
    assert _stored_flags(order) == EXPECTED_FLAGS


def test_flagged_points_never_move_the_live_position(api, rider, staff, make_order):
    order = make_order("delivering")
    start = timezone.now()
    _post(api, rider, _mixed_batch(start))
    good = (31.189, LON, start + dt.timedelta(seconds=60))
    assert rider_state(rider) == good

    # The newest point of the next batch is a jump: stored, but the position stays where good-4 was.
    jump = point("jump-5", at=start + dt.timedelta(seconds=75), lat=31.25, lon=LON)
    assert _post(api, rider, [jump])["accepted"] == 1

    assert rider_state(rider) == good
    assert Rider.objects.get(user=rider).last_seen_at > start  # the rider was still heard from
    position = api(staff).get(f"/api/orders/{order.id}/").json()["rider_position"]
    assert (position["lat"], position["lon"]) == (31.189, LON)
    assert TrackingEvent.objects.filter(order=order, client_id="jump-5", quality_flags="speed").exists()


def test_a_rider_with_only_flagged_points_has_no_live_position(api, rider, staff, make_order):
    order = make_order("delivering")

    _post(api, rider, [point("zero", at=timezone.now(), lat=0.0, lon=0.0)])

    assert rider_state(rider)[2] is None
    assert api(staff).get(f"/api/orders/{order.id}/").json()["rider_position"] is None


def test_a_late_batch_is_checked_against_the_live_position_and_still_never_moves_it_back(api, rider, make_order):
    make_order("delivering")
    start = timezone.now()
    _post(api, rider, [point("now", at=start + dt.timedelta(seconds=60), lat=31.1900, lon=LON)])

    # Uploaded after a dead zone: 30 s and 15 s before the live position; the first is 3 km from it.
    late = [
        point("late-far", at=start + dt.timedelta(seconds=30), lat=31.2170, lon=LON),
        point("late-near", at=start + dt.timedelta(seconds=45), lat=31.1895, lon=LON),
    ]
    assert _post(api, rider, late)["accepted"] == 2

    flags = dict(TrackingEvent.objects.filter(client_id__startswith="late").values_list("client_id", "quality_flags"))
    assert flags == {"late-far": "speed", "late-near": ""}
    assert rider_state(rider) == (31.19, LON, start + dt.timedelta(seconds=60))


def test_the_eta_reads_no_flagged_point(api, rider, make_order):
    order = make_order("delivering")
    start = timezone.now()
    _post(api, rider, [point("on-the-way", at=start, lat=toward_home(0.2)[0], lon=toward_home(0.2)[1])])
    order = Order.objects.select_related("warehouse").get(pk=order.pk)
    now = start + dt.timedelta(seconds=210)
    before = order_eta_predict(order=order, now=now)

    # A vague fix at the customer's door: trusted, it would put the rider there.
    home = toward_home(1.0)
    door = point("door", at=start + dt.timedelta(seconds=200), lat=home[0], lon=home[1], accuracy=1500.0)
    _post(api, rider, [door])
    trusted = TrackingEvent.objects.filter(client_id="door")

    assert trusted.get().quality_flags == "accuracy"
    assert order_eta_predict(order=order, now=now) == before
    trusted.update(quality_flags="")  # the same point, unflagged, does move the ETA
    assert order_eta_predict(order=order, now=now) < before


def test_the_eta_model_learns_from_no_flagged_point(api, rider, make_order):
    order = make_order("delivering")
    start = timezone.now()
    _post(api, rider, _mixed_batch(start))
    api(rider).post(f"/api/rider/orders/{order.id}/delivered/", {}, format="json")

    [delivery] = deliveries_history()

    assert [(point.lat, point.lon) for point in delivery.points] == [(31.188, LON), (31.189, LON)]


def test_alerts_read_no_flagged_point(rider, make_order):
    order = backdate(make_order("delivering"), minutes=15)
    spot = toward_home(0.3)
    now = timezone.now()
    ingest_service(rider, [(spot, now - dt.timedelta(seconds=15 * step)) for step in range(21)])  # 5 min still
    assert order_alerts_evaluate(order_id=order.pk) == {"stall": "opened"}

    # A jump of 1.3 km 15 s later: trusted, the rider would have moved on and the stall would resolve.
    away = toward_home(1.0)
    ingest_service(rider, [(away, now + dt.timedelta(seconds=15))])

    newest = TrackingEvent.objects.filter(order=order, kind=EventKind.LOCATION).order_by("-recorded_at").first()
    assert newest.quality_flags == "speed"
    assert round(order_track_recent(order=order, window_seconds=600)[-1].lat, 6) == round(spot[0], 6)
    assert order_alerts_evaluate(order_id=order.pk) == {}
    assert Alert.objects.get(order=order, kind="stall").is_open


def _trajectory(api, user, order) -> dict:
    response = api(user).get(f"/api/orders/{order.id}/trajectory/")
    assert response.status_code == 200
    return json.loads(response.content)["features"][0]["properties"] | {
        "coordinates": json.loads(response.content)["features"][0]["geometry"]["coordinates"]
    }


def test_staff_see_every_point_with_its_flags_on_the_trajectory(api, staff, rider, make_order):
    order = make_order("delivering")
    _post(api, rider, _mixed_batch(timezone.now()))

    path = _trajectory(api, staff, order)

    assert path["kind"] == "path"
    assert path["quality_flags"] == [[], ["accuracy"], ["zero", "speed"], ["speed"], []]
    assert path["coordinates"] == [[LON, 31.188], [LON, 31.1885], [0.0, 0.0], [LON, 31.23], [LON, 31.189]]
    assert len(path["times"]) == 5


@pytest.mark.parametrize("persona", ["customer", "rider"])
def test_everyone_else_gets_the_path_without_flagged_points_and_no_flags(api, request, rider, make_order, persona):
    order = make_order("delivering")
    _post(api, rider, _mixed_batch(timezone.now()))

    path = _trajectory(api, request.getfixturevalue(persona), order)

    assert "quality_flags" not in path
    assert [round(lat, 4) for _, lat in path["coordinates"]] == [31.188, 31.189]
    assert len(path["times"]) == 2


def test_events_show_staff_the_flags_and_others_no_flagged_position(api, staff, customer, rider, make_order):
    order = make_order("delivering")
    since = order.version
    _post(api, rider, _mixed_batch(timezone.now()))

    def locations(user) -> list[dict]:
        events = api(user).get(f"/api/orders/{order.id}/events/?since_version={since}").json()["events"]
        return [event for event in events if event["kind"] == "location"]

    staff_events, customer_events = locations(staff), locations(customer)

    assert [event["quality_flags"] for event in staff_events] == [[], ["accuracy"], ["zero", "speed"], ["speed"], []]
    assert [event["lat"] for event in staff_events] == [31.188, 31.1885, 0.0, 31.23, 31.189]
    assert [event["lat"] for event in customer_events] == [31.188, None, None, None, 31.189]
    assert [event["lon"] for event in customer_events] == [LON, None, None, None, LON]
    assert all("quality_flags" not in event for event in customer_events)
    # Same versions for everyone: a client sees no gap.
    assert [event["version"] for event in customer_events] == [event["version"] for event in staff_events]


def test_live_frames_show_staff_the_flags_and_move_nobody_s_position(
    api, rider, make_order, monkeypatch, django_capture_on_commit_callbacks
):
    order = make_order("delivering")
    start = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):  # publishes: the snapshot is cached
        _post(api, rider, [point("good", at=start, lat=31.188, lon=LON)])
    messages = []

    def record(batch, *, claims=()):
        messages.extend(message for group, message in batch if group == publish.order_group(order.id))
        return group_send_many(batch, claims=claims)

    monkeypatch.setattr(publish, "group_send_many", record)
    with django_capture_on_commit_callbacks(execute=True):
        _post(api, rider, [point("jump", at=start + dt.timedelta(seconds=15), lat=31.25, lon=LON)])

    [message] = messages
    [staff_frame] = [orjson.loads(text) for text in message["frames"]["staff"]]
    [customer_frame] = [orjson.loads(text) for text in message["frames"]["customer"]]
    [member_frame] = [orjson.loads(text) for text in message["frames"]["member"]]
    assert (staff_frame["event"]["lat"], staff_frame["event"]["quality_flags"]) == (31.25, ["speed"])
    for frame in (customer_frame, member_frame):
        assert (frame["event"]["lat"], frame["event"]["lon"]) == (None, None)
        assert "quality_flags" not in frame["event"]
    # The frame's changes: the order was written (version, update_time), the rider did not move, for every view.
    for frame in (staff_frame, customer_frame, member_frame):
        assert set(frame["changes"]) == {"version", "update_time"}
