"""GET /o/<token>.gif: the email open pixel."""

import re

import pytest

from templates.actions import do_create_version, do_publish_version
from templates.models import Template
from tests.tracking.conftest import send
from tracking.links import open_pixel_url
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def email_with_pixel(shop):
    template = Template.objects.create(store=shop.store, key="comeback", name="Come back")
    version = do_create_version(
        template,
        content={
            "en": {
                "email": {
                    "subject": "Your cart",
                    "text": "Your cart is waiting.",
                    "html": "<p>Your cart</p><img src='{{ open_pixel_url }}' width='1' height='1'>",
                }
            }
        },
    )
    do_publish_version(template, version)


def is_one_pixel_gif(response):
    body = response.content
    return (
        response.status_code == 200
        and response["Content-Type"] == "image/gif"
        and body.startswith(b"GIF89a")
        and body[6:10] == b"\x01\x00\x01\x00"
    )


def test_displaying_the_email_records_one_counted_open(shop, client, email_with_pixel):
    intervention_id = send(shop, template="comeback")
    html = shop.client.get(f"/api/v1/interventions/{intervention_id}").json()["content"]["html"]
    pixel = re.search(r"src='http://127\.0\.0\.1:8000(/o/[^']+\.gif)'", html).group(1)

    first = client.get(pixel)
    again = client.get(pixel)

    assert is_one_pixel_gif(first)
    assert is_one_pixel_gif(again)
    assert first["Cache-Control"] == "no-store, private"
    opens = TrackingEvent.objects.filter(intervention_id=intervention_id, kind="opened")
    assert [(o.source, o.duplicate) for o in opens] == [("pixel", False), ("pixel", True)]


@pytest.mark.parametrize("token", ["nonsense", "abc:def", "0" * 40])
def test_bad_token_still_gets_the_image_and_records_nothing(client, token):
    assert is_one_pixel_gif(client.get(f"/o/{token}.gif"))
    assert not TrackingEvent.objects.exists()


def test_forged_signature_for_a_real_intervention_records_nothing(shop, client):
    intervention_id = send(shop)
    real = open_pixel_url(intervention_id).rsplit("/", 1)[1]
    forged = real[:-8] + ("A" if real[-8] != "A" else "B") + real[-7:]

    assert is_one_pixel_gif(client.get(f"/o/{forged}"))
    assert not TrackingEvent.objects.filter(kind="opened").exists()
