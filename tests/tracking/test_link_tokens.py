"""Link tokens in messages (recovery, open pixel, unsubscribe) are opaque, bound to their
purpose and expire (docs/operations.md#link-tokens)."""

import base64
import binascii
import re
import uuid
from datetime import timedelta
from urllib.parse import urlparse

import pytest
import time_machine
from django.core import signing
from django.test import Client
from django.utils import timezone

from notifications.links import UNSUBSCRIBE_SALT, unsubscribe_url
from notifications.models import Suppression
from stores.actions import do_upsert_shopper
from tests.tracking.conftest import send
from tracking.links import RECOVERY_SALT, open_pixel_url, recovery_url
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "Sam.Secret@Example.test"
CART = "cart-4711"


@pytest.fixture
def cart_page(shop):
    shop.store.cart_url_template = "https://acme.example/cart?id={cart_id}"
    shop.store.save()


def token_of(url):
    return urlparse(url).path.rsplit("/", 1)[1].removesuffix(".gif")


def everything_readable_in(token):
    """The token as text plus every way its pieces decode (base64 of any padding, hex)."""
    readable = [token.lower()]
    for piece in re.split(r"[:.]", token):
        for candidate in (piece, piece[1:], piece[2:], piece[3:]):
            try:
                raw = base64.urlsafe_b64decode(candidate + "=" * (-len(candidate) % 4))
            except (binascii.Error, ValueError):
                continue
            readable.append(raw.decode("latin-1").lower())
            readable.append(raw.hex())
    return "\n".join(readable)


def test_links_in_messages_reveal_no_ids_or_addresses(shop):
    intervention_id = uuid.uuid4()
    store_id = shop.store.pk
    secrets = [str(store_id), store_id.hex, str(intervention_id), intervention_id.hex, CART]

    tokens = {
        "recovery": token_of(recovery_url(store_id, CART, intervention_id)),
        "pixel": token_of(open_pixel_url(intervention_id)),
        "unsubscribe": token_of(unsubscribe_url(store_id, EMAIL)),
    }

    for kind, token in tokens.items():
        readable = everything_readable_in(token)
        for secret in [*secrets, EMAIL.lower(), "sam.secret"]:
            assert secret.lower() not in readable, (kind, secret)
    assert len(tokens["recovery"]) < 120  # still fits an SMS comfortably


def test_recovery_link_works_within_its_lifetime_and_not_after(shop, client, cart_page, settings):
    settings.RECOVERY_LINK_MAX_AGE_DAYS = 14
    intervention_id = send(shop)
    link = urlparse(recovery_url(shop.store.pk, CART, intervention_id)).path

    with time_machine.travel(timezone.now() + timedelta(days=13)):
        fresh = client.get(link)
    with time_machine.travel(timezone.now() + timedelta(days=15)):
        expired = client.get(link)

    assert fresh.status_code == 302
    assert fresh["Location"] == f"https://acme.example/cart?id={CART}"
    assert expired.status_code == 404
    assert expired.json()["error"]["code"] == "invalid_link"
    assert TrackingEvent.objects.filter(kind="clicked").count() == 1


def test_a_token_opens_only_the_kind_of_link_it_was_made_for(shop, client, cart_page):
    do_upsert_shopper(shop.store, "sam", {"email": EMAIL})
    unsubscribe_token = token_of(unsubscribe_url(shop.store.pk, EMAIL))
    recovery_token = token_of(recovery_url(shop.store.pk, CART))

    as_recovery = client.get(f"/r/{unsubscribe_token}")
    as_unsubscribe = client.post(f"/unsubscribe/{recovery_token}")

    assert as_recovery.status_code == 404
    assert as_unsubscribe.status_code == 404
    assert not Suppression.objects.exists()


def test_open_pixel_stops_counting_after_its_lifetime(shop, client, settings):
    settings.OPEN_PIXEL_MAX_AGE_DAYS = 90
    intervention_id = send(shop)
    pixel = urlparse(open_pixel_url(intervention_id)).path

    with time_machine.travel(timezone.now() + timedelta(days=91)):
        late = client.get(pixel)

    assert late.status_code == 200  # still the image, whatever the token
    assert not TrackingEvent.objects.filter(kind="opened").exists()


def test_unsubscribe_link_expires_after_its_lifetime(shop, settings):
    settings.UNSUBSCRIBE_LINK_MAX_AGE_DAYS = 365
    do_upsert_shopper(shop.store, "sam", {"email": EMAIL})
    path = urlparse(unsubscribe_url(shop.store.pk, EMAIL)).path

    with time_machine.travel(timezone.now() + timedelta(days=366)):
        late = Client().post(path)

    assert late.status_code == 404
    assert not Suppression.objects.exists()


def test_links_signed_before_sealing_keep_working_until_they_expire(shop, client, cart_page):
    # Given links from emails sent before the tokens were sealed
    intervention_id = send(shop)
    do_upsert_shopper(shop.store, "sam", {"email": EMAIL})
    old_recovery = signing.dumps(
        {"s": str(shop.store.pk), "c": CART, "i": intervention_id}, salt=RECOVERY_SALT
    )
    old_unsubscribe = signing.dumps(
        {"s": str(shop.store.pk), "a": EMAIL.lower()}, salt=UNSUBSCRIBE_SALT
    )

    # When they are followed
    with time_machine.travel(timezone.now() + timedelta(days=31)):
        expired_recovery = client.get(f"/r/{old_recovery}")
    recovery = client.get(f"/r/{old_recovery}")
    unsubscribe = Client().post(f"/unsubscribe/{old_unsubscribe}")

    # Then they still work, until the lifetime they were signed with has passed
    assert recovery.status_code == 302
    assert unsubscribe.status_code == 200
    assert Suppression.objects.filter(store=shop.store, channel="email").exists()
    assert expired_recovery.status_code == 404
