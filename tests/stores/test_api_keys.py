import json

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from stores.actions import do_revoke_api_keys
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
