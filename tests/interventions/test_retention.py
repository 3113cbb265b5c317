"""Rows past their retention are pruned by beat, oldest first, a bounded amount per run
(docs/operations.md#data-protection)."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings

from interventions.models import CartEvent, DeliveryAttempt, Intervention, InterventionEvent
from interventions.tasks import prune_expired_rows
from notifications.actions import do_claim_webhook_receipt
from notifications.models import WebhookReceipt
from notifications.transports.base import get_transport
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def daytime_store(shop, settings):
    """Sends go out at once (no quiet hours), WebSocket ones through the log transport."""
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.save()
    settings.NOTIFICATION_TRANSPORTS = {**settings.NOTIFICATION_TRANSPORTS, "websocket": "log"}
    get_transport.cache_clear()
    yield
    get_transport.cache_clear()


def post_event(shop, type_, user_id="sam", **body):
    payload = {"type": type_, "cart_id": f"cart-{user_id}", "user_id": user_id, **body}
    assert shop.client.post("/api/v1/events", payload, format="json").status_code == 202


def trigger(shop, user_id="sam", **body):
    payload = {"user_id": user_id, "channel": "websocket", **body}
    response = shop.client.post("/api/v1/interventions", payload, format="json")
    return Intervention.objects.get(pk=response.json()["id"])


def test_pruning_is_registered_with_beat():
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "interventions.tasks.prune_expired_rows" in tasks


def test_each_kind_of_row_goes_after_its_own_retention(shop):
    with time_machine.travel(NOW, tick=False):
        post_event(shop, "cart_updated")
        sent = trigger(shop)
    # 100 days on: past cart events' 90 and attempts' 30, within the others' 180 and 400.
    with time_machine.travel(NOW + timedelta(days=100), tick=False):
        post_event(shop, "cart_updated", "recent")

        pruned = prune_expired_rows.delay().get()

    assert pruned["cart_events"] == 1
    assert list(CartEvent.objects.values_list("user_id", flat=True)) == ["recent"]
    assert not DeliveryAttempt.objects.filter(intervention=sent).exists()
    assert InterventionEvent.objects.filter(intervention=sent).exists()
    assert Intervention.objects.filter(pk=sent.pk).exists()


def test_twilio_replay_receipts_go_after_their_retention(settings):
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "webhook_receipts": 400}
    with time_machine.travel(NOW, tick=False):
        do_claim_webhook_receipt("twilio-status", "SM-old")
    with time_machine.travel(NOW + timedelta(days=399), tick=False):
        do_claim_webhook_receipt("twilio-status", "SM-recent")
    with time_machine.travel(NOW + timedelta(days=401), tick=False):
        pruned = prune_expired_rows.delay().get()

    assert pruned["webhook_receipts"] == 1
    assert list(WebhookReceipt.objects.values_list("key", flat=True)) == ["SM-recent"]


def test_finished_interventions_go_with_their_history_and_unsent_ones_stay(shop, settings):
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "finished_interventions": 30}
    with time_machine.travel(NOW, tick=False):
        sent = trigger(shop)
        scheduled = trigger(shop, "later", scheduled_at=(NOW + timedelta(days=60)).isoformat())
        TrackingEvent.objects.create(
            store=shop.store, intervention=sent, kind="displayed", source="websocket"
        )

    with time_machine.travel(NOW + timedelta(days=31), tick=False):
        prune_expired_rows.delay().get()

    assert list(Intervention.objects.values_list("pk", flat=True)) == [scheduled.pk]
    assert not InterventionEvent.objects.filter(intervention_id=sent.pk).exists()
    assert not TrackingEvent.objects.exists()


def test_a_run_deletes_at_most_its_limit_oldest_first(shop, settings):
    settings.RETENTION_BATCH_SIZE = 2
    settings.RETENTION_MAX_ROWS_PER_RUN = 3
    for day in range(5):
        with time_machine.travel(NOW + timedelta(days=day), tick=False):
            post_event(shop, "cart_updated", f"day-{day}")

    with time_machine.travel(NOW + timedelta(days=95), tick=False):
        first = prune_expired_rows.delay().get()
        left_after_first = sorted(CartEvent.objects.values_list("user_id", flat=True))
        second = prune_expired_rows.delay().get()

    assert first["cart_events"] == 3
    # Days 0-4 are 95-91 days old: all expired, the three oldest went first.
    assert left_after_first == ["day-3", "day-4"]
    assert second["cart_events"] == 2
    assert not CartEvent.objects.exists()


def test_zero_keeps_rows_forever(shop, settings):
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "cart_events": 0}
    with time_machine.travel(NOW, tick=False):
        post_event(shop, "cart_updated")

    with time_machine.travel(NOW + timedelta(days=3650), tick=False):
        pruned = prune_expired_rows.delay().get()

    assert "cart_events" not in pruned
    assert CartEvent.objects.count() == 1
