"""The shape of the context templates render with (docs/templates.md); the engine fills it
in (``interventions.actions.personalization``), previews use ``sample_context``.

Shape (every key always present, so a template never meets a hole it was not told about):

    store:    {name}
    shopper:  {first_name, segment, locale}
    cart:     {items: [{name, quantity, price, ...}], item_count, value, currency, recovery_url}
    discount: {percent, code}            # percent "" and code "" when there is no discount
    unsubscribe_url                      # one-click email opt-out for this shopper
    + the caller's personalization (top-level names a template declares as variables)

Only plain data goes in (str, numbers, lists, dicts): the sandbox reads mappings only.
"""

from decimal import Decimal
from typing import Any

from django.conf import settings

STANDARD_ROOTS = frozenset(
    {"store", "shopper", "cart", "discount", "unsubscribe_url", "open_pixel_url"}
)


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
        "open_pixel_url": f"{settings.PUBLIC_BASE_URL}/o/sample.gif",
    }
