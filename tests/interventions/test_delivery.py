"""From trigger to provider: claim, retry, fall back, suppress; nothing sent twice."""

from datetime import timedelta

import pytest
from django.utils import timezone

from interventions.actions import do_deliver, do_mark_delivered, do_sweep_stuck
from interventions.models import DeliveryAttempt, Intervention, Status, transition
from notifications.models import Suppression
from tests.support.http_provider import DEAD_ADDRESS, REJECTED

pytestmark = pytest.mark.django_db(transaction=True)

SHOPPER = {"email": "sam@example.test", "phone": "+33612345678", "timezone": "UTC"}
# Without a template the personalization is the content; Twilio refuses an empty body.
SMS_CONTENT = {"subject": "Still thinking?", "body": "Your cart is waiting"}


@pytest.fixture(autouse=True)
def no_quiet_hours(shop):
    shop.store.quiet_hours_start = None
    shop.store.quiet_hours_end = None
    shop.store.save()


def trigger(shop, **overrides):
    body = {"user_id": "sam", "channel": "email", "user": SHOPPER, **overrides}
    response = shop.client.post("/api/v1/interventions", body, format="json")
    assert response.status_code == 201, response.json()
    return Intervention.objects.get(pk=response.json()["id"])


def history(intervention):
    return [(e.from_status, e.to_status) for e in intervention.events.all()]


def test_trigger_is_sent_once_and_its_history_recorded(shop, provider):
    intervention = trigger(shop)

    intervention.refresh_from_db()
    assert intervention.status == Status.SENT
    assert intervention.provider_message_id == f"stub-{intervention.pk}"
    assert [m["to"] for m in provider.received] == ["sam@example.test"]
    assert history(intervention) == [("", "queued"), ("queued", "sending"), ("sending", "sent")]


def test_repeated_delivery_task_sends_nothing_more(shop, provider):
    intervention = trigger(shop)

    assert do_deliver(intervention.pk) == "skipped"
    assert len(provider.received) == 1


def test_transient_errors_are_retried_then_sent(shop, provider, settings):
    settings.DELIVERY_RETRY_BASE_DELAY = 0.01
    provider.scripted = [503, 429]

    intervention = trigger(shop)

    intervention.refresh_from_db()
    assert intervention.status == Status.SENT
    assert intervention.attempts == 3
    outcomes = list(
        DeliveryAttempt.objects.filter(intervention=intervention).values_list("outcome", flat=True)
    )
    assert outcomes == ["transient_error", "transient_error", "succeeded"]


def test_exhausted_retries_fall_back_to_the_next_channel(shop, provider, settings):
    settings.DELIVERY_RETRY_BASE_DELAY = 0.01
    provider.scripted = [503] * 20

    intervention = trigger(
        shop, channel="auto", user={**SHOPPER, "email": ""}, personalization=SMS_CONTENT
    )

    intervention.refresh_from_db()
    assert intervention.channel == "websocket"
    assert "gave up after" in intervention.events.filter(to_status="queued").last().reason


def test_permanent_error_falls_back_without_retrying(shop, provider):
    shop.store.fallback_chain = ["email", "sms"]
    shop.store.save()
    provider.scripted = [REJECTED]

    intervention = trigger(shop, channel="auto", personalization=SMS_CONTENT)

    intervention.refresh_from_db()
    assert (intervention.channel, intervention.status) == ("sms", Status.SENT)
    assert [m["to"] for m in provider.received] == ["sam@example.test", "+33612345678"]
    assert (
        "email failed permanently: esp_422"
        in intervention.events.get(from_status="sending", to_status="queued").reason
    )


def test_dead_address_is_suppressed_for_future_sends(shop, provider):
    provider.scripted = [DEAD_ADDRESS]

    first = trigger(shop)
    second = trigger(shop, personalization={"again": True})

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Status.FAILED
    assert Suppression.objects.filter(store=shop.store, address="sam@example.test").exists()
    assert second.status == Status.SUPPRESSED
    assert "email: address on the suppression list" in second.decision["reasons"]
    assert len(provider.received) == 1


def test_opt_out_after_decision_is_honoured_at_send_time(shop, provider):
    intervention = trigger(shop, scheduled_at=(timezone.now() + timedelta(minutes=5)).isoformat())
    intervention.shopper.opted_out_channels = ["email"]
    intervention.shopper.save()
    transition(intervention, Status.QUEUED, "due")

    assert do_deliver(intervention.pk) == "suppressed"
    assert provider.received == []


