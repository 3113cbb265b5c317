"""Links served by this app (``tracking.views``): recovery links and open pixels.

Their tokens are sealed (``stores.sealed``): the store, cart and intervention they name
are encrypted, bound to their purpose, and expire (docs/operations.md#link-tokens).
Tokens signed before sealing (readable, ``django.core.signing``) keep working until
their own expiry; the readers for them can go once the longest lifetime has passed
after the deploy.
"""

import uuid
from typing import Any

from django.conf import settings
from django.core import signing

from stores import sealed

RECOVERY_SALT = "cart-recovery"
OPEN_PIXEL_SALT = "open-pixel"
# What the signed recovery tokens of before promised (read_recovery_token's old default).
LEGACY_RECOVERY_MAX_AGE_SECONDS = 30 * 24 * 3600
NO_INTERVENTION = uuid.UUID(int=0)


class InvalidLink(Exception):
    """Tampered, for another purpose, or expired."""


def recovery_url(store_id: Any, cart_external_id: str, intervention_id: Any = None) -> str:
    payload = (
        uuid.UUID(str(store_id)).bytes
        + (uuid.UUID(str(intervention_id)) if intervention_id else NO_INTERVENTION).bytes
        + cart_external_id.encode()
    )
    return f"{settings.PUBLIC_BASE_URL}/r/{sealed.seal(RECOVERY_SALT, payload)}"


def read_recovery_token(token: str) -> tuple[str, str, str]:
    """(store id, cart external id, intervention id or ""); raises ``InvalidLink``."""
    if not sealed.looks_sealed(token):
        return _read_signed_recovery_token(token)
    try:
        payload = sealed.unseal(
            RECOVERY_SALT, token, settings.RECOVERY_LINK_MAX_AGE_DAYS * 24 * 3600
        )
        store_id, intervention_id = uuid.UUID(bytes=payload[:16]), uuid.UUID(bytes=payload[16:32])
        cart_id = payload[32:].decode()
    except (sealed.InvalidToken, ValueError) as invalid:
        raise InvalidLink from invalid
    return (
        str(store_id),
        cart_id,
        "" if intervention_id == NO_INTERVENTION else str(intervention_id),
    )


def _read_signed_recovery_token(token: str) -> tuple[str, str, str]:
    try:
        data = signing.loads(token, salt=RECOVERY_SALT, max_age=LEGACY_RECOVERY_MAX_AGE_SECONDS)
        return str(data["s"]), str(data["c"]), str(data.get("i", ""))
    except (signing.BadSignature, KeyError, TypeError) as invalid:
        raise InvalidLink from invalid


def open_pixel_url(intervention_id: Any) -> str:
    """The 1x1 image an email loads when it is displayed: an open of that intervention."""
    token = sealed.seal(OPEN_PIXEL_SALT, uuid.UUID(str(intervention_id)).bytes)
    return f"{settings.PUBLIC_BASE_URL}/o/{token}.gif"


def read_open_pixel_token(token: str) -> tuple[uuid.UUID, bool]:
    """(intervention id, whether the token is a signed one from before sealing); raises
    ``InvalidLink``. Signed pixel tokens carry no issue time: the caller applies the
    lifetime to the intervention's age instead."""
    try:
        if not sealed.looks_sealed(token):
            return uuid.UUID(signing.Signer(salt=OPEN_PIXEL_SALT).unsign(token)), True
        payload = sealed.unseal(
            OPEN_PIXEL_SALT, token, settings.OPEN_PIXEL_MAX_AGE_DAYS * 24 * 3600
        )
        return uuid.UUID(bytes=payload), False
    except (sealed.InvalidToken, signing.BadSignature, ValueError) as invalid:
        raise InvalidLink from invalid
