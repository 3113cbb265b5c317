"""Webhook endpoints in the admin: an owner adds one and sees its secret once."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from outbound.models import WebhookEndpoint
from stores.actions import do_grant_store_membership
from stores.models import StoreRole

pytestmark = pytest.mark.django_db

ADD = "/admin/outbound/webhookendpoint/add/"


def owner_of(store) -> Client:
    user = User.objects.create_user("owner", is_staff=True)
    do_grant_store_membership(user, store, StoreRole.OWNER)
    client = Client()
    client.force_login(user)
    return client


def add(client, store, url):
    return client.post(
        ADD,
        {"store": store.pk, "url": url, "description": "", "event_types": "[]", "enabled": "on"},
        follow=True,
    )


def test_the_secret_is_shown_once_after_adding_an_endpoint(shop):
    client = owner_of(shop.store)

    added = add(client, shop.store, "https://93.184.215.14/hooks")

    endpoint = WebhookEndpoint.objects.get(store=shop.store)
    assert endpoint.secret.startswith("whsec_")
    assert endpoint.secret in added.content.decode()
    change = client.get(f"/admin/outbound/webhookendpoint/{endpoint.pk}/change/")
    assert change.status_code == 200
    assert endpoint.secret not in change.content.decode()


def test_a_private_target_is_refused_in_the_form(shop, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    client = owner_of(shop.store)

    page = add(client, shop.store, "http://10.0.0.7/hooks")

    assert "private, loopback or reserved" in page.content.decode()
    assert not WebhookEndpoint.objects.exists()
