"""Domain errors raised by services of every app; xiaoxiang.api maps them to HTTP answers."""

from typing import Any


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
