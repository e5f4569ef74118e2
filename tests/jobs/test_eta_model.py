"""The ETA model as pure functions on fixed tracks."""

import datetime as dt
import zoneinfo

import pytest

from tests.jobs.tracks import DESTINATION, START, WAREHOUSE, north, straight_delivery, straight_run
from tracking import eta, eta_backtest
from tracking.eta import EtaParams

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def history(count: int, *, speed_mps: float = 5.0, start: dt.datetime = START, handover_s: float = 120.0):
    return [
        straight_delivery(start + dt.timedelta(hours=index), speed_mps=speed_mps, handover_s=handover_s)
        for index in range(count)
    ]


def test_little_history_keeps_the_documented_defaults():
    params = eta.eta_fit(history(eta.MIN_DELIVERIES - 1), tz=SHANGHAI)

    assert params.pace_s_per_m == {}
    assert params.phase_seconds == eta.DEFAULT_PHASE_SECONDS
    assert params.handover_seconds == eta.DEFAULT_HANDOVER_SECONDS
    assert params.deliveries == eta.MIN_DELIVERIES - 1


def test_default_prediction_from_the_warehouse_is_distance_times_default_pace_plus_handover():
    predicted = eta.eta_predict_delivering(
        EtaParams(),
        now=START,
        destination=DESTINATION,
        warehouse=WAREHOUSE,
        dispatched_at=START,
        position=None,
        tz=SHANGHAI,
    )

    expected = (2000 - eta.ARRIVAL_RADIUS_M) * eta.DEFAULT_PACE_S_PER_M + eta.DEFAULT_HANDOVER_SECONDS
    assert (predicted - START).total_seconds() == pytest.approx(expected, abs=1)


def test_straight_runs_teach_speed_handover_and_warehouse_phases():
    params = eta.eta_fit(history(10, speed_mps=5.0, handover_s=120.0), tz=SHANGHAI)

    assert params.pace_s_per_m["all"] == pytest.approx(1 / 5.0, rel=0.02)
    assert params.handover_seconds == pytest.approx(120.0, abs=15)
    assert params.phase_seconds == {"queue": 60.0, "picking": 300.0, "packing": 120.0, "dispatch": 120.0}
    assert params.deliveries == 10


