"""Scheduled campaigns: a beat entry per campaign, and runs that send nothing twice."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from celery.exceptions import Retry
from django.db import connection, transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from campaigns.actions import do_transition_campaign
from campaigns.actions.scheduling import held_elsewhere_for
from campaigns.models import Campaign, CampaignKind, CampaignRun, CampaignStatus
from campaigns.tasks import run_scheduled_campaign
from interventions.actions import do_send_campaign_chunk
from interventions.models import Cart, Intervention, Status
from stores.models import Shopper

pytestmark = pytest.mark.django_db

# 10:00:02 in Paris (UTC+1 in January): just after the daily slot.
TEN_PARIS = datetime(2026, 1, 15, 9, 0, 2, tzinfo=UTC)
BIG_ABANDONED_CARTS = {
    "match": "all",
    "conditions": [
        {"field": "cart.abandoned_hours", "op": "between", "value": [1, 24]},
        {"field": "cart.converted", "op": "eq", "value": False},
        {"field": "cart.value", "op": "gte", "value": 50},
    ],
}


@pytest.fixture(autouse=True)
def before_ten_in_paris():
    """Set up a minute before the 10:00 slot, so cart ages are relative to the tick."""
    with time_machine.travel(TEN_PARIS - timedelta(minutes=1), tick=True):
        yield


def scheduled_campaign(shop, **fields):
    values = {
        "name": "Daily nudge",
        "kind": CampaignKind.SCHEDULED,
        "channel": "email",
        "schedule_cron": "0 10 * * *",
        "audience": BIG_ABANDONED_CARTS,
        "status": CampaignStatus.DRAFT,
        **fields,
    }
    campaign = Campaign.objects.create(store=shop.store, **values)
    return do_transition_campaign(campaign, "launch", "test")


def abandoned(shop, user_id, *, hours=3, value="80.00", **shopper_fields):
    shopper_fields.setdefault("email", f"{user_id}@example.test")
    owner = Shopper.objects.create(store=shop.store, external_id=user_id, **shopper_fields)
    return Cart.objects.create(
        store=shop.store,
        shopper=owner,
        external_id=f"cart-{user_id}",
        value=value,
        currency="EUR",
        abandoned_at=timezone.now() - timedelta(hours=hours),
    )


def test_a_scheduled_campaign_is_a_beat_entry_in_the_stores_timezone(shop):
    # Given a scheduled campaign created as a draft over the API
    response = shop.client.post(
        "/api/v1/campaigns",
        {
            "name": "Daily nudge",
            "kind": "scheduled",
            "channel": "email",
            "schedule_cron": "0 10 * * *",
            "audience": BIG_ABANDONED_CARTS,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    campaign = Campaign.objects.get(pk=response.json()["id"])
    entry = PeriodicTask.objects.get(pk=campaign.periodic_task_id)

    # Then beat has it, disabled until launch, at 10:00 in the store's timezone
    assert (entry.task, entry.queue, entry.enabled) == (
        "campaigns.tasks.run_scheduled_campaign",
        "campaigns",
        False,
    )
    assert (entry.crontab.hour, entry.crontab.minute, str(entry.crontab.timezone)) == (
        "10",
        "0",
        "Europe/Paris",
    )

    # When it is launched, moved to 18:30, then paused
    shop.client.post(f"/api/v1/campaigns/{campaign.pk}/launch")
    assert PeriodicTask.objects.get(pk=entry.pk).enabled
    moved = shop.client.patch(
        f"/api/v1/campaigns/{campaign.pk}", {"schedule_cron": "30 18 * * 1-5"}, format="json"
    )
    assert moved.status_code == 200, moved.content
    assert PeriodicTask.objects.get(pk=entry.pk).crontab.hour == "18"
    shop.client.post(f"/api/v1/campaigns/{campaign.pk}/pause")

    # Then beat follows each change
    assert not PeriodicTask.objects.get(pk=entry.pk).enabled


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "scheduled"}, "schedule_cron"),
        ({"kind": "scheduled", "schedule_cron": "every day"}, "schedule_cron"),
        ({"kind": "triggered"}, "trigger"),
        (
            {
                "kind": "scheduled",
                "schedule_cron": "0 10 * * *",
                "budget_channel_costs": {"fax": 1},
            },
            "budget_channel_costs.fax",
        ),
    ],
)
def test_a_bad_schedule_or_budget_is_a_400_naming_the_field(shop, body, field):
    response = shop.client.post(
        "/api/v1/campaigns", {"name": "x", "channel": "email", **body}, format="json"
    )

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"], response.json()


def test_a_run_sends_to_its_audience_through_the_engine(shop):
    # Given an audience of three (one opted out of email) and a cart outside it
    campaign = scheduled_campaign(shop)
    abandoned(shop, "ann")
    abandoned(shop, "bob")
    abandoned(shop, "cyd", opted_out_channels=["email"])
    abandoned(shop, "dee", hours=48)

    # When beat's tick runs
    with time_machine.travel(TEN_PARIS, tick=True):
        run_scheduled_campaign(campaign.pk)

    # Then the run records what it selected, sent and skipped, and why
    run = CampaignRun.objects.get(campaign=campaign)
    assert (run.status, run.selected, run.sent, run.skipped) == ("finished", 3, 2, 1)
    assert run.slot == datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    assert run.skip_reasons == {"no usable channel": 1}
    sent = Intervention.objects.filter(campaign=campaign, status=Status.QUEUED)
    assert sorted(sent.values_list("shopper__external_id", flat=True)) == ["ann", "bob"]
    opted_out = Intervention.objects.get(shopper__external_id="cyd")
    assert opted_out.status == Status.SUPPRESSED
    assert any("opted out" in reason for reason in opted_out.decision["reasons"]), (
        opted_out.decision
    )

    # And the runs API shows it
    runs = shop.client.get(f"/api/v1/campaigns/{campaign.pk}/runs").json()
    rows = runs["results"] if isinstance(runs, dict) else runs
    assert [(r["selected"], r["sent"], r["skipped"]) for r in rows] == [(3, 2, 1)]


def test_frequency_caps_still_apply_to_a_scheduled_send(shop):
    campaign = scheduled_campaign(shop)
    abandoned(shop, "ann")
    shop.client.post(
        "/api/v1/interventions",
        {"user_id": "ann", "channel": "email", "user": {"email": "ann@example.test"}},
        format="json",
    )

    with time_machine.travel(TEN_PARIS, tick=True):
        run_scheduled_campaign(campaign.pk)

    run = CampaignRun.objects.get(campaign=campaign)
    assert (run.sent, run.skipped) == (0, 1)
    assert "frequency" in next(iter(run.skip_reasons))


def test_a_tick_delivered_twice_sends_nothing_twice(shop):
    # Given a run already done for today's 10:00
    campaign = scheduled_campaign(shop)
    for name in ("ann", "bob", "cyd"):
        abandoned(shop, name)
    with time_machine.travel(TEN_PARIS, tick=True):
        run_scheduled_campaign(campaign.pk)

    # When the same tick arrives again, minutes later
    with time_machine.travel(TEN_PARIS + timedelta(minutes=7), tick=True):
        run_scheduled_campaign(campaign.pk)

    # Then nothing more is sent, and there is still one run
    assert Intervention.objects.filter(campaign=campaign).count() == 3
    assert CampaignRun.objects.filter(campaign=campaign).count() == 1


def test_a_run_taken_over_after_its_worker_died_skips_who_was_decided(shop, settings):
    # Given a run whose worker decided the first two shoppers, then died (lease expired)
    settings.CAMPAIGN_RUN_CHUNK = 2
    campaign = scheduled_campaign(shop)
    carts = [abandoned(shop, name) for name in ("ann", "bob", "cyd", "dee", "eve")]
    slot = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    run = CampaignRun.objects.create(
        campaign=campaign, slot=slot, lease_until=TEN_PARIS - timedelta(seconds=1)
    )
    first = sorted(carts, key=lambda c: c.shopper_id)[:2]
    with transaction.atomic():
        do_send_campaign_chunk(
            Campaign.objects.select_related("store").get(pk=campaign.pk), first, run.pk, TEN_PARIS
        )

    # When the redelivered tick runs it
    with time_machine.travel(TEN_PARIS, tick=True):
        run_scheduled_campaign(campaign.pk)

    # Then every shopper has exactly one intervention from this run
    run.refresh_from_db()
    per_shopper = list(
        Intervention.objects.filter(campaign=campaign).values_list("shopper_id", flat=True)
    )
    assert sorted(per_shopper) == sorted(c.shopper_id for c in carts)
    assert (run.status, run.sent, run.skip_reasons) == (
        "finished",
        3,
        {"already_decided_in_this_run": 2},
    )


def test_a_requeued_tick_waits_for_a_dead_workers_lease_then_finishes_the_run(shop):
    # Given a run every 5 minutes whose worker was killed at 10:00: its lease still stands
    campaign = scheduled_campaign(shop, schedule_cron="*/5 * * * *")
    for name in ("ann", "bob"):
        abandoned(shop, name)
    slot = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    run = CampaignRun.objects.create(
        campaign=campaign, slot=slot, lease_until=TEN_PARIS + timedelta(minutes=4)
    )

    # When Celery requeues the task at once, it sends nothing and asks to be retried later
    with time_machine.travel(TEN_PARIS, tick=True), pytest.raises(Retry):
        run_scheduled_campaign(campaign.pk)
    assert not Intervention.objects.exists()
    assert held_elsewhere_for(run, TEN_PARIS) == 240

    # And the retry, past the lease and the 10:05 slot, finishes the 10:00 run
    with time_machine.travel(TEN_PARIS + timedelta(minutes=6), tick=True):
        run_scheduled_campaign(campaign.pk, slot=slot.isoformat())
    run.refresh_from_db()
    assert (run.status, run.sent) == ("finished", 2)
    assert CampaignRun.objects.filter(campaign=campaign).count() == 1


def test_a_tick_for_a_paused_campaign_sends_nothing(shop):
    campaign = scheduled_campaign(shop)
    abandoned(shop, "ann")
    do_transition_campaign(campaign, "pause", "test")

    with time_machine.travel(TEN_PARIS, tick=True):
        run_scheduled_campaign(campaign.pk)

    assert not Intervention.objects.exists()
    assert not CampaignRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_workers_running_the_same_tick_at_once_send_each_shopper_once(
    shop, tasks_queued_not_run
):
    # Given a running scheduled campaign with 40 shoppers in its audience
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.save()
    campaign = scheduled_campaign(shop)
    for n in range(40):
        abandoned(shop, f"shopper-{n}")

    # When two workers get the same tick at the same moment
    def worker(_):
        try:
            with time_machine.travel(TEN_PARIS, tick=True):
                return run_scheduled_campaign(campaign.pk)
        except Retry:
            return "retry"  # the other worker held the run: this one retries after its lease
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(worker, range(2)))

    # Then there is one run and one intervention per shopper
    assert CampaignRun.objects.filter(campaign=campaign).count() == 1
    shoppers = list(
        Intervention.objects.filter(campaign=campaign).values_list("shopper_id", flat=True)
    )
    assert len(shoppers) == len(set(shoppers)) == 40
    run = CampaignRun.objects.get(campaign=campaign)
    assert (run.selected, run.sent) == (40, 40)


def test_cart_events_do_not_fire_a_scheduled_campaign(shop):
    scheduled_campaign(shop, audience={})

    response = shop.client.post(
        "/api/v1/events",
        {"type": "cart_abandoned", "cart_id": "c1", "user_id": "ann", "cart": {"value": "80.00"}},
        format="json",
    )

    assert response.status_code == 202
    assert response.json()["interventions"] == []


def test_a_scheduled_send_follows_a_promoted_winners_split(shop):
    # Given a scheduled A/B campaign whose winner "b" was promoted (live split b: 100%)
    campaign = scheduled_campaign(
        shop,
        variants=[{"key": "control", "weight": 50}, {"key": "b", "weight": 50}],
        live_weights={"control": 0, "b": 100},
    )
    for n in range(8):
        abandoned(shop, f"shopper-{n}")

    # When beat's tick runs
    with time_machine.travel(TEN_PARIS, tick=True):
        run_scheduled_campaign(campaign.pk)

    # Then every new shopper gets the winner, as a triggered send would
    arms = set(Intervention.objects.filter(campaign=campaign).values_list("variant", flat=True))
    assert arms == {"b"}
    assert set(campaign.exposures.values_list("arm", flat=True)) == {"b"}
