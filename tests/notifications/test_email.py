"""Email through the real anymail Postmark backend, Postmark stubbed at its HTTP edge."""

import json
import uuid
from datetime import timedelta
from urllib.parse import urlparse

import pytest
import responses
from django.test import Client
from django.utils import timezone
from responses import matchers

from interventions.actions import do_sweep_stuck
from interventions.models import Intervention, Status
from notifications.links import unsubscribe_url
from notifications.models import Suppression
from notifications.transports.base import OutboundMessage, TransportError, get_transport
from stores.actions import do_upsert_shopper
from tests.notifications.conftest import POSTMARK_SEND, anymail_post
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)

POSTMARK_SEARCH = "https://api.postmarkapp.com/messages/outbound"

MESSAGE_ID = "b7bc2f4a-e38e-4336-af7d-e6c392c2f817"


def postmark_accepts(http, **overrides):
    body = {"To": "sam@example.test", "MessageID": MESSAGE_ID, "ErrorCode": 0, "Message": "OK"}
    http.add(responses.POST, POSTMARK_SEND, json={**body, **overrides})


def email(store_id="4b7c1c9e-0000-0000-0000-000000000001"):
    return OutboundMessage(
        intervention_id="i-1",
        store_id=store_id,
        channel="email",
        recipient="sam@example.test",
        content={"subject": "Your cart", "html": "<p>Come back</p>", "text": "Come back"},
    )


def test_email_reaches_the_esp_with_both_parts_and_one_click_unsubscribe(http):
    postmark_accepts(http)

    message_id = get_transport("email").send(email())

    sent = json.loads(http.calls[0].request.body)
    headers = {h["Name"]: h["Value"] for h in sent["Headers"]}
    assert message_id == MESSAGE_ID
    assert sent["To"] == "sam@example.test"
    assert sent["From"] == "Acme <shop@acme.example>"
    assert (sent["Subject"], sent["HtmlBody"], sent["TextBody"]) == (
        "Your cart",
        "<p>Come back</p>",
        "Come back",
    )
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith("<https://engine.example.test/unsubscribe/")
    assert sent["Metadata"] == {"intervention_id": "i-1"}
    assert http.calls[0].request.headers["X-Postmark-Server-Token"] == "postmark-token"


def test_inactive_recipient_is_permanent_and_suppresses(http):
    http.add(
        responses.POST,
        POSTMARK_SEND,
        status=422,
        json={
            "ErrorCode": 406,
            "Message": "You tried to send to a recipient that has been marked as inactive.\n"
            "Found inactive addresses: sam@example.test.\n"
            "Inactive recipients are ones that have generated a hard bounce or a spam complaint.",
        },
    )

    with pytest.raises(TransportError) as refused:
        get_transport("email").send(email())

    assert refused.value.permanent
    assert refused.value.suppress_address


@pytest.mark.parametrize(
    ("status", "permanent"), [(500, False), (503, False), (429, False), (401, True)]
)
def test_esp_errors_are_classified_by_status(http, status, permanent):
    http.add(responses.POST, POSTMARK_SEND, status=status, json={"ErrorCode": 10, "Message": "x"})

    with pytest.raises(TransportError) as failed:
        get_transport("email").send(email())

    assert failed.value.permanent is permanent


def test_one_click_unsubscribe_post_opts_the_shopper_out(shop):
    shopper = do_upsert_shopper(shop.store, "sam", {"email": "Sam@Example.test"})
    path = urlparse(unsubscribe_url(shop.store.pk, shopper.email)).path

    page = Client().get(path)
    shopper.refresh_from_db()
    assert shopper.opted_out_channels == []  # a link scanner's GET changes nothing

    response = Client().post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )

    shopper.refresh_from_db()
    assert (page.status_code, response.status_code) == (200, 200)
    assert shopper.opted_out_channels == ["email"]
    assert Suppression.objects.filter(
        store=shop.store, channel="email", address="Sam@Example.test"
    ).exists()


def test_tampered_unsubscribe_token_is_404(shop):
    path = urlparse(unsubscribe_url(shop.store.pk, "sam@example.test")).path

    response = Client().post(path[:-3] + "xyz")

    assert response.status_code == 404


