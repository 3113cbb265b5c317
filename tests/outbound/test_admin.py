"""Webhook endpoints in the admin: an owner adds one and sees its secret once, and sends
chosen deliveries again."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from outbound.actions import do_dispatch_outbox
from outbound.models import WebhookDelivery, WebhookEndpoint
from stores.actions import do_grant_store_membership
from stores.models import StoreRole
from tests.outbound.conftest import send

pytestmark = pytest.mark.django_db

ADD = "/admin/outbound/webhookendpoint/add/"
DELIVERIES = "/admin/outbound/webhookdelivery/"


def owner_of(store, username="owner", role=StoreRole.OWNER) -> Client:
    user = User.objects.create_user(username, is_staff=True)
    do_grant_store_membership(user, store, role)
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


@pytest.mark.django_db(transaction=True)
def test_an_owner_sends_a_delivered_event_again_from_the_admin(
    shop, other_shop, receiver, endpoint
):
    # given an event the receiver already accepted
    send(shop)
    do_dispatch_outbox()
    first_round = receiver.ids()
    delivery = WebhookDelivery.objects.filter(endpoint=endpoint).first()
    assert delivery is not None
    assert delivery.status == "delivered"

    def replay(client):
        page = client.post(
            DELIVERIES, {"action": "replay", "_selected_action": [delivery.pk]}, follow=True
        )
        do_dispatch_outbox()
        return page.content.decode()

    # when another store's owner, then this store's marketer, then its owner press replay
    owner, marketer = owner_of(shop.store), owner_of(shop.store, "mia", StoreRole.MARKETER)
    replay(owner_of(other_shop.store, "rival"))
    replay(marketer)
    offered = owner.get(DELIVERIES).content.decode()
    page = replay(owner)

    # then only the owner's press sends it again, with its original webhook-id
    assert 'value="replay"' in offered
    assert 'value="replay"' not in marketer.get(DELIVERIES).content.decode()
    assert "1 event(s) queued to be sent again" in page
    assert receiver.ids() == [*first_round, delivery.event.webhook_id]
