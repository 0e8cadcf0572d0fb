"""Sealed responses: what ``sensitive=True`` stores, readable only with the key.

A response marked sensitive (a new API key, a reset link) is stored as one
AES-256-GCM envelope holding its headers and body. The encryption key is
derived (HKDF-SHA256) from ``SECRET_KEY`` and the idempotency key itself,
which the store never keeps (it keeps a keyed digest, ``keys.digest``). So
neither the admin, nor a database dump, nor someone holding ``SECRET_KEY``
without the idempotency key can read or replay it; a retry presenting the key
can. The record's scope is bound in as associated data: an envelope copied
into another scope does not open.

Layout (all integers big-endian)::

    b"IDS1" | nonce (12 bytes) | AES-GCM ciphertext+tag of:
        uint32 length of H | H = JSON object of headers | body bytes
"""

from __future__ import annotations

import json
import os
import struct

from django.conf import settings

from idempotency.stores import StoredResponse

MAGIC = b"IDS1"
NONCE_BYTES = 12
_SALT = b"django-idempotency.sensitive"
INSTALL_HINT = "pip install 'django-idempotency[encryption]'"


class SealError(Exception):
    """An envelope that does not open with this key (altered, or another secret)."""


def available() -> bool:
    try:
        import cryptography.hazmat.primitives.ciphers.aead  # noqa: F401
    except ImportError:
        return False
    return True


def seal(response: StoredResponse, key: str, scope: str) -> StoredResponse:
    """``response`` encrypted under ``key``: empty headers, the envelope as body."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    body = response.body or b""
    headers = json.dumps(response.headers).encode()
    plaintext = struct.pack(">I", len(headers)) + headers + body
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(_derive(key, scope, settings.SECRET_KEY)).encrypt(
        nonce, plaintext, scope.encode()
    )
    return StoredResponse(response.status, {}, MAGIC + nonce + sealed, sensitive=True)


def open_sealed(response: StoredResponse, key: str, scope: str) -> StoredResponse:
    """The response inside an envelope; tries ``SECRET_KEY_FALLBACKS`` too."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    envelope = response.body or b""
    if not envelope.startswith(MAGIC):
        raise SealError("not a sealed response")
    nonce = envelope[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    sealed = envelope[len(MAGIC) + NONCE_BYTES :]
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())]
    for secret in secrets:
        try:
            plaintext = AESGCM(_derive(key, scope, secret)).decrypt(nonce, sealed, scope.encode())
        except InvalidTag:
            continue
        (length,) = struct.unpack(">I", plaintext[:4])
        headers = json.loads(plaintext[4 : 4 + length])
        return StoredResponse(response.status, headers, plaintext[4 + length :])
    raise SealError("the sealed response does not open with this key")


def _derive(key: str, scope: str, secret: str | bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    material = secret if isinstance(secret, bytes) else secret.encode()
    info = scope.encode() + b"\x00" + key.encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info).derive(material)
