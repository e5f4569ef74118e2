"""Untrusted JSON in: REST bodies (the DRF parsers) and socket frames, under one set of limits.

Limits: nesting at most JSON_MAX_DEPTH deep, and the text rule: no NUL and no lone
surrogate in any string or key, because PostgreSQL cannot store the first
and no response can encode the second. Every breach is a 400 (or an error
frame) with a `detail` that names it, never an exception the server did not
expect. A module of its own, not xiaoxiang.api: DRF imports the default
parser while it defines APIView, which xiaoxiang.api imports.
"""

import json
import re
from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import JSONParser

TEXT_ERROR = "Text may not contain NUL (U+0000) or lone surrogate characters (U+D800 to U+DFFF)."
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_MAYBE_UNSTORABLE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])|[\x00\ud800-\udfff]")


class PayloadError(ValueError):
    """A JSON payload outside the limits; the message is the client's `detail`."""


def text_error(value: str) -> str | None:
    """The one text rule: TEXT_ERROR when `value` holds a NUL or a lone surrogate, else None."""
    return TEXT_ERROR if _UNSTORABLE.search(value) else None


def _refuse_constant(token: str) -> None:
    raise PayloadError(f"JSON parse error - {token} is not a JSON number.")


def _check_depth(value: Any, max_depth: int) -> None:
    # Level by level with an explicit list, not recursion: the point is to survive what recursion would not.
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise PayloadError(f"JSON nested deeper than {max_depth} levels.")
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]


def _check_text(value: Any) -> None:
    pending = [value]
    while pending:
        node = pending.pop()
        if isinstance(node, str):
            if text_error(node):
                raise PayloadError(TEXT_ERROR)
        elif isinstance(node, dict):
            pending.extend(node)  # the keys
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)


def json_decode(data: str | bytes, *, allow_nan: bool = False, check_text: bool = True) -> Any:
    """Decode untrusted JSON within JSON_MAX_DEPTH and (with `check_text`) the text rule; PayloadError otherwise.

    `allow_nan` lets the NaN/Infinity tokens through as floats, for callers
    that reject them value by value. The size limit is the caller's: Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE for HTTP bodies, WS_MAX_FRAME_BYTES for frames.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError("JSON parse error - the body is not UTF-8.") from None
    try:
        value = json.loads(data, parse_constant=None if allow_nan else _refuse_constant)
    except RecursionError:
        # The C decoder recurses per nesting level and gives up near Python's
        # recursion limit (~1,000), long after JSON_MAX_DEPTH.
        raise PayloadError(f"JSON nested deeper than {settings.JSON_MAX_DEPTH} levels.") from None
    except PayloadError:
        raise
    except ValueError as error:  # JSONDecodeError, or an integer over Python's 4,300-digit limit
        raise PayloadError(f"JSON parse error - {error}") from None
    _check_depth(value, settings.JSON_MAX_DEPTH)
    # Only \u escapes (or a str that already holds one) can put a NUL or a lone
    # surrogate into decoded text: one scan of the raw text spares most bodies the walk.
    if check_text and _MAYBE_UNSTORABLE.search(data):
        _check_text(value)
    return value


class JsonBodyParser(JSONParser):
    """DRF's JSON parser under the limits above (every REST endpoint's default parser).

    The body is at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes: DRF reads it
    through request.body, where Django enforces that (xiaoxiang.api answers 413).
    """

    allow_nan = False
    check_text = True

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            return json_decode(stream.read(), allow_nan=self.allow_nan, check_text=self.check_text)
        except PayloadError as error:
            raise exceptions.ParseError(str(error)) from None


class LenientJsonBodyParser(JsonBodyParser):
    """For GPS batches: NaN/Infinity tokens and bad text parse, so validation rejects just that
    point (with the same text rule) instead of failing the whole batch."""

    allow_nan = True
    check_text = False
