"""The GPS quality rule (tracking/quality.py) as pure functions: accuracy, (0, 0) and impossible speed,
each point against the previous accepted one; and its thresholds from the environment."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracking.eta import TrackPoint
from tracking.quality import ACCURACY, SPEED, ZERO, Thresholds, batch_flags, flags_read, flags_stored, point_flags
from tracking.services import LocationPoint

ROOT = Path(__file__).resolve().parents[2]
START = dt.datetime(2026, 1, 1, 8, 0, tzinfo=dt.UTC)
THRESHOLDS = Thresholds(max_accuracy_m=100, max_speed_mps=50, speed_window_seconds=120)
# 0.001 degrees of latitude are 111.2 m.
DEGREE_M = 111_195


def fix(seconds: float, lat: float = 31.19, lon: float = 121.44, accuracy: float | None = 8.0) -> LocationPoint:
    return LocationPoint(f"c-{seconds}", lat, lon, START + dt.timedelta(seconds=seconds), accuracy=accuracy)


def flags(point: LocationPoint, previous: TrackPoint | LocationPoint | None = None) -> tuple[str, ...]:
    return point_flags(point, previous=previous, thresholds=THRESHOLDS)


def test_a_good_point_has_no_flags():
    assert flags(fix(0)) == ()
    assert flags(fix(0, accuracy=None)) == ()  # accuracy is optional: unknown is not bad
    assert flags(fix(15, lat=31.191), previous=fix(0)) == ()  # 111 m in 15 s: 7.4 m/s


def test_accuracy_worse_than_the_threshold_is_flagged():
    assert flags(fix(0, accuracy=100.0)) == ()
    assert flags(fix(0, accuracy=100.5)) == (ACCURACY,)


def test_null_island_is_flagged_but_the_equator_and_the_meridian_are_not():
    assert flags(fix(0, lat=0.0, lon=0.0)) == (ZERO,)
    assert flags(fix(0, lat=0.0000001, lon=-0.0000002)) == (ZERO,)  # stored as (0, 0) at 6 decimals
    assert flags(fix(0, lat=0.0, lon=32.58)) == ()  # Kampala lies on the equator
    assert flags(fix(0, lat=51.48, lon=0.0)) == ()  # Greenwich


def test_an_impossible_speed_from_the_previous_point_is_flagged():
    previous = fix(0)
    # 1 km in 15 s is 67 m/s; 999 m in 20 s is 49.95 m/s.
    assert flags(fix(15, lat=31.19 + 1000 / DEGREE_M), previous=previous) == (SPEED,)
    assert flags(fix(20, lat=31.19 + 999 / DEGREE_M), previous=previous) == ()


def test_the_speed_bound_holds_backwards_in_time_too():
    # A late point 15 s before the live position, 1 km away from it.
    live = TrackPoint(31.19, 121.44, START + dt.timedelta(seconds=15))
    assert flags(fix(0, lat=31.19 + 1000 / DEGREE_M), previous=live) == (SPEED,)


def test_two_fixes_in_the_same_second_count_as_one_second_apart():
    assert flags(fix(0.2, lat=31.19 + 40 / DEGREE_M), previous=fix(0)) == ()  # GPS noise
    assert flags(fix(0.2, lat=31.19 + 60 / DEGREE_M), previous=fix(0)) == (SPEED,)


def test_a_previous_point_beyond_the_window_is_not_compared():
    far = 31.19 + 10_000 / DEGREE_M  # 10 km
    assert flags(fix(120, lat=far), previous=fix(0)) == (SPEED,)
    assert flags(fix(121, lat=far), previous=fix(0)) == ()


def test_every_flag_that_applies_is_named_in_order():
    assert flags(fix(1, lat=0.0, lon=0.0, accuracy=500.0), previous=fix(0)) == (ACCURACY, ZERO, SPEED)


def test_in_a_batch_each_point_is_compared_with_the_last_accepted_one_before_it():
    spike = 31.19 + 2000 / DEGREE_M
    points = [
        fix(0),
        fix(15, lat=spike),  # a 2 km jump and back: the spike is flagged...
        fix(30, lat=31.1901),  # ...and the point after it is compared with fix(0), not the spike
        fix(45, lat=0.0, lon=0.0),
        fix(60, lat=31.1902, accuracy=900.0),
        fix(75, lat=31.1903),
    ]

    assert batch_flags(points, previous=None, thresholds=THRESHOLDS) == [
        (),
        (SPEED,),
        (),
        (ZERO, SPEED),
        (ACCURACY,),
        (),
    ]


def test_the_first_point_of_a_batch_is_compared_with_the_live_position():
    live = TrackPoint(31.19, 121.44, START)
    points = [fix(10, lat=31.19 + 1000 / DEGREE_M), fix(20, lat=31.1901)]

    assert batch_flags(points, previous=live, thresholds=THRESHOLDS) == [(SPEED,), ()]


def test_flags_are_stored_comma_separated_and_read_back_as_a_list():
    assert flags_stored((ACCURACY, SPEED)) == "accuracy,speed"
    assert flags_stored(()) == ""
    assert flags_read("accuracy,speed") == ["accuracy", "speed"]
    assert flags_read("") == []


def _settings_in_a_fresh_process(**env: str) -> subprocess.CompletedProcess:
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'xiaoxiang.settings'); django.setup();"
        "from tracking.quality import quality_thresholds; print(quality_thresholds())"
    )
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GPS_")}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**environment, **env}, capture_output=True, text=True, timeout=60
    )


def test_the_thresholds_come_from_settings_and_the_environment():
    default = _settings_in_a_fresh_process()
    overridden = _settings_in_a_fresh_process(
        GPS_MAX_ACCURACY_M="35", GPS_MAX_SPEED_MPS="30", GPS_SPEED_WINDOW_SECONDS="60"
    )

    assert default.stdout.strip() == "Thresholds(max_accuracy_m=100, max_speed_mps=50, speed_window_seconds=120)"
    assert overridden.stdout.strip() == "Thresholds(max_accuracy_m=35, max_speed_mps=30, speed_window_seconds=60)"


def test_a_threshold_that_is_not_a_number_stops_start_up_naming_it():
    broken = _settings_in_a_fresh_process(GPS_MAX_SPEED_MPS="fast")

    assert broken.returncode != 0
    assert "GPS_MAX_SPEED_MPS must be an integer, got 'fast'" in broken.stderr


@pytest.mark.parametrize("speed_mps", [49.0, 51.0])
def test_the_speed_threshold_is_the_setting(speed_mps):
    thresholds = Thresholds(max_accuracy_m=100, max_speed_mps=speed_mps, speed_window_seconds=120)
    point = fix(10, lat=31.19 + 500 / DEGREE_M)  # 500 m in 10 s: 50 m/s

    assert point_flags(point, previous=fix(0), thresholds=thresholds) == ((SPEED,) if speed_mps < 50 else ())
