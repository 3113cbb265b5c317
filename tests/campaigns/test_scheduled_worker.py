"""A scheduled campaign's tick through a real Celery worker and broker, delivered twice."""

import re
from datetime import timedelta

import pytest
from celery import Celery
from django.utils import timezone

from campaigns.actions import do_transition_campaign
from campaigns.models import Campaign, CampaignKind, CampaignRun, CampaignStatus, RunStatus
from interventions.models import Cart, Intervention, Status
from stores.models import Shopper
from tests.support import processes
from tests.support.http_provider import StubProvider
from tests.support.processes import engine_env, running, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.real_worker, pytest.mark.slow]


def test_a_tick_delivered_twice_to_a_real_worker_sends_each_shopper_one_message(shop, tmp_path):
    # Given a launched one-off scheduled campaign whose audience holds three shoppers
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.save()
    campaign = Campaign.objects.create(
        store=shop.store,
        name="Flash sale",
        kind=CampaignKind.SCHEDULED,
        channel="email",
        schedule_at=timezone.now() - timedelta(minutes=1),
        status=CampaignStatus.DRAFT,
        audience={"conditions": [{"field": "cart.value", "op": "gte", "value": 50}]},
    )
    do_transition_campaign(campaign, "launch", "test")
    for name in ("ann", "bob", "cyd"):
        owner = Shopper.objects.create(
            store=shop.store, external_id=name, email=f"{name}@example.test"
        )
        Cart.objects.create(store=shop.store, shopper=owner, external_id=f"c-{name}", value=80)
    redis_port = processes.free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    provider = StubProvider().start()
    env = engine_env(redis_url, provider.environment())
    broker = Celery(broker=redis_url, set_as_current=False)

    try:
        with (
            running(processes.redis_command(redis_port), env, tmp_path / "redis.log"),
            running(processes.worker_command(), env, tmp_path / "worker.log"),
        ):
            # When beat's message for the slot reaches the broker twice, by name
            for _ in range(2):
                wait_for(lambda: broker.send_task(
                    "campaigns.tasks.run_scheduled_campaign", args=[campaign.pk], queue="campaigns"
                ), timeout=10)  # fmt: skip

            # Then one run finishes and each shopper gets exactly one email
            wait_for(
                lambda: CampaignRun.objects.filter(campaign=campaign, status=RunStatus.FINISHED),
                timeout=60,
            )
            wait_for(
                lambda: Intervention.objects.filter(status=Status.SENT).count() == 3, timeout=60
            )
            # (and the second message has been handled too)
            wait_for(lambda: len(re.findall(
                r"run_scheduled_campaign\[[^]]+\] succeeded", (tmp_path / "worker.log").read_text()
            )) == 2, timeout=30)  # fmt: skip
    finally:
        provider.stop()

    assert CampaignRun.objects.filter(campaign=campaign).count() == 1
    assert sorted(m["to"] for m in provider.received) == [
        "ann@example.test",
        "bob@example.test",
        "cyd@example.test",
    ]
