"""Encryption at rest for provider secrets (Fernet, MultiFernet for key rotation).

Keys come from ``settings.ENCRYPTION_KEYS``: the first one encrypts, every one
decrypts. Rotating is: put a new key first, run ``manage.py
rotate_encryption_keys`` (re-encrypts every stored secret with the new key),
then drop the old key from the environment.
"""

import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def _fernet() -> MultiFernet:
    return _multifernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt_json(data: dict) -> str:
    """Encrypt a JSON-serialisable dict; an empty dict is stored as ""."""
    if not data:
        return ""
    return _fernet().encrypt(json.dumps(data, sort_keys=True).encode()).decode()


def decrypt_json(token: str) -> dict:
    if not token:
        return {}
    try:
        return json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken:
        # Never include the token or key material in the message.
        raise DecryptionError(
            "stored secrets cannot be decrypted with the configured ARCHANGEL_ENCRYPTION_KEYS"
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt ``token`` with the primary key (no-op for "")."""
    if not token:
        return ""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "stored secrets cannot be decrypted with the configured ARCHANGEL_ENCRYPTION_KEYS"
        ) from None
