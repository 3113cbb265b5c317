import json
import time

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from rest_framework.test import APIClient

from stores.actions import do_revoke_api_keys
from stores.api_keys import CHANNEL, VERIFIED
from stores.models import StoreApiKey

pytestmark = pytest.mark.django_db


def test_create_store_prints_a_key_that_authenticates(capsys):
    call_command("create_store", "--name", "Corner Shop")
    printed = json.loads(capsys.readouterr().out)

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {printed['api_key']}")
    response = client.get(f"/api/v1/stores/{printed['store_id']}")

    assert response.status_code == 200
    assert response.json()["name"] == "Corner Shop"


def test_keys_are_stored_hashed(shop):
    stored = StoreApiKey.objects.get(store=shop.store)

    assert shop.api_key not in (stored.hashed_key, stored.id)
    assert shop.api_key.startswith(stored.prefix + ".")


def test_revoked_key_is_refused(shop):
    do_revoke_api_keys(shop.store, "default")

    response = shop.client.get(f"/api/v1/stores/{shop.store.pk}")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.fixture
def remembered_keys(settings):
    """The web processes' setting: verified keys remembered, the listener subscribed."""
    settings.API_KEY_CACHE_SECONDS = 60
    VERIFIED.start_listener()
    deadline = time.monotonic() + 5
    while not VERIFIED.listening and time.monotonic() < deadline:
        time.sleep(0.02)
    assert VERIFIED.listening


def test_a_revoked_key_is_refused_at_once_although_keys_are_remembered(shop, remembered_keys):
    # Given a key this process verified and remembers for a minute
    assert shop.client.get(f"/api/v1/stores/{shop.store.pk}").status_code == 200
    assert shop.client.get(f"/api/v1/stores/{shop.store.pk}").status_code == 200

    # When the store revokes it
    do_revoke_api_keys(shop.store, "default")

    # Then the next request is refused
    response = shop.client.get(f"/api/v1/stores/{shop.store.pk}")
    assert response.status_code == 401


def test_a_revocation_announced_by_another_process_reaches_this_one(shop, remembered_keys):
    # Given a key this process remembers
    assert shop.client.get(f"/api/v1/stores/{shop.store.pk}").status_code == 200

    # When another process revokes it and announces the change on Redis
    StoreApiKey.objects.filter(store=shop.store).update(revoked=True)
    redis.Redis.from_url(settings.REDIS_URL).publish(CHANNEL, "changed")

    # Then this process refuses the key as soon as the message is in (well under a second)
    deadline = time.monotonic() + 2
    status = 200
    while status == 200 and time.monotonic() < deadline:
        status = shop.client.get(f"/api/v1/stores/{shop.store.pk}").status_code
        time.sleep(0.01)
    assert status == 401


def test_a_store_edited_through_the_api_decides_with_its_new_settings(shop, remembered_keys):
    # Given a key (and its store, without quiet hours) this process remembers
    shop.client.patch(
        f"/api/v1/stores/{shop.store.pk}",
        {"quiet_hours_start": None, "quiet_hours_end": None},
        format="json",
    )
    sms = {"user_id": "sam", "channel": "sms", "user": {"phone": "+33612345678"}}
    assert shop.client.post("/api/v1/interventions", sms, format="json").json()["status"] == (
        "queued"
    )

    # When the store sets quiet hours all day through the API
    shop.client.patch(
        f"/api/v1/stores/{shop.store.pk}",
        {"quiet_hours_start": "00:00", "quiet_hours_end": "23:59"},
        format="json",
    )

    # Then the next trigger is decided with them
    response = shop.client.post("/api/v1/interventions", sms, format="json")
    assert response.json()["status"] == "scheduled"


@pytest.mark.parametrize(
    "header",
    ["", "Bearer abc", "Api-Key ", "Api-Key nope.nope", "Api-Key not-a-key-at-all"],
)
def test_missing_or_bad_key_is_401_with_the_error_shape(db, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/v1/shoppers")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Api-Key"
    assert set(response.json()["error"]) == {"code", "message", "fields"}


def test_create_store_rejects_an_unknown_timezone():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="IANA"):
        call_command("create_store", "--name", "X", "--timezone", "Mars/Olympus")
