"""What the decision engine is told: facts about the store, shopper, cart and history.

Plain data out (``interventions.decisions`` dataclasses), so the decisions stay pure.
"""

from collections.abc import Collection
from datetime import datetime, timedelta

from campaigns.models import Campaign
from interventions import decisions
from interventions.models import Cart, Intervention
from notifications.recipients import ADDRESSED_CHANNELS, Reachability, reachability
from realtime.registry import is_connected
from stores.models import Shopper, Store


def store_rules(store: Store) -> decisions.StoreRules:
    return decisions.StoreRules(
        timezone=store.timezone,
        probability_threshold=store.probability_threshold,
        quiet_hours_start=store.quiet_hours_start,
        quiet_hours_end=store.quiet_hours_end,
        frequency_cap_per_hour=store.frequency_cap_per_hour,
        channel_caps_per_day=store.channel_caps_per_day or {},
        fallback_chain=tuple(store.fallback_chain or ()),
    )


def shopper_facts(
    shopper: Shopper, channels: Collection[str] = decisions.ALL_CHANNELS
) -> decisions.ShopperFacts:
    """What the decision needs to know about the shopper, for ``channels`` only: an
    explicit email trigger does not pay for device, suppression or connection look-ups
    of other channels."""
    # Only ``auto`` chooses among channels, so only it asks the registry.
    connected = len(channels) > 1 and is_connected(str(shopper.store_id), shopper.external_id)
    return facts_from(shopper, reachability([shopper], channels), connected)


def facts_from(shopper: Shopper, reach: Reachability, connected: bool) -> decisions.ShopperFacts:
    """The decision's view of a shopper, from reachability fetched one by one or in bulk."""
    return decisions.ShopperFacts(
        timezone=shopper.timezone,
        segment=shopper.segment,
        channel_preferences=tuple(shopper.channel_preferences or ()),
        opted_out_channels=frozenset(shopper.opted_out_channels or ()),
        suppressed_channels=frozenset(
            channel for channel in ADDRESSED_CHANNELS if reach.is_suppressed(shopper, channel)
        ),
        reachable_channels=frozenset(
            channel for channel in decisions.ALL_CHANNELS if reach.address(shopper, channel)
        ),
        connected=connected,
    )


def cart_facts(cart: Cart | None) -> decisions.CartFacts:
    if cart is None:
        return decisions.CartFacts()
    return decisions.CartFacts(
        value=cart.value,
        converted=cart.converted,
        probability=cart.probability,
        recommended_action=cart.recommended_action,
        recommended_discount=cart.recommended_discount,
    )


def recent_history(shopper: Shopper, now: datetime) -> list[decisions.PastIntervention]:
    rows = Intervention.objects.filter(
        shopper=shopper, created_at__gt=now - timedelta(days=1)
    ).values_list("channel", "status", "created_at", "sent_at")
    return [
        decisions.PastIntervention(channel, status, sent_at or created_at)
        for channel, status, created_at, sent_at in rows
    ]


def campaign_rule(campaign: Campaign) -> decisions.CampaignRule:
    return decisions.CampaignRule(
        id=campaign.pk,
        name=campaign.name,
        trigger=campaign.trigger,
        channel=campaign.channel,
        delay_minutes=campaign.delay_minutes,
        template_key=campaign.template_key,
        priority=campaign.priority,
        min_cart_value=campaign.min_cart_value,
        max_cart_value=campaign.max_cart_value,
        segments=tuple(campaign.segments or ()),
        min_probability=campaign.min_probability,
        max_probability=campaign.max_probability,
    )


def arm_request(campaign: Campaign, arm: str) -> tuple[decisions.Request, dict[str, str] | None]:
    """What one arm of a campaign asks for, and its discount: the variant's channel,
    template, delay and discount where it sets them, the campaign's otherwise. The same for
    a triggered send and a scheduled run, so an arm means one thing in both."""
    variant = campaign.variant(arm) or {}
    channel = variant.get("channel") or campaign.channel
    request = decisions.Request(
        channel="auto" if channel == "all" else channel,
        explicit=False,
        template_key=variant.get("template_key") or campaign.template_key,
        delay_minutes=variant.get("delay_minutes", campaign.delay_minutes),
    )
    discount = (
        {"percent": str(variant["discount_percent"]), "source": "campaign"}
        if variant.get("discount_percent") is not None
        else None
    )
    return request, discount
