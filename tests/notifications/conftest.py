from tests.realtime.conftest import _fresh_realtime_state  # noqa: F401  (autouse fixture)
