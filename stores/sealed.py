"""Sealed link tokens: what a link in a message names (a store, a cart, an intervention,
an address) encrypted and authenticated, so the link reveals nothing and cannot be
altered (docs/operations.md#link-tokens).

AES-256-GCM under a key derived from SECRET_KEY and the token's purpose, with the
purpose also bound as associated data: a recovery token opens nothing but a recovery
link, an unsubscribe token nothing but an unsubscribe. The issue time is sealed inside
and checked against the purpose's lifetime on the way in.

Why not a random id pointing at a row: links are minted while rendering (before the
intervention row exists, and in previews), so a row per link would be a write per
render, plus a table to prune. A sealed token needs neither and is about as short as
the signed tokens it replaces (signing.dumps put the ids in readable base64).

SECRET_KEY_FALLBACKS are tried on the way in, as Django's signing does, so rotating the
key does not break links already sent.
"""

import base64
import binascii
import hashlib
import hmac
import os
import struct
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

VERSION = b"\x01"
NONCE_BYTES = 12
ISSUED_AT = struct.Struct(">I")


class InvalidToken(Exception):
    """Tampered, sealed for another purpose or with an unknown key, or expired."""


def _key(secret: str, purpose: str) -> bytes:
    return hmac.new(
        secret.encode(), f"intervention-engine.sealed-link.{purpose}".encode(), hashlib.sha256
    ).digest()


def seal(purpose: str, payload: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    body = ISSUED_AT.pack(int(time.time())) + payload
    sealed = AESGCM(_key(settings.SECRET_KEY, purpose)).encrypt(
        nonce, body, VERSION + purpose.encode()
    )
    return base64.urlsafe_b64encode(VERSION + nonce + sealed).rstrip(b"=").decode()


def unseal(purpose: str, token: str, max_age_seconds: int) -> bytes:
    """The payload ``seal`` was given; raises ``InvalidToken``."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as bad:
        raise InvalidToken from bad
    if raw[:1] != VERSION or len(raw) < 1 + NONCE_BYTES + ISSUED_AT.size + 16:
        raise InvalidToken
    nonce, sealed = raw[1 : 1 + NONCE_BYTES], raw[1 + NONCE_BYTES :]
    for secret in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]:
        try:
            body = AESGCM(_key(secret, purpose)).decrypt(nonce, sealed, VERSION + purpose.encode())
        except InvalidTag:
            continue
        (issued_at,) = ISSUED_AT.unpack(body[: ISSUED_AT.size])
        if time.time() - issued_at > max_age_seconds:
            raise InvalidToken("expired")
        return body[ISSUED_AT.size :]
    raise InvalidToken


def looks_sealed(token: str) -> bool:
    """Tokens from before sealing (``django.core.signing``) always hold a ``:``; a sealed
    token is unpadded base64url and never does."""
    return ":" not in token
