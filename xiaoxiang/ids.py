import re
import secrets

# Every order id is new_id()'s 32 hex characters; anything else cannot name an
# order, a channel-layer group or a cache key (and a NUL byte would not even
# reach PostgreSQL).
ORDER_ID_PATTERN = re.compile(r"[0-9a-f]{32}")


def new_id() -> str:
    """A 32-character unguessable identifier (128 random bits, hex)."""
    return secrets.token_hex(16)


def order_id_valid(order_id: str) -> bool:
    """The one order-id rule, used by every order-scoped view, socket and poll."""
    return bool(ORDER_ID_PATTERN.fullmatch(order_id))