def test_sweeper_redispatches_queued_work_whose_task_was_lost(shop, provider):
    intervention = trigger(shop, scheduled_at=(timezone.now() + timedelta(minutes=5)).isoformat())
    # A queued row whose broker message vanished (Redis restarted, enqueue failed).
    Intervention.objects.filter(pk=intervention.pk).update(
        status=Status.QUEUED, updated_at=timezone.now() - timedelta(hours=1)
    )

    counts = do_sweep_stuck()

    intervention.refresh_from_db()
    assert counts["redispatched"] == 1
    assert intervention.status == Status.SENT


def test_sweeper_never_resends_an_email_whose_worker_died_mid_send(shop, provider):
    intervention = trigger(shop, scheduled_at=(timezone.now() + timedelta(minutes=5)).isoformat())
    Intervention.objects.filter(pk=intervention.pk).update(
        status=Status.SENDING, updated_at=timezone.now() - timedelta(hours=1)
    )

    counts = do_sweep_stuck()

    intervention.refresh_from_db()
    assert counts["unconfirmed"] == 1
    assert intervention.status == Status.UNCONFIRMED
    assert provider.received == []


def test_sweeper_confirms_an_email_postmark_holds_instead_of_leaving_it_in_doubt(shop, provider):
    # Given an email Postmark accepted, whose worker died before recording the answer
    intervention = trigger(shop)
    Intervention.objects.filter(pk=intervention.pk).update(
        status=Status.SENDING,
        provider_message_id="",
        updated_at=timezone.now() - timedelta(hours=1),
    )

    # When the sweeper settles it
    counts = do_sweep_stuck()

    # Then Postmark's message search confirms it as sent, with Postmark's id, and nothing is resent
    intervention.refresh_from_db()
    assert (counts["unconfirmed"], counts["confirmed"]) == (1, 1)
    assert intervention.status == Status.SENT
    assert intervention.provider_message_id == f"stub-{intervention.pk}"
    assert len(provider.received) == 1


def test_a_delivery_report_settles_an_unconfirmed_send(shop, provider):
    intervention = trigger(shop, scheduled_at=(timezone.now() + timedelta(minutes=5)).isoformat())
    Intervention.objects.filter(pk=intervention.pk).update(
        status=Status.SENDING, updated_at=timezone.now() - timedelta(hours=1)
    )
    do_sweep_stuck()
    intervention.refresh_from_db()

    assert do_mark_delivered(intervention, source="webhook")

    intervention.refresh_from_db()
    assert intervention.status == Status.DELIVERED


def test_fallback_skips_a_channel_the_template_cannot_render(shop, provider):
    from templates.actions import do_create_version, do_publish_version
    from templates.models import Template

    template = Template.objects.create(store=shop.store, key="email-only", name="Email only")
    version = do_create_version(
        template,
        content={
            "en": {
                "email": {"subject": "Hi", "text": "Come back", "html": "<p>Back</p>"},
                "websocket": {"title": "Still there?", "body": "Your cart is waiting"},
            }
        },
    )
    do_publish_version(template, version)
    shop.store.fallback_chain = ["email", "sms", "websocket"]
    shop.store.save()
    provider.scripted = [REJECTED]

    intervention = trigger(shop, channel="auto", template="email-only")

    intervention.refresh_from_db()
    assert intervention.channel == "websocket"
    assert intervention.content["title"] == "Still there?"
    assert "sms skipped" in intervention.events.filter(to_status="queued").last().reason


