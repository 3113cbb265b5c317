"""Marketers build audiences, schedules and budgets on the campaign page, without JSON."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from campaigns.models import Campaign, CampaignStatus
from interventions.models import Cart
from stores.actions import do_grant_store_membership
from stores.models import Shopper, StoreRole

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(shop) -> Client:
    user = User.objects.create_user("mia", is_staff=True)
    do_grant_store_membership(user, shop.store, StoreRole.MARKETER)
    client = Client()
    client.force_login(user)
    return client


def draft(shop) -> Campaign:
    return Campaign.objects.create(
        store=shop.store,
        name="Daily nudge",
        trigger="cart_abandoned",
        channel="email",
        status=CampaignStatus.DRAFT,
    )


def page_form(campaign: Campaign, **fields: str) -> dict[str, str]:
    return {
        "store": str(campaign.store_id),
        "name": campaign.name,
        "priority": "0",
        "kind": "scheduled",
        "schedule_cron": "0 10 * * *",
        "delay_minutes": "0",
        "channel": campaign.channel,
        "template_key": "",
        "segments": "[]",
        "audience-match": "all",
        "audience-0-field": "cart.value",
        "audience-0-op": "gte",
        "audience-0-value": "50",
        "audience-1-field": "shopper.country",
        "audience-1-op": "in",
        "audience-1-value": "FR, BE",
        "audience-2-field": "",
        "budget_sends_per_day": "500",
        "cost_cap_sms": "20.00",
        **fields,
    }


def change_url(campaign: Campaign) -> str:
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def test_audience_rows_schedule_and_budget_are_saved_from_the_page(shop, marketer):
    campaign = draft(shop)

    saved = marketer.post(change_url(campaign), page_form(campaign))

    assert saved.status_code == 302, saved.content.decode()[:3000]
    campaign.refresh_from_db()
    assert campaign.audience == {
        "match": "all",
        "conditions": [
            {"field": "cart.value", "op": "gte", "value": "50"},
            {"field": "shopper.country", "op": "in", "value": ["FR", "BE"]},
        ],
    }
    assert (campaign.kind, campaign.budget_sends_per_day) == ("scheduled", 500)
    assert campaign.budget_channel_costs == {"sms": "20.00"}
    assert PeriodicTask.objects.get(pk=campaign.periodic_task_id).crontab.hour == "10"


def test_a_bad_row_is_refused_naming_the_condition(shop, marketer):
    campaign = draft(shop)

    page = marketer.post(change_url(campaign), page_form(campaign, **{"audience-0-value": "lots"}))

    assert page.status_code == 200
    assert "audience.conditions.0.value: Must be a number." in page.content.decode()
    campaign.refresh_from_db()
    assert campaign.audience == {}


def test_the_change_page_shows_the_audience_size_and_the_rows(shop, marketer):
    campaign = draft(shop)
    campaign.audience = {"conditions": [{"field": "cart.value", "op": "gte", "value": 50}]}
    campaign.save()
    for n, value in enumerate([80, 20, 120]):
        owner = Shopper.objects.create(store=shop.store, external_id=f"s{n}")
        Cart.objects.create(store=shop.store, shopper=owner, external_id=f"c{n}", value=value)

    page = marketer.get(change_url(campaign)).content.decode()

    assert "<strong>2</strong> shopper(s) match now. For example: s0, s2" in page
    assert "name='audience-0-value' value='50'" in page


def test_one_page_saves_variants_with_audience_schedule_and_budget_and_offers_the_buttons(
    shop, marketer
):
    # Given a draft
    campaign = draft(shop)

    # When the marketer fills variant rows and the audience, schedule and budget in one POST
    saved = marketer.post(
        change_url(campaign),
        page_form(
            campaign,
            **{
                "variants-0-key": "control",
                "variants-0-weight": "50",
                "variants-1-key": "ten_off",
                "variants-1-weight": "50",
                "variants-1-discount_percent": "10",
            },
            mode="test",
            auto_promote="on",
        ),
    )

    # Then both features' fields are saved
    assert saved.status_code == 302, saved.content.decode()[:3000]
    campaign.refresh_from_db()
    assert [v["key"] for v in campaign.variants] == ["control", "ten_off"]
    assert campaign.auto_promote
    assert (campaign.kind, campaign.budget_sends_per_day) == ("scheduled", 500)
    assert len(campaign.audience["conditions"]) == 2
    # and the page shows the variant rows, the buttons and results, and the targeting panels
    page = marketer.get(change_url(campaign)).content.decode()
    assert 'name="variants-1-key"' in page
    assert 'value="launch"' in page
    assert "Live split" in page
    assert "shopper(s) match now" in page
    assert "Today: 0 send(s)" in page
    assert "No runs yet." in page
