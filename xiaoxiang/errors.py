"""Domain errors raised by services of every app; xiaoxiang.api maps them to HTTP answers.

And the one error that is nobody's fault: the database unreachable.
"""

from typing import Any

from django.db import InterfaceError, OperationalError

# The database is down, restarting or dropped the connection: HTTP answers 503
# with Retry-After (xiaoxiang.middleware), sockets close with 1013, try again
# later (xiaoxiang.sockets). Not a 500: nothing is wrong with the request or
# the code, and the transaction rolled back, so nothing is half-written.
DATABASE_DOWN = (OperationalError, InterfaceError)
DATABASE_RETRY_AFTER_SECONDS = 5


class DomainError(Exception):
    status_code = 400

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def as_dict(self) -> dict[str, Any]:
        return {"detail": self.detail, **self.extra}


class InvalidInput(DomainError):
    """Bad input found by a service (unknown sku, ...): 400 with field errors."""

    status_code = 400


class NotFound(DomainError):
    """The object does not exist or the caller may not see it: both are 404."""

    status_code = 404

    def __init__(self, detail: str = "Not found.", **extra: Any) -> None:
        super().__init__(detail, **extra)


class Conflict(DomainError):
    """An illegal transition or a stale expected_version: 409 with the current version."""

    status_code = 409

    def __init__(self, detail: str, *, version: int) -> None:
        super().__init__(detail, version=version)
        self.version = version
