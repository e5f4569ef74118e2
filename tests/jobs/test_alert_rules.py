"""Alert detection as pure functions on fixed tracks: straight run, stall, detour, going away, late, offline."""

import datetime as dt

from tests.jobs.tracks import DESTINATION, START, WAREHOUSE, at, north, stall, straight_run
from tracking import alerts
from tracking.alerts import Thresholds
from tracking.management.simulation import from_local

LIMITS = Thresholds(
    stall_seconds=240,
    stall_radius_m=30,
    away_points=4,
    away_min_m=100,
    corridor_m=800,
    offline_seconds=180,
    late_grace_seconds=60,
)


def seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


def test_a_straight_run_raises_nothing():
    track = straight_run(START, speed_mps=5.0)
    for end in range(1, len(track) + 1):
        window = track[:end]
        assert not alerts.stall_check(window, destination=DESTINATION, thresholds=LIMITS).active
        assert not alerts.deviation_check(
            window, warehouse=WAREHOUSE, destination=DESTINATION, thresholds=LIMITS
        ).active


def test_standing_still_for_the_threshold_is_a_stall():
    ride = straight_run(START, speed_mps=5.0, length_m=600)
    standing = stall(north(600), ride[-1].recorded_at + seconds(15), seconds=240)

    finding = alerts.stall_check(ride + standing, destination=DESTINATION, thresholds=LIMITS)

    assert finding.active
    assert finding.kind == "stall"
    assert finding.data["seconds"] == 255  # from the arrival point, 15 s before the first standing one
    assert finding.message == "骑手已在同一位置停留 4 分钟"


def test_a_shorter_stop_is_not_a_stall():
    standing = stall(north(600), START, seconds=225)
    assert not alerts.stall_check(standing, destination=DESTINATION, thresholds=LIMITS).active


def test_moving_on_clears_the_stall():
    standing = stall(north(600), START, seconds=300)
    moving = [at(north(700), standing[-1].recorded_at + seconds(15))]
    assert not alerts.stall_check(standing + moving, destination=DESTINATION, thresholds=LIMITS).active


def test_waiting_at_the_door_is_not_a_stall():
    standing = stall(DESTINATION, START, seconds=600)
    assert not alerts.stall_check(standing, destination=DESTINATION, thresholds=LIMITS).active


def test_going_away_for_several_points_is_a_deviation():
    toward = straight_run(START, speed_mps=5.0, length_m=1000)
    last = toward[-1].recorded_at
    away = [at(north(1000 - 60 * step), last + seconds(15 * step)) for step in range(1, 5)]

    finding = alerts.deviation_check(toward + away, warehouse=WAREHOUSE, destination=DESTINATION, thresholds=LIMITS)

    assert finding.active
    assert finding.data["reason"] == "away"
    assert finding.data["moved_away_m"] == 240


def test_going_away_for_fewer_points_is_not_yet_a_deviation():
    toward = straight_run(START, speed_mps=5.0, length_m=1000)
    last = toward[-1].recorded_at
    away = [at(north(1000 - 60 * step), last + seconds(15 * step)) for step in range(1, 4)]
    finding = alerts.deviation_check(toward + away, warehouse=WAREHOUSE, destination=DESTINATION, thresholds=LIMITS)
    assert not finding.active


def test_a_detour_outside_the_corridor_is_a_deviation_until_back_on_route():
    toward = straight_run(START, speed_mps=5.0, length_m=1000)
    last = toward[-1].recorded_at
    # Sideways (east), which keeps the distance to the door about the same
    # at first but leaves the warehouse-destination corridor.
    sideways = [at(from_local(WAREHOUSE, (150.0 * step, 1000.0)), last + seconds(15 * step)) for step in range(1, 8)]
    finding = alerts.deviation_check(toward + sideways, warehouse=WAREHOUSE, destination=DESTINATION, thresholds=LIMITS)
    assert finding.active
    assert finding.data["reason"] == "corridor"
    assert abs(finding.data["off_route_m"] - 1050) <= 2

    back = [at(north(1200), sideways[-1].recorded_at + seconds(15))]
    assert not alerts.deviation_check(
        toward + sideways + back, warehouse=WAREHOUSE, destination=DESTINATION, thresholds=LIMITS
    ).active


def test_distance_to_segment():
    assert alerts.distance_to_segment_m(north(1000), WAREHOUSE, DESTINATION) < 0.5
    assert round(alerts.distance_to_segment_m(north(2500), WAREHOUSE, DESTINATION)) == 500
    assert round(alerts.distance_to_segment_m(from_local(WAREHOUSE, (300.0, 500.0)), WAREHOUSE, DESTINATION)) == 300


def test_past_the_promise_is_late():
    promised = START
    finding = alerts.late_check(now=START + seconds(61), promised_at=promised, eta=None, thresholds=LIMITS)
    assert finding.active
    assert finding.data["reason"] == "overdue"
    assert finding.message == "已超过承诺送达时间 1 分钟"


def test_an_eta_past_the_promise_is_late_before_it_happens():
    finding = alerts.late_check(
        now=START - seconds(600), promised_at=START, eta=START + seconds(181), thresholds=LIMITS
    )
    assert finding.active
    assert finding.data["reason"] == "predicted"
    assert finding.message == "预计晚于承诺时间约 4 分钟送达"


def test_an_eta_within_the_grace_is_not_late():
    finding = alerts.late_check(now=START - seconds(600), promised_at=START, eta=START + seconds(60), thresholds=LIMITS)
    assert not finding.active


def test_silence_beyond_the_threshold_is_offline():
    assert alerts.offline_check(now=START, last_heard_at=START - seconds(180), thresholds=LIMITS).active
    assert not alerts.offline_check(now=START, last_heard_at=START - seconds(179), thresholds=LIMITS).active
    assert not alerts.offline_check(now=START, last_heard_at=None, thresholds=LIMITS).active
