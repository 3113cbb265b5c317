"""What a campaign's audience looks like right now, before launch (docs/campaigns.md)."""

from datetime import datetime
from typing import Any

from campaigns.audiences import audience_carts
from campaigns.models import Campaign

PREVIEW_SAMPLE = 5


def audience_preview(campaign: Campaign, now: datetime) -> dict[str, Any]:
    """How many shoppers the audience holds now, and a few of their ids (the store's own)."""
    shoppers = audience_carts(campaign.store, campaign.audience, now).values("shopper_id")
    size = shoppers.distinct().count()
    sample = list(
        audience_carts(campaign.store, campaign.audience, now)
        .order_by("shopper__external_id")
        .values_list("shopper__external_id", flat=True)
        .distinct()[:PREVIEW_SAMPLE]
    )
    return {"size": size, "sample_shopper_ids": sample, "computed_at": now}
