"""One-click unsubscribe links, sealed (``stores.sealed``) by the app that serves them
(``notifications.views.unsubscribe``): the store and address are encrypted, the token
opens nothing else, and it expires after UNSUBSCRIBE_LINK_MAX_AGE_DAYS
(docs/operations.md#link-tokens). Tokens signed before sealing (address in readable
base64) keep working for the same lifetime, counted from when they were signed.
"""

import uuid
from typing import Any

from django.conf import settings
from django.core import signing

from stores import sealed

UNSUBSCRIBE_SALT = "email-unsubscribe"


class InvalidLink(Exception):
    """Tampered, for another purpose, or expired."""


def unsubscribe_url(store_id: Any, email: str) -> str:
    payload = uuid.UUID(str(store_id)).bytes + email.lower().encode()
    return f"{settings.PUBLIC_BASE_URL}/unsubscribe/{sealed.seal(UNSUBSCRIBE_SALT, payload)}"


def read_unsubscribe_token(token: str) -> tuple[str, str]:
    """(store id, email); raises ``InvalidLink``. CAN-SPAM asks that an opt-out link
    work for 30 days at least; the default lifetime is well beyond that."""
    max_age = settings.UNSUBSCRIBE_LINK_MAX_AGE_DAYS * 24 * 3600
    try:
        if not sealed.looks_sealed(token):
            data = signing.loads(token, salt=UNSUBSCRIBE_SALT, max_age=max_age)
            return str(data["s"]), str(data["a"])
        payload = sealed.unseal(UNSUBSCRIBE_SALT, token, max_age)
        return str(uuid.UUID(bytes=payload[:16])), payload[16:].decode()
    except (sealed.InvalidToken, signing.BadSignature, KeyError, TypeError, ValueError) as bad:
        raise InvalidLink from bad
