"""Real provider SDKs, stubbed at their HTTP edge with ``responses``."""

import base64
import json
from urllib.parse import urlencode

import firebase_admin
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client
from twilio.request_validator import RequestValidator

from notifications.transports.base import get_transport

PUBLIC = "https://engine.example.test"
TWILIO_SID = "AC" + "1" * 32
TWILIO_TOKEN = "twilio-auth-token"
TWILIO_MESSAGES = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
POSTMARK_SEND = "https://api.postmarkapp.com/email"
WEBHOOK_AUTH = "hook:s3cret"
FCM_PROJECT = "engine-test"
FCM_SEND = f"https://fcm.googleapis.com/v1/projects/{FCM_PROJECT}/messages:send"
GOOGLE_TOKEN = "https://oauth2.googleapis.com/token"


@pytest.fixture(autouse=True)
def provider_settings(settings, tmp_path):
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.NOTIFICATION_RATE_LIMITS = {"email": 0, "sms": 0, "push": 0}
    settings.TWILIO_ACCOUNT_SID = TWILIO_SID
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.EMAIL_ESP = "postmark"
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "Acme <shop@acme.example>"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "postmark-token", "WEBHOOK_SECRET": WEBHOOK_AUTH}
    settings.FCM_CREDENTIALS_FILE = str(write_service_account(tmp_path))
    settings.NOTIFICATION_TRANSPORTS = {
        **settings.NOTIFICATION_TRANSPORTS,
        "email": "anymail",
        "sms": "twilio",
        "push": "fcm",
    }
    get_transport.cache_clear()
    yield
    get_transport.cache_clear()
    for app in list(firebase_admin._apps.values()):
        firebase_admin.delete_app(app)


@pytest.fixture
def http():
    """Every outbound HTTP request of the SDKs; an unexpected one fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(
            responses.POST,
            GOOGLE_TOKEN,
            json={"access_token": "ya29.test", "expires_in": 3600, "token_type": "Bearer"},
        )
        yield mock


def write_service_account(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = tmp_path / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": FCM_PROJECT,
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": f"engine@{FCM_PROJECT}.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": GOOGLE_TOKEN,
            }
        )
    )
    return path


def twilio_post(path, params, signature=None):
    """POST as Twilio does: form-encoded, signed over the public URL and the params."""
    url = f"{PUBLIC}{path}"
    if signature is None:
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    return Client().post(
        path,
        urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )


def anymail_post(esp, payload, auth=WEBHOOK_AUTH):
    return Client().post(
        f"/webhooks/anymail/{esp}/tracking/",
        json.dumps(payload),
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(auth.encode()).decode(),
    )
