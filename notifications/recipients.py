"""Where a shopper can be reached: the one address and reachability look-up.

The decision (which channels are reachable), the send-time check (is the address still
allowed) and the sender (which address, which device tokens) all read it from here, for
one shopper or for a whole batch in two queries.
"""

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from notifications.models import Device, Suppression
from stores.models import Shopper

ADDRESSED_CHANNELS = ("email", "sms")


def contact_address(shopper: Shopper, channel: str) -> str:
    """The shopper's own address on ``channel`` ("" when there is none); push has
    devices instead (``Reachability.address``)."""
    if channel == "email":
        return shopper.email
    if channel == "sms":
        return shopper.phone
    if channel == "websocket":
        return shopper.external_id
    return ""


@dataclass(frozen=True)
class Reachability:
    push_tokens: dict[Any, list[str]]  # shopper id → active device tokens
    suppressed: frozenset[tuple[Any, str, str]]  # (store id, channel, address)

    def address(self, shopper: Shopper, channel: str) -> str | list[str] | None:
        if channel == "push":
            return self.push_tokens.get(shopper.pk) or None
        return contact_address(shopper, channel) or None

    def is_suppressed(self, shopper: Shopper, channel: str) -> bool:
        address = contact_address(shopper, channel) if channel in ADDRESSED_CHANNELS else ""
        return bool(address) and (shopper.store_id, channel, address) in self.suppressed


def reachability(
    shoppers: Iterable[Shopper], channels: Collection[str] = ("email", "sms", "push")
) -> Reachability:
    """Devices and suppressions of ``shoppers``, only for ``channels``: an explicit email
    trigger does not pay for a device look-up."""
    shoppers = list(shoppers)
    push_tokens: dict[Any, list[str]] = {}
    if "push" in channels and shoppers:
        # Unordered: the models' default orderings go through the store and joined
        # stores_store into a read that needs no order.
        for shopper_id, token in (
            Device.objects.filter(shopper__in=shoppers, active=True)
            .order_by()
            .values_list("shopper_id", "token")
        ):
            push_tokens.setdefault(shopper_id, []).append(token)
    addresses = {
        address
        for shopper in shoppers
        for channel in ADDRESSED_CHANNELS
        if channel in channels and (address := contact_address(shopper, channel))
    }
    suppressed: frozenset[tuple[Any, str, str]] = frozenset()
    if addresses:
        suppressed = frozenset(
            Suppression.objects.filter(
                store_id__in={s.store_id for s in shoppers}, address__in=addresses
            )
            .order_by()
            .values_list("store_id", "channel", "address")
        )
    return Reachability(push_tokens, suppressed)
