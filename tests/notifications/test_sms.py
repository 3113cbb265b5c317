"""SMS through the real Twilio SDK, Twilio stubbed at its HTTP edge."""

from datetime import timedelta
from urllib.parse import parse_qs

import pytest
import responses
from django.utils import timezone

from interventions.actions import do_sweep_stuck
from interventions.models import Intervention, Status
from notifications.models import Suppression
from notifications.transports.base import OutboundMessage, TransportError, get_transport
from stores.actions import do_upsert_shopper
from tests.notifications.conftest import PUBLIC, TWILIO_MESSAGES, twilio_post
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "+33612345678"


def later() -> str:
    return (timezone.now() + timedelta(minutes=5)).isoformat()


def sms(body="Your cart is waiting", to=PHONE):
    return OutboundMessage(
        intervention_id="i-1", store_id="s-1", channel="sms", recipient=to, content={"body": body}
    )


def twilio_answers(http, status=201, **body):
    http.add(responses.POST, TWILIO_MESSAGES, status=status, json={"sid": "SM" + "a" * 32, **body})


def test_sms_goes_to_twilio_with_the_status_callback(http):
    twilio_answers(http)

    message_id = get_transport("sms").send(sms())

    sent = parse_qs(http.calls[0].request.body)
    assert message_id == "SM" + "a" * 32
    assert sent == {
        "To": [PHONE],
        "From": ["+15005550006"],
        "Body": ["Your cart is waiting"],
        "StatusCallback": [f"{PUBLIC}/webhooks/twilio/status/?intervention=i-1"],
    }


def test_messaging_service_is_used_when_configured(http, settings):
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "b" * 32
    twilio_answers(http)

    get_transport("sms").send(sms())

    sent = parse_qs(http.calls[0].request.body)
    assert sent["MessagingServiceSid"] == ["MG" + "b" * 32]
    assert "From" not in sent


@pytest.mark.parametrize(
    ("code", "status", "permanent", "suppress"),
    [
        (21610, 400, True, True),  # unsubscribed recipient
        (21211, 400, True, True),  # invalid number
        (21614, 400, True, True),  # landline
        (21408, 400, True, False),  # region not enabled: the message, not the number
        (20429, 429, False, False),  # too many requests
        (20500, 500, False, False),  # Twilio outage
    ],
)
def test_twilio_errors_are_classified(http, code, status, permanent, suppress):
    http.add(
        responses.POST,
        TWILIO_MESSAGES,
        status=status,
        json={"code": code, "message": "refused", "status": status},
    )

    with pytest.raises(TransportError) as failed:
        get_transport("sms").send(sms())

    assert (failed.value.permanent, failed.value.suppress_address) == (permanent, suppress)


def test_message_over_the_segment_limit_is_refused_before_twilio(http, settings):
    settings.SMS_MAX_SEGMENTS = 1

    with pytest.raises(TransportError) as refused:
        get_transport("sms").send(sms("🛒" * 40))

    assert refused.value.permanent
    assert refused.value.reason == "sms_too_long"
    assert len(http.calls) == 0


def test_forged_signature_is_403_and_changes_nothing(shop):
    shopper = do_upsert_shopper(shop.store, "sam", {"phone": PHONE})

    response = twilio_post(
        "/webhooks/twilio/inbound/", {"From": PHONE, "Body": "STOP"}, signature="forged"
    )
    unsigned = twilio_post("/webhooks/twilio/inbound/", {"From": PHONE, "Body": "STOP"}, "")

    shopper.refresh_from_db()
    assert (response.status_code, unsigned.status_code) == (403, 403)
    assert shopper.opted_out_channels == []
    assert not Suppression.objects.exists()


def test_signature_over_other_params_is_rejected(shop):
    from twilio.request_validator import RequestValidator

    from tests.notifications.conftest import TWILIO_TOKEN

    url = f"{PUBLIC}/webhooks/twilio/inbound/"
    signed_for_help = RequestValidator(TWILIO_TOKEN).compute_signature(
        url, {"From": PHONE, "Body": "HELP"}
    )

    response = twilio_post(
        "/webhooks/twilio/inbound/", {"From": PHONE, "Body": "STOP"}, signed_for_help
    )

    assert response.status_code == 403


