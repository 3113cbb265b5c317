"""What a campaign may say: one check for the API serializer and the admin form alike."""

import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError

from campaigns.actions.scheduling import check_schedule
from campaigns.audiences import check_audience
from campaigns.budgets import check_channel_costs
from campaigns.experiments.assignment import Arm, InvalidAllocation, validate_allocation
from campaigns.models import AllocationMode, CampaignChannel
from interventions.actions import check_template
from stores.models import Store

VARIANT_FIELDS = frozenset(
    {"key", "weight", "template_key", "channel", "discount_percent", "delay_minutes"}
)
MAX_VARIANTS = 10
MAX_VARIANT_KEY_LENGTH = 64
RANGES = (("min_cart_value", "max_cart_value"), ("min_probability", "max_probability"))


def check_campaign(store: Store, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Raise ``ValidationError({field: [message]})`` naming the first problem found.

    ``values`` is the campaign as it would be saved (current fields with the changes
    applied). Variant errors name ``variants.<index>.<field>``. Returns the variants in
    their stored shape (weights as numbers, discounts as strings).
    """
    check_template(store, values.get("template_key") or "", field="template_key")
    check_targeting(values)
    for low, high in RANGES:
        if (
            values.get(low) is not None
            and values.get(high) is not None
            and values[low] > values[high]
        ):
            raise ValidationError({low: [f"Must not exceed {high}."]})
    starts_at, ends_at = values.get("starts_at"), values.get("ends_at")
    if starts_at is not None and ends_at is not None and starts_at >= ends_at:
        raise ValidationError({"ends_at": ["Must be after starts_at."]})
    variants = [
        check_variant(store, index, v) for index, v in enumerate(values.get("variants") or [])
    ]
    holdout = float(values.get("holdout_percent") or 0.0)
    if not variants:
        if holdout:
            raise ValidationError({"holdout_percent": ["A holdout needs variants to compare."]})
        if values.get("mode") == AllocationMode.BANDIT:
            raise ValidationError({"mode": ["A bandit needs at least two variants."]})
        if values.get("auto_promote"):
            raise ValidationError({"auto_promote": ["Auto-promotion needs variants to compare."]})
        return []
    if len(variants) > MAX_VARIANTS:
        raise ValidationError({"variants": [f"At most {MAX_VARIANTS} variants."]})
    check_optimisation(values, len(variants))
    try:
        validate_allocation([Arm(v["key"], float(v["weight"])) for v in variants], holdout)
    except InvalidAllocation as exc:
        # assignment names arms "arms[0].key"; the API calls them "variants.0.key".
        field = re.sub(r"arms\[(\d+)\]", r"variants.\1", exc.field).replace("arms", "variants")
        raise ValidationError({field: [exc.problem[:1].upper() + exc.problem[1:] + "."]}) from exc
    return variants


def check_variant(store: Store, index: int, variant: Any) -> dict[str, Any]:
    prefix = f"variants.{index}"
    if not isinstance(variant, Mapping):
        raise ValidationError({prefix: ["Must be an object with a key and a weight."]})
    unknown = sorted(set(variant) - VARIANT_FIELDS)
    if unknown:
        raise ValidationError({f"{prefix}.{unknown[0]}": ["Unknown field."]})
    key = variant.get("key")
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_VARIANT_KEY_LENGTH:
        raise ValidationError(
            {f"{prefix}.key": [f"Must be a non-empty text of at most {MAX_VARIANT_KEY_LENGTH}."]}
        )
    weight = variant.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
        raise ValidationError({f"{prefix}.weight": ["Must be a number (percent)."]})
    # Floats, so a weight typed as 50 and one sent as 50.0 compare equal on the next edit.
    clean: dict[str, Any] = {"key": key, "weight": float(weight)}
    return clean | check_overrides(store, prefix, variant)


def check_overrides(store: Store, prefix: str, variant: Mapping[str, Any]) -> dict[str, Any]:
    """A variant's own template, channel, discount and delay (each optional)."""
    clean: dict[str, Any] = {}
    if variant.get("template_key"):
        check_template(store, str(variant["template_key"]), field=f"{prefix}.template_key")
        clean["template_key"] = str(variant["template_key"])
    if variant.get("channel"):
        if variant["channel"] not in CampaignChannel.values:
            raise ValidationError(
                {f"{prefix}.channel": [f"Must be one of {', '.join(CampaignChannel.values)}."]}
            )
        clean["channel"] = variant["channel"]
    if variant.get("discount_percent") is not None:
        try:
            percent = Decimal(str(variant["discount_percent"]))
        except InvalidOperation:
            percent = Decimal(-1)
        if not Decimal(0) <= percent <= Decimal(100):
            raise ValidationError({f"{prefix}.discount_percent": ["Must be between 0 and 100."]})
        clean["discount_percent"] = str(percent)
    if variant.get("delay_minutes") is not None:
        delay = variant["delay_minutes"]
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise ValidationError({f"{prefix}.delay_minutes": ["Must be a whole number ≥ 0."]})
        clean["delay_minutes"] = delay
    return clean


def check_targeting(values: Mapping[str, Any]) -> None:
    """Audience, schedule and budgets: ``ValidationError`` naming the field."""
    check_audience(values.get("audience"))
    check_schedule(dict(values))
    try:
        check_channel_costs(values.get("budget_channel_costs"))
    except ValueError as exc:
        field, problem = exc.args
        raise ValidationError({field: [problem]}) from exc


def check_optimisation(values: Mapping[str, Any], arms: int) -> None:
    """Bandit mode and auto-promotion: one optimises the split, the other ends a test."""
    mode = values.get("mode") or AllocationMode.TEST
    if mode not in AllocationMode.values:
        raise ValidationError({"mode": [f"Must be one of {', '.join(AllocationMode.values)}."]})
    if mode != AllocationMode.BANDIT:
        return
    if arms < 2:
        raise ValidationError({"mode": ["A bandit needs at least two variants."]})
    if values.get("auto_promote"):
        raise ValidationError(
            {
                "auto_promote": [
                    "A bandit already moves traffic to the best arm: use one or the other."
                ]
            }
        )
    floor = values.get("bandit_floor_percent")
    if floor is not None and not 0 < float(floor) <= 100.0 / arms:
        raise ValidationError(
            {
                "bandit_floor_percent": [
                    f"Must be above 0 and at most {100.0 / arms:g} for {arms} arms."
                ]
            }
        )
