"""Bulk rows for experiments: exposures and checkouts in numbers the statistics can judge."""

from datetime import datetime, timedelta
from decimal import Decimal

from campaigns.models import Campaign, Exposure
from interventions.models import Cart
from stores.models import Shopper


def expose(
    campaign: Campaign, arm: str, shoppers: int, converted: int, at: datetime, prefix: str = ""
) -> None:
    """``shoppers`` exposed to ``arm`` at ``at``, the first ``converted`` of them checking out
    an hour later for 50.00."""
    tag = f"{prefix or arm}-{campaign.pk}"
    people = Shopper.objects.bulk_create(
        [Shopper(store=campaign.store, external_id=f"{tag}-{n}") for n in range(shoppers)]
    )
    Exposure.objects.bulk_create(
        [Exposure(campaign=campaign, shopper=who, arm=arm, exposed_at=at) for who in people]
    )
    Cart.objects.bulk_create(
        [
            Cart(
                store=campaign.store,
                shopper=who,
                external_id=f"cart-{tag}-{n}",
                value=Decimal("50.00"),
                converted_at=at + timedelta(hours=1),
                conversion_value=Decimal("50.00"),
            )
            for n, who in enumerate(people[:converted])
        ]
    )
