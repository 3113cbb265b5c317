"""The one personalization context every channel renders from (docs/templates.md).

Shape (every key always present, so a template never meets a hole it was not told about):

    store:    {name}
    shopper:  {first_name, segment, locale}
    cart:     {items: [{name, quantity, price, ...}], item_count, value, currency, recovery_url}
    discount: {percent, code}            # percent "" and code "" when there is no discount
    unsubscribe_url                      # one-click email opt-out for this shopper
    open_pixel_url                       # 1x1 image recording an email open ("" in previews)
    + the caller's personalization (top-level names a template declares as variables)

Only plain data goes in (str, numbers, lists, dicts): the sandbox reads mappings only.
Links are sealed by the apps that serve them (tracking, notifications).
"""

import hashlib
import hmac
from typing import Any

from django.conf import settings

from campaigns.models import Campaign
from interventions.models import Cart
from notifications.links import unsubscribe_url
from stores.models import Shopper, Store
from templates.context import STANDARD_ROOTS, format_amount, plain
from templates.rendering import render_message
from tracking.links import open_pixel_url, recovery_url

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
        "open_pixel_url": open_pixel_url(intervention_id) if intervention_id else "",
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


def discount_for(cart: Cart | None, campaign: Campaign | None) -> dict[str, Any] | None:
    if campaign is not None and campaign.discount_percent is not None:
        return {"percent": str(campaign.discount_percent), "source": "campaign"}
    if cart is not None and cart.recommended_discount is not None:
        return {"percent": str(cart.recommended_discount), "source": "prediction"}
    return None


def render_for(
    store: Store,
    shopper: Shopper,
    cart: Cart | None,
    channel: str,
    template_key: str,
    personalization: dict[str, Any],
    discount: dict[str, Any] | None,
    intervention_id: Any = None,
) -> tuple[Any, dict[str, Any]]:
    context = build_context(
        store=store,
        shopper=shopper,
        cart=cart,
        personalization=personalization,
        discount=discount,
        intervention_id=intervention_id,
    )
    return render_message(store.pk, template_key, channel, context, shopper.locale)