@pytest.mark.parametrize("word", ["STOP", "stop", "Unsubscribe", "CANCEL", "end", "QUIT"])
def test_stop_words_opt_the_number_out_in_every_store(shop, other_shop, word):
    here = do_upsert_shopper(shop.store, "sam", {"phone": PHONE})
    there = do_upsert_shopper(other_shop.store, "samuel", {"phone": PHONE})

    response = twilio_post("/webhooks/twilio/inbound/", {"From": PHONE, "Body": f" {word} "})

    here.refresh_from_db()
    there.refresh_from_db()
    assert response.status_code == 200
    assert here.opted_out_channels == ["sms"]
    assert there.opted_out_channels == ["sms"]
    assert Suppression.objects.filter(address=PHONE, channel="sms").count() == 2


def test_start_after_stop_opts_back_in(shop):
    shopper = do_upsert_shopper(shop.store, "sam", {"phone": PHONE})
    twilio_post("/webhooks/twilio/inbound/", {"From": PHONE, "Body": "STOP"})

    twilio_post("/webhooks/twilio/inbound/", {"From": PHONE, "Body": "start"})

    shopper.refresh_from_db()
    assert shopper.opted_out_channels == []
    assert not Suppression.objects.filter(address=PHONE).exists()


def test_help_is_answered_with_the_help_text(shop, settings):
    settings.SMS_HELP_TEXT = "Acme reminders. Reply STOP to stop."

    response = twilio_post("/webhooks/twilio/inbound/", {"From": PHONE, "Body": "HELP"})

    assert b"<Message>Acme reminders. Reply STOP to stop.</Message>" in response.content


def test_stop_is_honoured_before_the_next_send(shop, http):
    twilio_answers(http)
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.fallback_chain = ["sms"]
    shop.store.save()
    do_upsert_shopper(shop.store, "sam", {"phone": PHONE, "timezone": "UTC"})
    twilio_post("/webhooks/twilio/inbound/", {"From": PHONE, "Body": "STOP"})

    response = shop.client.post(
        "/api/v1/interventions",
        {"user_id": "sam", "channel": "sms", "personalization": {"body": "hi"}},
        format="json",
    )

    intervention = Intervention.objects.get(pk=response.json()["id"])
    assert intervention.status in (Status.SUPPRESSED, Status.FAILED)
    assert len(http.calls) == 0


def test_unknown_message_sid_still_answers_200(shop):
    response = twilio_post(
        "/webhooks/twilio/status/", {"MessageSid": "SMunknown", "MessageStatus": "delivered"}
    )

    assert response.status_code == 200


def test_event_to_twilio_to_status_callback_marks_delivered(shop, http):
    """End to end: trigger → rendered template at Twilio → status webhook → delivered."""
    twilio_answers(http)
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.save()
    shop.client.post(
        "/api/v1/templates",
        {
            "key": "reminder",
            "name": "Reminder",
            "content": {"en": {"sms": {"body": "Hi {{ shopper.first_name }}, come back!"}}},
            "publish": True,
        },
        format="json",
    )

    response = shop.client.post(
        "/api/v1/interventions",
        {
            "user_id": "sam",
            "channel": "sms",
            "template": "reminder",
            "user": {"phone": PHONE, "first_name": "Zoé", "timezone": "UTC"},
        },
        format="json",
    )
    intervention = Intervention.objects.get(pk=response.json()["id"])
    intervention.refresh_from_db()
    assert parse_qs(http.calls[0].request.body)["Body"] == ["Hi Zoé, come back!"]
    assert intervention.status == Status.SENT
    assert intervention.template_version.number == 1

    twilio_post(
        "/webhooks/twilio/status/",
        {"MessageSid": intervention.provider_message_id, "MessageStatus": "delivered"},
    )

    intervention.refresh_from_db()
    assert intervention.status == Status.DELIVERED
    assert TrackingEvent.objects.filter(intervention=intervention, kind="delivered").count() == 1


