"""Marketers edit, run and read campaigns in the admin with the API's rules."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from campaigns.models import Campaign, CampaignChange, CampaignStatus, Exposure
from stores.actions import do_grant_store_membership, do_upsert_shopper
from stores.models import StoreRole

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(shop) -> Client:
    user = User.objects.create_user("mia", is_staff=True)
    do_grant_store_membership(user, shop.store, StoreRole.MARKETER)
    client = Client()
    client.force_login(user)
    return client


def form(campaign: Campaign, **fields: str) -> dict[str, str]:
    return {
        "store": str(campaign.store_id),
        "name": campaign.name,
        "priority": "0",
        "trigger": campaign.trigger,
        "delay_minutes": "0",
        "channel": campaign.channel,
        "template_key": "",
        "segments": "[]",
        **fields,
    }


def change_url(campaign: Campaign) -> str:
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def draft(shop, **fields) -> Campaign:
    return Campaign.objects.create(
        store=shop.store,
        name="Comeback",
        trigger="cart_abandoned",
        channel="email",
        status=CampaignStatus.DRAFT,
        **fields,
    )


def test_weights_not_summing_to_100_are_refused_on_the_form(shop, marketer):
    campaign = draft(shop)

    page = marketer.post(
        change_url(campaign),
        form(campaign, variants='[{"key": "a", "weight": 60}, {"key": "b", "weight": 30}]'),
    )

    assert page.status_code == 200
    assert "Weights must sum to 100, they sum to 90" in page.content.decode()
    campaign.refresh_from_db()
    assert campaign.variants == []


def test_a_valid_split_is_saved_and_audited_under_the_users_name(shop, marketer):
    campaign = draft(shop)

    saved = marketer.post(
        change_url(campaign),
        form(
            campaign,
            variants='[{"key": "a", "weight": 50}, {"key": "b", "weight": 50}]',
            holdout_percent="10",
        ),
    )

    assert saved.status_code == 302, saved.content.decode()[:3000]
    campaign.refresh_from_db()
    assert [v["key"] for v in campaign.variants] == ["a", "b"]
    change = CampaignChange.objects.get(campaign=campaign)
    assert (change.actor, change.action) == ("mia", "updated")
    assert change.changes["holdout_percent"] == [0.0, 10.0]


def test_running_split_with_exposures_cannot_be_changed_on_the_form(shop, marketer):
    campaign = draft(shop, variants=[{"key": "a", "weight": 50.0}, {"key": "b", "weight": 50.0}])
    campaign.status = CampaignStatus.RUNNING
    campaign.save()
    Exposure.objects.create(campaign=campaign, shopper=do_upsert_shopper(shop.store, "s"), arm="a")

    page = marketer.post(
        change_url(campaign),
        form(campaign, variants='[{"key": "a", "weight": 10}, {"key": "b", "weight": 90}]'),
    )

    assert page.status_code == 200
    assert "bias the test" in page.content.decode()


def test_lifecycle_actions_launch_and_refuse_what_is_illegal(shop, marketer):
    campaign = draft(shop)
    changelist = reverse("admin:campaigns_campaign_changelist")

    marketer.post(changelist, {"action": "launch", "_selected_action": [campaign.pk]})
    campaign.refresh_from_db()
    refused = marketer.post(
        changelist, {"action": "archive", "_selected_action": [campaign.pk]}, follow=True
    )

    assert campaign.status == CampaignStatus.RUNNING
    assert "cannot become archived" in refused.content.decode()
    assert CampaignChange.objects.get(campaign=campaign).actor == "mia"


def test_change_page_shows_the_results_table(shop, marketer):
    campaign = draft(shop, variants=[{"key": "a", "weight": 50.0}, {"key": "b", "weight": 50.0}])
    Exposure.objects.create(
        campaign=campaign,
        shopper=do_upsert_shopper(shop.store, "s"),
        arm="b",
        exposed_at=datetime(2026, 3, 1, tzinfo=UTC),
    )

    page = marketer.get(change_url(campaign)).content.decode()

    assert "<th>Exposures</th>" in page
    assert "<tr><td>b</td><td>1</td><td>0</td>" in page
