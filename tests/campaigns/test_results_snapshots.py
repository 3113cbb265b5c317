"""Results are snapshots: beat and POST .../results/refresh compute them, GET serves the newest."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, ResultSnapshot
from campaigns.tasks import refresh_all_campaign_results
from tests.campaigns.experiment_rows import expose

pytestmark = pytest.mark.django_db

SPLIT = [{"key": "control", "weight": 50}, {"key": "b", "weight": 50}]


def experiment(shop, status=CampaignStatus.RUNNING, name="Comeback") -> Campaign:
    return Campaign.objects.create(
        store=shop.store,
        name=name,
        trigger="cart_abandoned",
        channel="email",
        status=status,
        launched_at=timezone.now() - timedelta(days=1),
        variants=SPLIT,
    )


def results(shop, campaign) -> dict:
    response = shop.client.get(f"/api/v1/campaigns/{campaign.pk}/results")
    assert response.status_code == 200, response.content
    return response.json()


def conversions(document) -> dict[str, int]:
    return {v["key"]: v["conversions"] for v in document["variants"]}


def test_get_serves_the_newest_snapshot_until_a_refresh(shop):
    # Given a campaign whose results were read once
    campaign = experiment(shop)
    at = timezone.now() - timedelta(hours=5)
    expose(campaign, "control", 10, 1, at)
    expose(campaign, "b", 10, 2, at)
    first = results(shop, campaign)
    # When more shoppers convert
    expose(campaign, "b", 10, 10, at, prefix="late")

    # Then GET still answers the stored snapshot, with the field names
    assert conversions(results(shop, campaign)) == {"control": 1, "b": 2}
    assert {"goal", "srm", "variants", "holdout", "decision", "promotion"} <= set(first)
    # and a refresh recomputes, stores a new snapshot and serves it from then on
    refreshed = shop.client.post(f"/api/v1/campaigns/{campaign.pk}/results/refresh")
    assert refreshed.status_code == 200, refreshed.content
    assert conversions(refreshed.json()) == {"control": 1, "b": 12}
    assert conversions(results(shop, campaign)) == {"control": 1, "b": 12}
    assert ResultSnapshot.objects.filter(campaign=campaign).count() == 2


def test_beat_refreshes_every_live_experiment_and_nothing_else(shop):
    # Given a running, a paused, a draft and a completed experiment, and a plain campaign
    running = experiment(shop, name="running")
    paused = experiment(shop, CampaignStatus.PAUSED, name="paused")
    experiment(shop, CampaignStatus.DRAFT, name="draft")
    experiment(shop, CampaignStatus.COMPLETED, name="done")
    Campaign.objects.create(
        store=shop.store, name="plain", trigger="cart_abandoned", channel="email"
    )

    # When beat's task runs (its subtasks run inline here)
    queued = refresh_all_campaign_results.delay().get()

    # Then each live experiment got one snapshot
    assert queued == 2
    refreshed = set(ResultSnapshot.objects.values_list("campaign__name", "trigger"))
    assert refreshed == {(running.name, "beat"), (paused.name, "beat")}


def test_completing_freezes_what_get_and_refresh_answer(shop):
    # Given a running experiment with some conversions, completed over the API
    campaign = experiment(shop)
    at = timezone.now() - timedelta(hours=5)
    expose(campaign, "control", 10, 1, at)
    expose(campaign, "b", 10, 2, at)
    assert shop.client.post(f"/api/v1/campaigns/{campaign.pk}/complete").status_code == 200
    # When shoppers convert afterwards
    expose(campaign, "b", 10, 10, at, prefix="late")

    # Then neither a read nor a refresh moves the finished test
    assert conversions(results(shop, campaign)) == {"control": 1, "b": 2}
    refreshed = shop.client.post(f"/api/v1/campaigns/{campaign.pk}/results/refresh").json()
    assert conversions(refreshed) == {"control": 1, "b": 2}
    assert refreshed["status"] == "completed"


def test_another_stores_campaign_cannot_be_refreshed(shop, other_shop):
    campaign = experiment(shop)

    response = other_shop.client.post(f"/api/v1/campaigns/{campaign.pk}/results/refresh")

    assert response.status_code == 404
    assert not ResultSnapshot.objects.exists()


def test_refreshing_a_campaign_without_variants_is_a_conflict(shop):
    plain = Campaign.objects.create(
        store=shop.store, name="plain", trigger="cart_abandoned", channel="email"
    )

    response = shop.client.post(f"/api/v1/campaigns/{plain.pk}/results/refresh")

    assert response.status_code == 409
    assert "no variants" in response.json()["error"]["message"]
