"""Shared rate limits, segment counting, the credentials check and `send_test`."""

import io
import json
import subprocess
import time
import uuid
from urllib.parse import parse_qs

import pytest
import redis
import responses
import time_machine
from django.core.checks import run_checks
from django.core.management import CommandError, call_command

from notifications import ratelimit
from notifications.segments import count_segments
from notifications.transports.base import OutboundMessage, TransportError, get_transport
from tests.notifications.conftest import TWILIO_MESSAGES

pytestmark = pytest.mark.django_db

SPARE_REDIS_PORT = 18231


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # escape characters cost two septets
        ("€" * 81, "GSM-7", 2),
        ("é" * 160, "GSM-7", 1),  # é is in the GSM alphabet
        ("ê" * 70, "UCS-2", 1),  # ê is not
        ("ê" * 71, "UCS-2", 2),
        ("😀" * 35, "UCS-2", 1),  # two UTF-16 units each
        ("😀" * 36, "UCS-2", 2),
    ],
)
def test_sms_segments_are_counted_like_carriers_do(text, encoding, segments):
    counted = count_segments(text)

    assert (counted.encoding, counted.segments) == (encoding, segments)


def sms_to(phone):
    return OutboundMessage(
        intervention_id=str(uuid.uuid4()),
        store_id="s",
        channel="sms",
        recipient=phone,
        content={"body": "hi"},
    )


def test_rate_limit_defers_sends_over_the_providers_rate(http, settings):
    settings.NOTIFICATION_RATE_LIMITS = {"sms": 3}
    http.add(responses.POST, TWILIO_MESSAGES, status=201, json={"sid": "SM1"})
    transport = get_transport("sms")
    # The clock stands still mid-second, so all five tries share one window however
    # slowly a loaded machine runs them (a second far ahead: no earlier run's counter).
    standstill = int(time.time()) + 1000 * 86400 + 0.5

    outcomes = []
    with time_machine.travel(standstill, tick=False):
        for _ in range(5):
            try:
                transport.send(sms_to("+33612345678"))
                outcomes.append("sent")
            except TransportError as error:
                outcomes.append((error.reason, error.permanent, error.retry_after))

    assert outcomes == ["sent"] * 3 + [("rate_limited", False, 0.51)] * 2
    assert len(http.calls) == 3


def test_rate_limit_lets_sends_through_when_redis_is_down(http, settings, tmp_path):
    """Delivery must not stop with Redis; the provider's own 429 is then the limit."""
    settings.NOTIFICATION_RATE_LIMITS = {"sms": 1}
    server = subprocess.Popen(
        ["redis-server", "--port", str(SPARE_REDIS_PORT), "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=SPARE_REDIS_PORT)
        for _ in range(50):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        settings.REDIS_URL = f"redis://127.0.0.1:{SPARE_REDIS_PORT}/0"
        ratelimit._redis.cache_clear()
        http.add(responses.POST, TWILIO_MESSAGES, status=201, json={"sid": "SM1"})
        server.terminate()
        server.wait(5)

        get_transport("sms").send(sms_to("+33612345678"))
        get_transport("sms").send(sms_to("+33612345678"))
    finally:
        if server.poll() is None:
            server.kill()
        ratelimit._redis.cache_clear()

    assert len(http.calls) == 2


def test_real_provider_without_credentials_is_a_system_check_error(settings):
    settings.TWILIO_AUTH_TOKEN = ""
    settings.FCM_CREDENTIALS_FILE = "/nonexistent.json"
    settings.ANYMAIL = {"WEBHOOK_SECRET": ""}

    ids = {message.id for message in run_checks(tags=["notifications"])}

    assert {"notifications.E002", "notifications.E003", "notifications.E005"} <= ids
    assert "notifications.W001" in ids


def test_log_transports_need_no_credentials(settings):
    settings.NOTIFICATION_TRANSPORTS = {"email": "log", "sms": "log", "push": "log"}

    assert run_checks(tags=["notifications"]) == []


def test_send_test_sends_one_message_through_the_configured_provider(http):
    http.add(responses.POST, TWILIO_MESSAGES, status=201, json={"sid": "SMtest"})
    out = io.StringIO()

    call_command("send_test", "--channel", "sms", "--to", "+33612345678", stdout=out)

    assert json.loads(out.getvalue()) == {"transport": "twilio", "provider_message_id": "SMtest"}
    assert parse_qs(http.calls[0].request.body)["To"] == ["+33612345678"]


def test_send_test_renders_a_stores_template(http, shop):
    shop.client.post(
        "/api/v1/templates",
        {
            "key": "reminder",
            "name": "R",
            "content": {"en": {"sms": {"body": "Hi {{ shopper.first_name }}"}}},
            "publish": True,
        },
        format="json",
    )
    http.add(responses.POST, TWILIO_MESSAGES, status=201, json={"sid": "SMtest"})

    call_command(
        "send_test", "--channel", "sms", "--to", "+33612345678", "--template", "reminder",
        "--store", str(shop.store.pk), stdout=io.StringIO(),
    )  # fmt: skip

    assert parse_qs(http.calls[0].request.body)["Body"] == ["Hi Alex"]


def test_send_test_reports_the_providers_refusal(http):
    http.add(
        responses.POST,
        TWILIO_MESSAGES,
        status=400,
        json={"code": 21211, "message": "bad", "status": 400},
    )

    with pytest.raises(CommandError, match="permanent, invalid_number"):
        call_command("send_test", "--channel", "sms", "--to", "+1", stdout=io.StringIO())
