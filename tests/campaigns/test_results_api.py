"""GET /api/v1/campaigns/{id}/results: counts that reconcile exactly with the rows."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from campaigns.models import Campaign, CampaignStatus, Exposure
from interventions.models import Cart
from stores.actions import do_upsert_shopper

pytestmark = pytest.mark.django_db

EXPOSED = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def experiment(shop):
    campaign = Campaign.objects.create(
        store=shop.store,
        name="Comeback",
        trigger="cart_abandoned",
        channel="email",
        status=CampaignStatus.RUNNING,
        launched_at=EXPOSED - timedelta(days=1),
        variants=[{"key": "control", "weight": 50}, {"key": "ten_off", "weight": 50}],
        holdout_percent=10,
    )

    def shopper(user_id, arm, *checkouts):
        who = do_upsert_shopper(shop.store, user_id)
        Exposure.objects.create(campaign=campaign, shopper=who, arm=arm, exposed_at=EXPOSED)
        for index, (hours_after, value) in enumerate(checkouts):
            Cart.objects.create(
                store=shop.store,
                shopper=who,
                external_id=f"{user_id}-{index}",
                value=Decimal(value),
                converted_at=EXPOSED + timedelta(hours=hours_after),
                conversion_value=Decimal(value),
            )

    shopper("a", "control", (1, "100.00"))
    shopper("b", "control", (73, "40.00"))  # after the 72 h window
    shopper("c", "control", (-1, "25.00"))  # bought before being exposed
    shopper("d", "control")
    shopper("e", "ten_off", (71, "50.00"), (2, "30.00"))  # two checkouts: one conversion
    shopper("f", "ten_off", (72, "20.00"))  # exactly at the window's end
    shopper("g", "holdout", (5, "10.00"))
    return campaign


def results(shop, campaign):
    response = shop.client.get(f"/api/v1/campaigns/{campaign.pk}/results")
    assert response.status_code == 200, response.content
    return response.json()


def test_exposures_and_conversions_per_arm_reconcile_with_the_rows(shop, experiment):
    document = results(shop, experiment)

    assert [
        (v["key"], v["exposures"], v["conversions"], v["revenue"]) for v in document["variants"]
    ] == [("control", 4, 1, "100.00"), ("ten_off", 2, 2, "100.00")]
    holdout = document["holdout"]
    assert (holdout["exposures"], holdout["conversions"], holdout["revenue"]) == (1, 1, "10.00")
    total = sum(v["exposures"] for v in document["variants"]) + holdout["exposures"]
    assert total == Exposure.objects.filter(campaign=experiment).count()
    assert document["control"] == "control"
    assert document["attribution_window_hours"] == 72
    assert document["variants"][0]["conversion_rate"] == 0.25
    assert document["decision"]["status"] == "collecting"
    assert set(document) >= {"goal", "srm", "variants", "holdout", "decision"}


def test_a_shorter_attribution_window_counts_fewer_conversions(shop, experiment):
    experiment.attribution_window_hours = 2
    experiment.save()

    document = results(shop, experiment)

    assert [(v["key"], v["conversions"], v["revenue"]) for v in document["variants"]] == [
        ("control", 1, "100.00"),
        ("ten_off", 1, "30.00"),
    ]
    assert document["holdout"]["conversions"] == 0


def test_a_campaign_without_variants_has_no_results(shop):
    plain = Campaign.objects.create(
        store=shop.store, name="Plain", trigger="cart_abandoned", channel="email"
    )

    response = shop.client.get(f"/api/v1/campaigns/{plain.pk}/results")

    assert response.status_code == 409
    assert "no variants" in response.json()["error"]["message"]
