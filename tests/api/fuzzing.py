"""Hostile input for the fuzz tests (test_fuzz_http.py, test_fuzz_sockets.py), as Hypothesis strategies.

Bodies and frames are JSON text built from a valid template with one place
replaced by a raw JSON fragment, so they can hold what json.dumps cannot
write (1,500 levels of nesting, 1e400, a 5,000-digit integer), plus raw
bytes that are not JSON or not UTF-8 at all. Strings are escaped as a
client's encoder escapes them, lone surrogates and NUL included.
"""

import contextlib
import copy
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from notifications.models import Notification
from orders.models import Order, OrderItem
from tracking.models import Alert, Rider, TrackingEvent

# Bounded for the suite's sake (derandomized, so a run is repeatable); FUZZ_MAX_EXAMPLES=1000 digs deeper at random.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    derandomize="FUZZ_MAX_EXAMPLES" not in os.environ,
    suppress_health_check=list(HealthCheck),
)

SPECIAL_CHARACTERS = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\ufffe", "\u202e", "\x1b", "\\", '"', "😀", "/"]
hostile_text = st.lists(st.one_of(st.characters(), st.sampled_from(SPECIAL_CHARACTERS)), max_size=24).map("".join)

EXTREME_NUMBERS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "1" * 5000,  # over Python's 4,300-digit limit for int()
    "9" * 400,
    str(2**63),
    str(-(2**63) - 1),
    str(2**31),
    "0.1e1",
    "1E+2",
]
WRONG_TYPES = ["null", "true", "false", "[]", "{}", '""', "[1, 2]", '{"type": "auth"}', '"0"', "0", "-1"]


def _nested(depth: int, opener: str, closer: str, inner: str = "0") -> str:
    return opener * depth + inner + closer * depth


# Around the limit (32), around Python's recursion limit (1,000), the campaign's 1,500, far beyond, or anything.
depths = st.one_of(st.sampled_from([32, 33, 990, 1000, 1500, 2000, 100_000]), st.integers(1, 3000))
fragments = st.one_of(
    hostile_text.map(json.dumps),
    depths.map(lambda depth: _nested(depth, "[", "]")),
    depths.map(lambda depth: _nested(depth, '{"a": ', "}")),
    st.sampled_from(EXTREME_NUMBERS),
    st.integers().map(str),
    st.floats().map(json.dumps),  # NaN and Infinity come out as those tokens
    st.sampled_from(WRONG_TYPES),
    # Huge strings, some beyond the 1 MiB body limit.
    st.sampled_from([5_000, 100_000, 1_100_000]).map(lambda size: json.dumps("x" * size)),
)

RAW_BODIES = [
    b"",
    b"{",
    b"[1,]",
    b"{'stage': 'picking'}",
    b"\x00",
    b"\xff\xfe{}",
    b'{"stage": "\xed\xa0\x80"}',  # a surrogate encoded in UTF-8 bytes: not UTF-8
    b'{"stage": "\xc3"}',
    b"\xef\xbb\xbf{}",
    b'{"a": 1} trailing',
    b'"\\ud800"',
    b"[" * 100_000,
]

MARKER = "@@fragment@@"


def _places(value: Any, at: tuple = ()) -> list[tuple]:
    """Every place in `value` a fragment can go: the root, each member, and a new key in each object."""
    places = [at]
    if isinstance(value, dict):
        places.append((*at, None))  # a new key
        for key, member in value.items():
            places.extend(_places(member, (*at, key)))
    elif isinstance(value, list):
        for index, member in enumerate(value):
            places.extend(_places(member, (*at, index)))
    return places


def _with_fragment(template: Any, place: tuple, fragment: str, new_key: str) -> str:
    if not place:
        return fragment
    value = copy.deepcopy(template)
    parent = value
    for step in place[:-1]:
        parent = parent[step]
    parent[new_key if place[-1] is None else place[-1]] = MARKER
    return json.dumps(value).replace(json.dumps(MARKER), fragment, 1)


def hostile_json(template: Any) -> st.SearchStrategy[bytes]:
    """The template with one place replaced (or one key added) by a hostile fragment, or raw garbage."""
    mutated = st.builds(_with_fragment, st.just(template), st.sampled_from(_places(template)), fragments, hostile_text)
    mutated = mutated.map(lambda text: text.encode())
    return st.one_of(mutated, mutated, mutated, st.sampled_from(RAW_BODIES))  # mostly mutations


@contextlib.contextmanager
def production_recursion_limit() -> Iterator[None]:
    """Python's default recursion limit (1,000), which servers run with, for the duration.

    Hypothesis raises the limit while it runs an example, and that alone hides
    the RecursionError a 1,500-deep document raises in production.
    """
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def data_snapshot() -> dict[str, list]:
    """Every row an API write or a socket frame may change, to assert that a refused one changed none."""
    from django.contrib.auth.models import User
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

    def rows(model, *fields: str) -> list:
        return list(model.objects.order_by("pk").values_list(*fields))

    return {
        "orders": rows(Order),
        "items": rows(OrderItem),
        "events": rows(TrackingEvent, "id", "order_id", "kind", "stage", "status", "version", "client_id"),
        "riders": rows(Rider),
        "alerts": rows(Alert),
        "notifications": rows(Notification),
        "users": rows(User, "id", "username", "password", "email", "last_login", "is_active"),
        "outstanding_tokens": rows(OutstandingToken, "id"),
        "blacklisted_tokens": rows(BlacklistedToken, "id"),
    }