@pytest.mark.parametrize("method", ["get", "post"])
def test_unsubscribe_link_of_an_unknown_store_is_the_bad_link_404(shop, method):
    path = urlparse(unsubscribe_url(uuid.uuid4(), "sam@example.test")).path
    tampered = urlparse(unsubscribe_url(shop.store.pk, "sam@example.test")).path[:-3] + "xyz"

    response = getattr(Client(), method)(path)

    assert response.status_code == 404
    assert response.content == getattr(Client(), method)(tampered).content
    assert not Suppression.objects.exists()


def test_anymail_webhook_without_the_secret_is_refused(shop):
    response = anymail_post(
        "postmark", {"RecordType": "Delivery", "MessageID": MESSAGE_ID}, auth="x:y"
    )

    assert response.status_code in (400, 403)


def trigger_email(shop, http):
    postmark_accepts(http)
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.fallback_chain = ["email"]
    shop.store.save()
    shop.client.post(
        "/api/v1/templates",
        {
            "key": "reminder",
            "name": "Reminder",
            "variables": [{"name": "shopper.first_name", "default": "there"}],
            "content": {
                "en": {
                    "email": {
                        "subject": "{{ shopper.first_name }}, your cart at {{ store.name }}",
                        "html": "<p>Hi {{ shopper.first_name }}</p><a href='{{ cart.recovery_url }}'>Back</a>",
                    }
                }
            },
            "publish": True,
        },
        format="json",
    )
    response = shop.client.post(
        "/api/v1/interventions",
        {
            "user_id": "sam",
            "channel": "email",
            "template": "reminder",
            "cart_id": "c-1",
            "user": {"email": "sam@example.test", "timezone": "UTC"},
            "cart": {"value": "50.00", "currency": "EUR", "items": []},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    return Intervention.objects.get(pk=response.json()["id"])


def test_event_to_esp_to_delivery_webhook_marks_delivered(shop, http):
    """End to end: trigger → rendered email at the ESP → anymail webhook → delivered."""
    intervention = trigger_email(shop, http)

    sent = json.loads(http.calls[0].request.body)
    assert sent["Subject"] == "there, your cart at Acme Outdoor"
    assert "/r/" in sent["HtmlBody"]
    assert sent["TextBody"] == "Hi thereBack"
    intervention.refresh_from_db()
    assert (intervention.status, intervention.provider_message_id) == (Status.SENT, MESSAGE_ID)

    response = anymail_post(
        "postmark",
        {
            "RecordType": "Delivery",
            "MessageID": MESSAGE_ID,
            "Recipient": "sam@example.test",
            "DeliveredAt": "2026-11-23T15:00:00Z",
            "Metadata": {"intervention_id": str(intervention.pk)},
        },
    )

    intervention.refresh_from_db()
    assert response.status_code == 200
    assert intervention.status == Status.DELIVERED


def test_hard_bounce_fails_the_intervention_and_suppresses_the_address(shop, http):
    intervention = trigger_email(shop, http)

    anymail_post(
        "postmark",
        {
            "RecordType": "Bounce",
            "ID": 42,
            "Type": "HardBounce",
            "MessageID": MESSAGE_ID,
            "Email": "sam@example.test",
            "BouncedAt": "2026-11-23T15:00:00Z",
            "Metadata": {"intervention_id": str(intervention.pk)},
        },
    )

    intervention.refresh_from_db()
    assert intervention.status == Status.FAILED
    assert TrackingEvent.objects.filter(intervention=intervention, kind="bounced").exists()
    assert Suppression.objects.get(store=shop.store, channel="email").reason == "hard_bounce"


def test_complaint_suppresses_and_opts_out(shop, http):
    intervention = trigger_email(shop, http)

    anymail_post(
        "postmark",
        {
            "RecordType": "SpamComplaint",
            "ID": 43,
            "Type": "SpamComplaint",
            "MessageID": MESSAGE_ID,
            "Email": "sam@example.test",
            "BouncedAt": "2026-11-23T15:00:00Z",
        },
    )

    intervention.shopper.refresh_from_db()
    assert intervention.shopper.opted_out_channels == ["email"]
    assert TrackingEvent.objects.filter(intervention=intervention, kind="complained").exists()


def test_opens_and_clicks_become_tracking_events(shop, http):
    intervention = trigger_email(shop, http)

    anymail_post(
        "postmark",
        {
            "RecordType": "Open",
            "MessageID": MESSAGE_ID,
            "Recipient": "sam@example.test",
            "ReceivedAt": "2026-11-23T15:01:00Z",
        },
    )
    anymail_post(
        "postmark",
        {
            "RecordType": "Click",
            "MessageID": MESSAGE_ID,
            "Recipient": "sam@example.test",
            "ReceivedAt": "2026-11-23T15:02:00Z",
            "OriginalLink": "https://shop.example/cart",
        },
    )

    kinds = list(
        TrackingEvent.objects.filter(intervention=intervention).values_list("kind", flat=True)
    )
    assert kinds[-2:] == ["opened", "clicked"]


def test_webhook_for_an_unknown_message_answers_200(shop):
    response = anymail_post(
        "postmark",
        {
            "RecordType": "Delivery",
            "MessageID": "nope",
            "Recipient": "x@example.test",
            "DeliveredAt": "2026-11-23T15:00:00Z",
        },
    )

    assert response.status_code == 200


def test_email_webhooks_change_nothing_while_no_secret_is_configured(shop, http, settings):
    intervention = trigger_email(shop, http)
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "postmark-token"}

    response = anymail_post(
        "postmark",
        {
            "RecordType": "Bounce",
            "Type": "HardBounce",
            "MessageID": MESSAGE_ID,
            "Email": "sam@example.test",
            "BouncedAt": "2026-11-23T15:00:00Z",
        },
    )

    intervention.refresh_from_db()
    assert response.status_code == 403
    assert intervention.status == Status.SENT
    assert not Suppression.objects.exists()


def unconfirmed_email(shop) -> Intervention:
    """An email whose worker died inside the ESP call: claimed an hour ago, never recorded."""
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.save()
    later = (timezone.now() + timedelta(minutes=5)).isoformat()
    created = shop.client.post(
        "/api/v1/interventions",
        {"user_id": "sam", "channel": "email", "user": {"email": "sam@example.test"},
         "scheduled_at": later},
        format="json",
    ).json()  # fmt: skip
    Intervention.objects.filter(pk=created["id"]).update(
        status=Status.SENDING, updated_at=timezone.now() - timedelta(hours=1)
    )
    return Intervention.objects.get(pk=created["id"])


def postmark_search_finds(http, intervention, messages):
    http.add(
        responses.GET,
        POSTMARK_SEARCH,
        json={"TotalCount": len(messages), "Messages": messages},
        match=[
            matchers.query_param_matcher(
                {"count": "1", "offset": "0", "metadata_intervention_id": str(intervention.pk)}
            ),
            matchers.header_matcher({"X-Postmark-Server-Token": "postmark-token"}),
        ],
    )


def test_sweeper_confirms_an_email_the_esp_holds_instead_of_leaving_it_in_doubt(shop, http):
    intervention = unconfirmed_email(shop)
    postmark_search_finds(http, intervention, [{"MessageID": MESSAGE_ID}])

    counts = do_sweep_stuck()

    intervention.refresh_from_db()
    assert (counts["unconfirmed"], counts["confirmed"]) == (1, 1)
    assert (intervention.status, intervention.provider_message_id) == (Status.SENT, MESSAGE_ID)
    assert not [c for c in http.calls if c.request.url == POSTMARK_SEND]  # never re-sent


def test_an_email_the_esp_does_not_know_stays_unconfirmed_and_is_not_resent(shop, http):
    intervention = unconfirmed_email(shop)
    postmark_search_finds(http, intervention, [])

    do_sweep_stuck()

    intervention.refresh_from_db()
    assert intervention.status == Status.UNCONFIRMED
    assert not [c for c in http.calls if c.request.url == POSTMARK_SEND]
