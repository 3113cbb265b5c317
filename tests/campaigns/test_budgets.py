"""Campaign budgets: when one runs out the campaign stops sending and says which."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection, transaction
from rest_framework.test import APIClient

from campaigns.actions import do_transition_campaign
from campaigns.models import Campaign, CampaignKind, CampaignRun, CampaignStatus
from campaigns.tasks import run_scheduled_campaign
from interventions.models import Cart, Intervention
from stores.models import Shopper

pytestmark = pytest.mark.django_db

TEN_PARIS = datetime(2026, 1, 15, 9, 0, 2, tzinfo=UTC)


def triggered_campaign(shop, **fields):
    values = {
        "name": "Comeback",
        "trigger": "cart_abandoned",
        "channel": "email",
        "status": CampaignStatus.RUNNING,
        **fields,
    }
    return Campaign.objects.create(store=shop.store, **values)


def abandon(client, user_id, value="100.00", **user):
    response = client.post(
        "/api/v1/events",
        {
            "type": "cart_abandoned",
            "cart_id": f"cart-{user_id}",
            "user_id": user_id,
            "user": {"email": f"{user_id}@example.test", "phone": "+33612345678",
                     "timezone": "UTC", **user},
            "cart": {"value": value, "currency": "EUR"},
        },
        format="json",
    )  # fmt: skip
    assert response.status_code == 202, response.content
    return response.json()


def decided(campaign):
    return list(
        Intervention.objects.filter(campaign=campaign)
        .order_by("created_at")
        .values_list("status", "status_reason")
    )


def test_a_campaign_out_of_sends_suppresses_with_the_budget_named(shop):
    # Given a campaign allowed two sends in total
    campaign = triggered_campaign(shop, budget_sends_total=2)

    # When three shoppers abandon their carts
    for name in ("ann", "bob", "cyd"):
        abandon(shop.client, name)

    # Then the third is suppressed with the reason, visible in the API
    assert [status for status, _ in decided(campaign)] == ["queued", "queued", "suppressed"]
    third = Intervention.objects.get(shopper__external_id="cyd")
    detail = shop.client.get(f"/api/v1/interventions/{third.pk}").json()
    assert "suppressed: budget_exhausted:sends_total" in detail["decision"]["reasons"]
    budget = shop.client.get(f"/api/v1/campaigns/{campaign.pk}").json()["budget"]
    assert budget["total"]["sends"] == 2
    assert budget["exhausted"] == ["budget_exhausted:sends_total"]


def test_discount_spend_is_capped(shop):
    # Given 10% off 100 EUR carts (10 EUR each) and a 25 EUR discount budget
    campaign = triggered_campaign(shop, discount_percent="10", budget_discount="25")

    for name in ("ann", "bob", "cyd"):
        abandon(shop.client, name)

    assert decided(campaign)[2] == ("suppressed", "suppressed: budget_exhausted:discount")
    assert (
        shop.client.get(f"/api/v1/campaigns/{campaign.pk}").json()["budget"]["total"]["discount"]
        == "20.00"
    )


def test_a_channel_cost_cap_stops_that_channel(shop, settings):
    # Given SMS at 0.05 each and a 0.10 SMS cap
    settings.CHANNEL_COSTS = {**settings.CHANNEL_COSTS, "sms": "0.05"}
    campaign = triggered_campaign(shop, channel="sms", budget_channel_costs={"sms": "0.10"})

    for name in ("ann", "bob", "cyd"):
        abandon(shop.client, name)

    assert decided(campaign)[2] == ("suppressed", "suppressed: budget_exhausted:cost_sms")


def test_a_cost_cap_prices_messages_as_the_analytics_do(shop, settings):
    # Given SMS priced at 0.10 (the price the channels report uses) and a 0.10 SMS cap
    settings.CHANNEL_COSTS = {**settings.CHANNEL_COSTS, "sms": "0.10"}
    campaign = triggered_campaign(shop, channel="sms", budget_channel_costs={"sms": "0.10"})

    for name in ("ann", "bob"):
        abandon(shop.client, name)

    # Then the second message would cost more than the cap
    assert decided(campaign)[1] == ("suppressed", "suppressed: budget_exhausted:cost_sms")


def test_a_scheduled_run_stops_when_the_days_sends_are_spent(shop):
    # Given a scheduled campaign allowed 2 sends a day, with 5 shoppers in its audience
    with time_machine.travel(TEN_PARIS - timedelta(minutes=1), tick=True):
        campaign = Campaign.objects.create(
            store=shop.store,
            name="Daily",
            kind=CampaignKind.SCHEDULED,
            channel="email",
            schedule_cron="0 10 * * *",
            status=CampaignStatus.DRAFT,
            budget_sends_per_day=2,
        )
        campaign = do_transition_campaign(campaign, "launch", "test")
        for n in range(5):
            owner = Shopper.objects.create(
                store=shop.store, external_id=f"s{n}", email=f"s{n}@example.test"
            )
            Cart.objects.create(store=shop.store, shopper=owner, external_id=f"c{n}", value=60)

    # When the tick runs
    with time_machine.travel(TEN_PARIS, tick=True):
        run_scheduled_campaign(campaign.pk)

    # Then two are sent and the others are skipped for that reason
    run = CampaignRun.objects.get(campaign=campaign)
    assert (run.selected, run.sent, run.skip_reasons) == (
        5,
        2,
        {"budget_exhausted:sends_per_day": 3},
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_cannot_overshoot_the_budget(shop, tasks_queued_not_run):
    # Given a campaign allowed 3 sends, and no quiet hours
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.save()
    campaign = triggered_campaign(shop, budget_sends_total=3)

    # When 10 shoppers abandon their carts at the same moment
    def shopper_abandons(n):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {shop.api_key}")
        try:
            return abandon(client, f"shopper-{n}")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=5) as pool:
        list(pool.map(shopper_abandons, range(10)))

    # Then exactly three went out and seven were refused for the budget
    reasons = [reason for _, reason in decided(campaign)]
    assert reasons.count("suppressed: budget_exhausted:sends_total") == 7
    assert len(reasons) == 10
    assert campaign.spend.get(day=datetime(1970, 1, 1).date()).sends == 3


@pytest.mark.django_db(transaction=True)
def test_a_campaign_without_budget_does_not_make_its_events_wait(shop, tasks_queued_not_run):
    # Given a campaign without any budget that has sent today, and an event still uncommitted
    campaign = triggered_campaign(shop)
    abandon(shop.client, "cyd")
    started, release = threading.Event(), threading.Event()

    def event_held_open():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {shop.api_key}")
        try:
            with transaction.atomic():
                abandon(client, "ann")
                started.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=event_held_open)
    holder.start()
    assert started.wait(timeout=30)

    # When another shopper's event for the same campaign arrives, unwilling to wait on a lock
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '500ms'")
    try:
        answer = abandon(shop.client, "bob")
    finally:
        release.set()
        holder.join()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")

    # Then it was decided without waiting, and both sends are counted once committed
    assert answer["interventions"][0]["status"] in ("queued", "scheduled")
    assert len(decided(campaign)) == 3
    budget = shop.client.get(f"/api/v1/campaigns/{campaign.pk}").json()["budget"]
    assert budget["total"]["sends"] == 3