def test_status_callback_settles_an_sms_whose_worker_died_before_seeing_the_sid(shop, http):
    twilio_answers(http)
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.save()
    response = shop.client.post(
        "/api/v1/interventions",
        {"user_id": "sam", "channel": "sms", "user": {"phone": PHONE}, "scheduled_at": later()},
        format="json",
    )
    intervention = Intervention.objects.get(pk=response.json()["id"])
    # Claimed, then the worker died inside the Twilio call: no MessageSid was recorded.
    Intervention.objects.filter(pk=intervention.pk).update(
        status=Status.SENDING, updated_at=timezone.now() - timedelta(hours=1)
    )
    do_sweep_stuck()
    intervention.refresh_from_db()
    assert (intervention.status, intervention.provider_message_id) == (Status.UNCONFIRMED, "")

    twilio_post(
        f"/webhooks/twilio/status/?intervention={intervention.pk}",
        {"MessageSid": "SM" + "c" * 32, "MessageStatus": "delivered"},
    )

    intervention.refresh_from_db()
    assert intervention.status == Status.DELIVERED


def test_a_non_numeric_error_code_is_recorded_not_a_server_error(shop):
    response = twilio_post(
        "/webhooks/twilio/status/",
        {"MessageSid": "SMunknown", "MessageStatus": "failed", "ErrorCode": "30003x"},
    )

    assert response.status_code == 200


def test_undelivered_to_a_dead_number_fails_and_suppresses_it(shop, http):
    intervention = sent_sms(shop, http)

    twilio_post(
        "/webhooks/twilio/status/",
        {
            "MessageSid": intervention.provider_message_id,
            "MessageStatus": "undelivered",
            "ErrorCode": "30005",
        },
    )

    intervention.refresh_from_db()
    assert intervention.status == Status.FAILED
    assert "sms_undelivered_30005" in intervention.status_reason
    assert Suppression.objects.filter(store=shop.store, channel="sms", address=PHONE).exists()


def test_a_replayed_stop_does_not_undo_a_later_start(shop):
    shopper = do_upsert_shopper(shop.store, "sam", {"phone": PHONE})
    stop = {"MessageSid": "SM" + "1" * 32, "From": PHONE, "Body": "STOP"}
    twilio_post("/webhooks/twilio/inbound/", stop)
    twilio_post(
        "/webhooks/twilio/inbound/", {"MessageSid": "SM" + "2" * 32, "From": PHONE, "Body": "START"}
    )

    replay = twilio_post("/webhooks/twilio/inbound/", stop)

    shopper.refresh_from_db()
    assert replay.status_code == 200
    assert shopper.opted_out_channels == []
    assert not Suppression.objects.filter(address=PHONE).exists()


def test_a_replayed_help_is_not_answered_twice(shop, settings):
    settings.SMS_HELP_TEXT = "Acme reminders. Reply STOP to stop."
    help_request = {"MessageSid": "SM" + "3" * 32, "From": PHONE, "Body": "HELP"}
    first = twilio_post("/webhooks/twilio/inbound/", help_request)

    replay = twilio_post("/webhooks/twilio/inbound/", help_request)

    assert b"<Message>" in first.content
    assert replay.status_code == 200
    assert b"<Message>" not in replay.content


def sent_sms(shop, http):
    twilio_answers(http)
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.fallback_chain = ["sms"]
    shop.store.save()
    response = shop.client.post(
        "/api/v1/interventions",
        {
            "user_id": "sam",
            "channel": "sms",
            "personalization": {"body": "hi"},
            "user": {"phone": PHONE, "timezone": "UTC"},
        },
        format="json",
    )
    intervention = Intervention.objects.get(pk=response.json()["id"])
    intervention.refresh_from_db()
    assert intervention.status == Status.SENT
    return intervention


@pytest.mark.parametrize(
    ("status", "kind"), [("undelivered", "failed"), ("delivered", "delivered")]
)
def test_a_replayed_status_callback_adds_no_second_tracking_row(shop, http, status, kind):
    intervention = sent_sms(shop, http)
    callback = {
        "MessageSid": intervention.provider_message_id,
        "MessageStatus": status,
        "ErrorCode": "30003" if status == "undelivered" else "",
    }
    twilio_post("/webhooks/twilio/status/", callback)

    replay = twilio_post("/webhooks/twilio/status/", callback)

    assert replay.status_code == 200
    assert TrackingEvent.objects.filter(intervention=intervention, kind=kind).count() == 1
