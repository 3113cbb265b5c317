"""Forged ESP tracking webhooks: only the configured ESP's endpoint exists, and only
with its own credential (notifications/esp_webhooks.py)."""

import base64
import hashlib
import hmac

import pytest
from django.core.checks import Warning
from django.test import Client

from interventions.models import Status
from notifications.checks import check_provider_credentials
from notifications.models import Suppression
from tests.notifications.conftest import WEBHOOK_AUTH, anymail_post
from tests.notifications.test_email import MESSAGE_ID, trigger_email

pytestmark = pytest.mark.django_db(transaction=True)

MAILGUN_KEY = "mailgun-signing-key"


def postmark_bounce(intervention):
    return {
        "RecordType": "Bounce",
        "ID": 42,
        "Type": "HardBounce",
        "MessageID": MESSAGE_ID,
        "Email": "sam@example.test",
        "BouncedAt": "2026-11-23T15:00:00Z",
        "Metadata": {"intervention_id": str(intervention.pk)},
    }


def postmark_unsubscribe(intervention):
    return {
        "RecordType": "SubscriptionChange",
        "MessageID": MESSAGE_ID,
        "Recipient": "sam@example.test",
        "SuppressSending": True,
        "SuppressionReason": "ManualSuppression",
        "ChangedAt": "2026-11-23T15:00:00Z",
        "Metadata": {"intervention_id": str(intervention.pk)},
    }


def sendgrid_bounce(intervention):
    return [
        {
            "event": "bounce",
            "type": "bounce",
            "email": "sam@example.test",
            "timestamp": 1763910000,
            "sg_message_id": MESSAGE_ID,
            "intervention_id": str(intervention.pk),
        }
    ]


def mailgun_event(intervention, event="failed", key=MAILGUN_KEY):
    timestamp, token = "1763910000", "t" * 50
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256)
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature.hexdigest()},
        "event-data": {
            "event": event,
            "severity": "permanent",
            "timestamp": 1763910000.0,
            "id": "mg-event-1",
            "recipient": "sam@example.test",
            "message": {"headers": {"message-id": MESSAGE_ID}},
            "user-variables": {"intervention_id": str(intervention.pk)},
        },
    }


def assert_unchanged(shop, intervention):
    intervention.refresh_from_db()
    intervention.shopper.refresh_from_db()
    assert intervention.status == Status.SENT
    assert intervention.shopper.opted_out_channels == []
    assert not Suppression.objects.filter(store=shop.store).exists()


def test_another_esps_credential_does_not_open_the_configured_esps_webhook(shop, http, settings):
    """Mailgun's signing key set, no WEBHOOK_SECRET: Postmark's endpoint stays shut."""
    intervention = trigger_email(shop, http)
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": "postmark-token",
        "MAILGUN_WEBHOOK_SIGNING_KEY": "k",
    }

    bounce = anymail_post("postmark", postmark_bounce(intervention), auth="anyone:anything")
    unsubscribe = anymail_post(
        "postmark", postmark_unsubscribe(intervention), auth="anyone:anything"
    )

    assert (bounce.status_code, unsubscribe.status_code) == (403, 403)
    assert_unchanged(shop, intervention)


@pytest.mark.parametrize("esp", ["sendgrid", "mailgun", "amazon_ses", "mailjet"])
def test_other_esps_endpoints_are_not_routed(shop, http, esp):
    intervention = trigger_email(shop, http)
    payload = {
        "sendgrid": sendgrid_bounce(intervention),
        "mailgun": mailgun_event(intervention, key=""),
    }.get(esp, postmark_bounce(intervention))

    response = anymail_post(esp, payload)  # with the valid WEBHOOK_SECRET, even

    assert response.status_code == 404
    assert_unchanged(shop, intervention)


def test_the_configured_esps_inbound_endpoint_is_not_routed(shop):
    response = Client().post(
        "/webhooks/anymail/postmark/inbound/",
        "{}",
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(WEBHOOK_AUTH.encode()).decode(),
    )

    assert response.status_code == 404


def mailgun_configured(settings, signing_key=MAILGUN_KEY):
    settings.EMAIL_ESP = "mailgun"
    settings.ANYMAIL = {
        "MAILGUN_API_KEY": "mailgun-api-key",
        "MAILGUN_SENDER_DOMAIN": "mg.example.test",
        "MAILGUN_WEBHOOK_SIGNING_KEY": signing_key,
        "WEBHOOK_SECRET": WEBHOOK_AUTH,
    }


def test_mailgun_webhook_is_refused_without_its_signing_key(shop, http, settings):
    """Anymail would sign-check with an empty key, which anyone can compute."""
    intervention = trigger_email(shop, http)
    mailgun_configured(settings, signing_key="")

    response = anymail_post("mailgun", mailgun_event(intervention, key=""))

    assert response.status_code == 403
    assert_unchanged(shop, intervention)


def test_mailgun_webhook_takes_signed_events_and_refuses_forged_ones(shop, http, settings):
    intervention = trigger_email(shop, http)
    mailgun_configured(settings)

    forged = anymail_post("mailgun", mailgun_event(intervention, key="guessed"))
    assert forged.status_code == 400
    assert_unchanged(shop, intervention)

    signed = anymail_post("mailgun", mailgun_event(intervention))

    intervention.refresh_from_db()
    assert signed.status_code == 200
    assert intervention.status == Status.FAILED


@pytest.mark.parametrize(
    ("esp", "anymail", "named"),
    [
        (
            "mailgun",
            {"MAILGUN_API_KEY": "k", "MAILGUN_SENDER_DOMAIN": "d", "WEBHOOK_SECRET": "a:b"},
            "MAILGUN_WEBHOOK_SIGNING_KEY",
        ),
        (
            "postmark",
            {"POSTMARK_SERVER_TOKEN": "t", "MAILGUN_WEBHOOK_SIGNING_KEY": "k"},
            "ANYMAIL_WEBHOOK_SECRET",
        ),
        (
            "sendgrid",
            {"SENDGRID_API_KEY": "k", "MAILGUN_WEBHOOK_SIGNING_KEY": "k"},
            "ANYMAIL_WEBHOOK_SECRET",
        ),
    ],
)
def test_check_warns_when_the_configured_esps_webhook_has_no_credential(
    settings, esp, anymail, named
):
    settings.EMAIL_ESP = esp
    settings.ANYMAIL = anymail

    warnings = [p for p in check_provider_credentials() if isinstance(p, Warning)]

    assert [w.id for w in warnings] == ["notifications.W001"]
    assert warnings[0].msg.startswith(f"{named} is empty: the {esp} tracking webhook")


@pytest.mark.parametrize(
    ("esp", "anymail"),
    [
        (
            "mailgun",
            {
                "MAILGUN_API_KEY": "k",
                "MAILGUN_SENDER_DOMAIN": "d",
                "MAILGUN_WEBHOOK_SIGNING_KEY": "s",
            },
        ),
        ("postmark", {"POSTMARK_SERVER_TOKEN": "t", "WEBHOOK_SECRET": "a:b"}),
    ],
)
def test_check_is_quiet_when_the_configured_esps_webhook_has_its_credential(settings, esp, anymail):
    settings.EMAIL_ESP = esp
    settings.ANYMAIL = anymail

    assert not [p for p in check_provider_credentials() if isinstance(p, Warning)]


def test_the_configured_esps_webhook_answers_the_setup_probe(shop):
    assert Client().head("/webhooks/anymail/postmark/tracking/").status_code == 200
    assert Client().head("/webhooks/anymail/sendgrid/tracking/").status_code == 404
