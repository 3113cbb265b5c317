"""A shopper's address on each channel."""

from notifications.models import Device
from stores.models import Shopper


def address_for(shopper: Shopper, channel: str) -> str | list[str] | None:
    """The address to send to, or None when the shopper cannot be reached on ``channel``."""
    if channel == "email":
        return shopper.email or None
    if channel == "sms":
        return shopper.phone or None
    if channel == "push":
        tokens = list(
            Device.objects.filter(shopper=shopper, active=True).values_list("token", flat=True)
        )
        return tokens or None
    if channel == "websocket":
        return shopper.external_id
    return None
