"""The one personalization context every channel renders from (to be completed:
signed recovery URL, unique discount codes, store branding, declared defaults)."""

from typing import Any

from interventions.models import Cart
from stores.models import Shopper, Store


def build_context(
    *,
    store: Store,
    shopper: Shopper,
    cart: Cart | None,
    personalization: dict[str, Any],
    discount: dict[str, Any] | None,
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "store": {"name": store.name},
        "shopper": {
            "first_name": shopper.first_name,
            "segment": shopper.segment,
            "locale": shopper.locale,
        },
        "cart": {
            "items": cart.items if cart else [],
            "value": str(cart.value) if cart and cart.value is not None else "",
            "currency": cart.currency if cart else "",
        },
        "discount": discount or {},
    }
    context.update(personalization)
    return context
