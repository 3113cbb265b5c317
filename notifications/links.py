"""One-click unsubscribe links: signed by the app that serves them
(``notifications.views.unsubscribe``)."""

from typing import Any

from django.conf import settings
from django.core import signing

UNSUBSCRIBE_SALT = "email-unsubscribe"


def unsubscribe_url(store_id: Any, email: str) -> str:
    token = signing.dumps({"s": str(store_id), "a": email.lower()}, salt=UNSUBSCRIBE_SALT)
    return f"{settings.PUBLIC_BASE_URL}/unsubscribe/{token}"


def read_unsubscribe_token(token: str) -> tuple[str, str]:
    """(store id, email); raises ``signing.BadSignature``. No expiry: an old email's
    unsubscribe link must keep working (CAN-SPAM asks for 30 days at least)."""
    data = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    return data["s"], data["a"]
