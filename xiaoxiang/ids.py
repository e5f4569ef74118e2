import re
import secrets

# The one order-id rule: every order id is new_id()'s 32 hex characters, and
# anything else cannot name an order, a channel-layer group or a cache key (a
# NUL byte would not even reach PostgreSQL). Order-scoped routes apply it
# through the `order_id` URL converter (xiaoxiang.converters).
ORDER_ID_PATTERN = re.compile(r"[0-9a-f]{32}")


def new_id() -> str:
    """A 32-character unguessable identifier (128 random bits, hex)."""
    return secrets.token_hex(16)
