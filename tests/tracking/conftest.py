"""Tracking data tests drive the real API as the rider app does."""

from tests.api.conftest import api  # noqa: F401  (fixture)
