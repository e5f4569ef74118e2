import secrets


def new_id() -> str:
    """A 32-character unguessable identifier (128 random bits, hex)."""
    return secrets.token_hex(16)
