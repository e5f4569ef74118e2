"""Field encryption at rest with MultiFernet (FIELD_ENCRYPTION_KEYS, newest first)."""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt_text(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt_text(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("encrypted value cannot be decrypted with FIELD_ENCRYPTION_KEYS") from None


def rotate_token(token: str) -> str:
    """Re-encrypt a token under the newest key."""
    return fernet().rotate(token.encode()).decode()


class EncryptedTextField(models.TextField):
    """A text column stored as a Fernet token; the model sees plaintext."""

    def from_db_value(self, value, expression, connection):
        if value is None:
            return value
        return decrypt_text(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None:
            return value
        return encrypt_text(str(value))


class EncryptedFloatField(EncryptedTextField):
    """A float stored as a Fernet token of its decimal text."""

    def from_db_value(self, value, expression, connection):
        value = super().from_db_value(value, expression, connection)
        return None if value is None else float(value)

    def to_python(self, value):
        if value is None or isinstance(value, float):
            return value
        return float(value)

    def get_prep_value(self, value):
        if value is None:
            return None
        return encrypt_text(repr(float(value)))

    def formfield(self, **kwargs):
        from django import forms

        return forms.FloatField(**{"required": not self.blank, **kwargs})
