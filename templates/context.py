"""The one personalization context every channel renders from (docs/templates.md).

Shape (every key always present, so a template never meets a hole it was not told about):

    store:    {name}
    shopper:  {first_name, segment, locale}
    cart:     {items: [{name, quantity, price, ...}], item_count, value, currency, recovery_url}
    discount: {percent, code}            # percent "" and code "" when there is no discount
    unsubscribe_url                      # one-click email opt-out for this shopper
    + the caller's personalization (top-level names a template declares as variables)

Only plain data goes in (str, numbers, lists, dicts): the sandbox reads mappings only.
"""

import hashlib
import hmac
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core import signing

from interventions.models import Cart
from stores.models import Shopper, Store

RECOVERY_SALT = "cart-recovery"
UNSUBSCRIBE_SALT = "email-unsubscribe"
STANDARD_ROOTS = frozenset({"store", "shopper", "cart", "discount", "unsubscribe_url"})
# Discount codes avoid look-alike characters (0/O, 1/I) people retype from their phone.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def build_context(
    *,
    store: Store,
    shopper: Shopper,
    cart: Cart | None,
    personalization: dict[str, Any],
    discount: dict[str, Any] | None,
    intervention_id: Any = None,
) -> dict[str, Any]:
    """``intervention_id`` (minted before the row exists) goes into the recovery link, so
    a click on it is recorded against the intervention that carried it."""
    context: dict[str, Any] = {
        "store": {"name": store.name},
        "shopper": {
            "first_name": shopper.first_name,
            "segment": shopper.segment,
            "locale": shopper.locale,
        },
        "cart": cart_context(store, cart, intervention_id),
        "discount": discount_context(discount),
        "unsubscribe_url": unsubscribe_url(store.pk, shopper.email) if shopper.email else "",
    }
    for name, value in personalization.items():
        # Personalization adds names; it cannot replace the store's or the cart's facts.
        if name not in STANDARD_ROOTS:
            context[name] = plain(value)
    return context


def cart_context(store: Store, cart: Cart | None, intervention_id: Any = None) -> dict[str, Any]:
    if cart is None:
        return {"items": [], "item_count": 0, "value": "", "currency": "", "recovery_url": ""}
    items = [plain(item) for item in (cart.items or []) if isinstance(item, dict)]
    return {
        "items": items,
        "item_count": sum(int(item.get("quantity") or 1) for item in items),
        "value": format_amount(cart.value),
        "currency": cart.currency,
        "recovery_url": recovery_url(store.pk, cart.external_id, intervention_id),
    }


def discount_context(discount: dict[str, Any] | None) -> dict[str, Any]:
    """``discount`` comes from the prediction's recommended discount or the campaign:
    ``{"percent": 10, "code": "SAVE10"}``, or ``{"percent": 10, "unique_code_for":
    <intervention id>, "prefix": "SAVE"}`` for a code unique to the intervention."""
    discount = discount or {}
    percent = discount.get("percent")
    code = str(discount.get("code") or "")
    if not code and discount.get("unique_code_for"):
        # The caller passes the intervention's id (a UUID it can mint before the row exists).
        code = unique_discount_code(discount["unique_code_for"], str(discount.get("prefix") or ""))
    return {
        "percent": format_amount(percent) if percent not in (None, "") else "",
        "code": code,
    }


def unique_discount_code(intervention_id: Any, prefix: str = "") -> str:
    """A code unique to one intervention, derivable again from its id (no table needed):
    the store's checkout can recompute it to validate."""
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"discount:{intervention_id}".encode(), hashlib.sha256
    ).digest()
    body = "".join(CODE_ALPHABET[b % len(CODE_ALPHABET)] for b in digest[:8])
    return f"{prefix.upper()}-{body}" if prefix else body


def recovery_url(store_id: Any, cart_external_id: str, intervention_id: Any = None) -> str:
    payload = {"s": str(store_id), "c": cart_external_id}
    if intervention_id:
        payload["i"] = str(intervention_id)
    token = signing.dumps(payload, salt=RECOVERY_SALT)
    return f"{settings.PUBLIC_BASE_URL}/r/{token}"


def read_recovery_token(token: str, max_age_seconds: int = 30 * 24 * 3600) -> tuple[str, str, str]:
    """(store id, cart external id, intervention id or "") from a recovery link (served
    by ``tracking.views.recover``); raises ``signing.BadSignature``."""
    data = signing.loads(token, salt=RECOVERY_SALT, max_age=max_age_seconds)
    return data["s"], data["c"], data.get("i", "")


def unsubscribe_url(store_id: Any, email: str) -> str:
    token = signing.dumps({"s": str(store_id), "a": email.lower()}, salt=UNSUBSCRIBE_SALT)
    return f"{settings.PUBLIC_BASE_URL}/unsubscribe/{token}"


def read_unsubscribe_token(token: str) -> tuple[str, str]:
    """(store id, email); raises ``signing.BadSignature``. No expiry: an old email's
    unsubscribe link must keep working (CAN-SPAM asks for 30 days at least)."""
    data = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    return data["s"], data["a"]


def format_amount(value: Any) -> str:
    if value is None or value == "":
        return ""
    amount = Decimal(str(value))
    return f"{amount:.2f}" if amount != amount.to_integral_value() else f"{amount:.0f}"


def plain(value: Any) -> Any:
    """JSON-like data only, so nothing with methods or internals reaches a template."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Decimal):
        return format_amount(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def sample_context(store_name: str = "Acme Outdoor") -> dict[str, Any]:
    """What previews and validation render with when no context is given."""
    return {
        "store": {"name": store_name},
        "shopper": {"first_name": "Alex", "segment": "returning", "locale": "en"},
        "cart": {
            "items": [
                {"name": "Trail shoes", "quantity": 1, "price": "89.90"},
                {"name": "Wool socks", "quantity": 2, "price": "12"},
            ],
            "item_count": 3,
            "value": "113.90",
            "currency": "EUR",
            "recovery_url": f"{settings.PUBLIC_BASE_URL}/r/sample",
        },
        "discount": {"percent": "10", "code": "SAVE10"},
        "unsubscribe_url": f"{settings.PUBLIC_BASE_URL}/unsubscribe/sample",
    }
