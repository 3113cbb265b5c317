"""Signed links served by this app (``tracking.views``): recovery links and open pixels."""

from typing import Any

from django.conf import settings
from django.core import signing

RECOVERY_SALT = "cart-recovery"
OPEN_PIXEL_SALT = "open-pixel"


def recovery_url(store_id: Any, cart_external_id: str, intervention_id: Any = None) -> str:
    payload = {"s": str(store_id), "c": cart_external_id}
    if intervention_id:
        payload["i"] = str(intervention_id)
    token = signing.dumps(payload, salt=RECOVERY_SALT)
    return f"{settings.PUBLIC_BASE_URL}/r/{token}"


def read_recovery_token(token: str, max_age_seconds: int = 30 * 24 * 3600) -> tuple[str, str, str]:
    """(store id, cart external id, intervention id or ""); raises ``signing.BadSignature``."""
    data = signing.loads(token, salt=RECOVERY_SALT, max_age=max_age_seconds)
    return data["s"], data["c"], data.get("i", "")


def open_pixel_url(intervention_id: Any) -> str:
    """The 1x1 image an email loads when it is displayed: an open of that intervention."""
    token = signing.Signer(salt=OPEN_PIXEL_SALT).sign(str(intervention_id))
    return f"{settings.PUBLIC_BASE_URL}/o/{token}.gif"


def read_open_pixel_token(token: str) -> str:
    """The intervention id; raises ``signing.BadSignature``. No expiry: people open
    old emails, and an open is worth recording whenever it comes."""
    return signing.Signer(salt=OPEN_PIXEL_SALT).unsign(token)