def test_batch_delivery_claims_sends_and_records_like_single_delivery(shop, provider):
    from interventions.actions import do_deliver_many

    later = (timezone.now() + timedelta(minutes=5)).isoformat()
    ids = [
        trigger(shop, user_id=f"u{n}", user={"email": f"u{n}@example.test"}, scheduled_at=later).pk
        for n in range(3)
    ]
    opted_out = trigger(shop, user_id="quiet", user={"email": "q@example.test"}, scheduled_at=later)
    opted_out.shopper.opted_out_channels = ["email"]
    opted_out.shopper.save()
    Intervention.objects.filter(pk__in=[*ids, opted_out.pk]).update(status=Status.QUEUED)
    provider.scripted = [200, REJECTED]  # the second send fails permanently

    result = do_deliver_many([str(i) for i in [*ids, opted_out.pk]])

    assert dict(result.outcomes) == {"skipped": 0, "sent": 2, "failed": 1, "suppressed": 1}
    statuses = {i.shopper.external_id: i.status for i in Intervention.objects.all()}
    assert statuses == {"u0": "sent", "u1": "failed", "u2": "sent", "quiet": "suppressed"}
    sent = Intervention.objects.get(shopper__external_id="u0")
    assert history(sent) == [("", "scheduled"), ("queued", "sending"), ("sending", "sent")]
    assert sent.attempts_log.get().outcome == "succeeded"
    assert do_deliver_many([str(ids[0])]).outcomes["skipped"] == 1
    assert len(provider.received) == 3


def test_metrics_show_attempts_and_failure_reasons_from_every_process(shop, provider, client):
    provider.scripted = [REJECTED]
    trigger(shop)

    body = client.get("/metrics").content.decode()

    assert (
        'engine_delivery_attempts_recent{channel="email",outcome="permanent_error",reason="esp_422"} 1.0'
        in body
    )
    assert 'engine_interventions{channel="email",status="failed"} 1.0' in body


@pytest.fixture
def websocket_to_log(settings):
    from notifications.transports.base import get_transport

    settings.NOTIFICATION_TRANSPORTS = {**settings.NOTIFICATION_TRANSPORTS, "websocket": "log"}
    get_transport.cache_clear()
    yield
    get_transport.cache_clear()


def test_websocket_publish_lost_to_a_redis_outage_is_republished_within_a_minute(
    shop, websocket_to_log
):
    from notifications.transports.base import LogTransport

    later = (timezone.now() + timedelta(minutes=5)).isoformat()
    intervention = trigger(shop, channel="websocket", scheduled_at=later)
    # The inline publish failed (Redis down): the row stayed queued, no task will retry it.
    Intervention.objects.filter(pk=intervention.pk).update(
        status=Status.QUEUED, updated_at=timezone.now() - timedelta(seconds=45)
    )
    LogTransport.outbox.clear()

    counts = do_sweep_stuck()

    intervention.refresh_from_db()
    assert counts["redispatched"] == 1
    assert intervention.status == Status.SENT
    assert [m.intervention_id for m in LogTransport.outbox] == [str(intervention.pk)]


def test_acks_in_bulk_mark_each_sent_intervention_delivered_once(shop, websocket_to_log):
    from interventions.actions import do_mark_delivered_many
    from tracking.models import TrackingEvent

    first, second = (trigger(shop, user_id=u, channel="websocket") for u in ("a", "b"))
    for intervention in (first, second):
        intervention.refresh_from_db()
    at = timezone.now()

    moved = do_mark_delivered_many([(first, at), (second, at), (first, at)], source="websocket")

    assert moved == {first.pk, second.pk}
    assert do_mark_delivered_many([(first, at)], source="websocket") == set()
    first.refresh_from_db()
    assert (first.status, first.delivered_at) == (Status.DELIVERED, at)
    assert history(first)[-1] == ("sent", "delivered")
    assert TrackingEvent.objects.filter(kind="delivered").count() == 2


def test_a_burst_of_acks_is_written_in_one_round_trip_after_its_lookup(
    shop, websocket_to_log, django_assert_num_queries
):
    """Acks were a locked SELECT, an UPDATE and four INSERTs in a transaction per batch,
    ~18 % of a web process's CPU per WebSocket trigger (issue 12)."""
    from interventions.actions import AckRequest, do_acknowledge_many
    from outbound.models import OutboxEvent

    sent = [trigger(shop, user_id=u, channel="websocket") for u in ("a", "b", "c")]
    acks = [
        AckRequest(str(shop.store.pk), u, str(i.pk), "", timezone.now())
        for u, i in zip("abc", sent, strict=True)
    ]

    with django_assert_num_queries(2):
        outcomes = do_acknowledge_many(acks)

    assert outcomes == ["delivered"] * 3
    events = OutboxEvent.objects.filter(intervention_id=sent[0].pk).order_by("id")
    assert [e.type for e in events][-2:] == ["intervention.delivered", "tracking.delivered"]