def test_a_straight_run_is_predicted_within_seconds_mid_ride():
    params = eta.eta_fit(history(10, speed_mps=5.0), tz=SHANGHAI)
    ride = straight_delivery(START + dt.timedelta(days=1), speed_mps=5.0)
    halfway = ride.points[len(ride.points) // 4]

    predicted = eta.eta_predict_delivering(
        params,
        now=halfway.recorded_at,
        destination=ride.destination,
        warehouse=WAREHOUSE,
        dispatched_at=ride.dispatched_at,
        position=halfway,
        tz=SHANGHAI,
    )

    assert abs((predicted - ride.delivered_at).total_seconds()) < 20


def test_pace_is_learned_per_hour_of_day():
    def daily(count: int, *, speed_mps: float, start: dt.datetime):
        return [straight_delivery(start + dt.timedelta(days=day), speed_mps=speed_mps) for day in range(count)]

    rush = daily(5, speed_mps=2.5, start=dt.datetime(2026, 11, 20, 0, 30, tzinfo=dt.UTC))  # 08:30 local
    night = daily(5, speed_mps=6.0, start=dt.datetime(2026, 11, 20, 15, 0, tzinfo=dt.UTC))  # 23:00 local
    params = eta.eta_fit(rush + night, tz=SHANGHAI)

    band = eta.distance_band(1000)
    assert eta.pace_for(params, hour=8, band=band) == pytest.approx(1 / 2.5, rel=0.05)
    assert eta.pace_for(params, hour=23, band=band) == pytest.approx(1 / 6.0, rel=0.05)
    # An hour with no rides of its own borrows from the hour beside it.
    assert eta.pace_for(params, hour=9, band=band) == eta.pace_for(params, hour=8, band=band)


def test_paid_order_includes_the_rest_of_the_warehouse_time():
    params = EtaParams()
    now = START
    picking_since = now - dt.timedelta(seconds=100)

    predicted = eta.eta_predict_paid(
        params,
        now=now,
        destination=DESTINATION,
        warehouse=WAREHOUSE,
        stage="picking",
        phase_started_at=picking_since,
        tz=SHANGHAI,
    )

    warehouse_left = (300 - 100) + 120 + 90
    ride = (2000 - eta.ARRIVAL_RADIUS_M) * eta.DEFAULT_PACE_S_PER_M + eta.DEFAULT_HANDOVER_SECONDS
    assert (predicted - now).total_seconds() == pytest.approx(warehouse_left + ride, abs=1)


def test_an_overrunning_phase_counts_as_done_not_negative():
    left = eta.warehouse_remaining_seconds(
        EtaParams(), stage="packed", phase_started_at=START - dt.timedelta(hours=1), now=START
    )
    assert left == 0.0


def test_a_rider_at_the_door_is_never_promised_the_past():
    position = eta.TrackPoint(*north(2000), START - dt.timedelta(minutes=10))

    predicted = eta.eta_predict_delivering(
        EtaParams(),
        now=START,
        destination=DESTINATION,
        warehouse=WAREHOUSE,
        dispatched_at=START - dt.timedelta(minutes=20),
        position=position,
        tz=SHANGHAI,
    )

    assert predicted == START + dt.timedelta(seconds=eta.MIN_REMAINING_SECONDS)


def test_params_round_trip_through_json():
    params = eta.eta_fit(history(10), tz=SHANGHAI)
    assert eta.EtaParams.from_dict(params.as_dict()) == params


def test_backtest_on_straight_runs_beats_the_naive_baseline():
    # Riders make 5 m/s with 2 min at the door; the baseline assumes 4.17 m/s and no door.
    report = eta_backtest.eta_backtest(history(20, speed_mps=5.0), tz=SHANGHAI)

    assert (report.train_deliveries, report.test_deliveries) == (16, 4)
    assert report.model.count == report.baseline.count > 4
    assert report.model.mean_seconds < 20
    assert report.model.mean_seconds < report.baseline.mean_seconds
    assert report.model.p90_seconds < report.baseline.p90_seconds


def test_percentile_is_nearest_rank():
    assert eta_backtest.percentile([float(n) for n in range(1, 11)], 0.9) == 9.0
    assert eta_backtest.percentile([5.0], 0.9) == 5.0


def test_straight_run_helper_ends_at_the_destination():
    track = straight_run(START, speed_mps=5.0)
    assert (track[-1].lat, track[-1].lon) == pytest.approx(DESTINATION)


def test_street_grid_distance_counts_blocks_not_the_diagonal():
    from tracking.management.simulation import from_local

    corner = from_local(WAREHOUSE, (300.0, 400.0))
    assert eta.grid_distance_m(WAREHOUSE, corner) == pytest.approx(700, abs=1)


def test_waiting_at_the_door_counts_the_handover_down():
    params = EtaParams(handover_seconds=120)
    at_door = eta.TrackPoint(*DESTINATION, START)

    predicted = eta.eta_predict_delivering(
        params,
        now=START,
        destination=DESTINATION,
        warehouse=WAREHOUSE,
        dispatched_at=START - dt.timedelta(minutes=10),
        position=at_door,
        tz=SHANGHAI,
        arrived_at=START - dt.timedelta(seconds=50),
    )

    assert predicted == START + dt.timedelta(seconds=70)


def test_arrival_is_the_start_of_the_newest_run_at_the_door():
    passing = [eta.TrackPoint(*DESTINATION, START), eta.TrackPoint(*north(1000), START + dt.timedelta(seconds=15))]
    back = [eta.TrackPoint(*DESTINATION, START + dt.timedelta(seconds=s)) for s in (30, 45, 60)]
    assert eta.track_arrived_at(passing + back, DESTINATION) == START + dt.timedelta(seconds=30)
    assert eta.track_arrived_at(passing, DESTINATION) is None
