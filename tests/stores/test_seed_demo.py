"""The demo seed shows the per-store admin: its marketer sees the demo store and nothing else."""

import io
import json

import pytest
from django.core.management import call_command
from django.test import Client

from stores.actions import do_create_store
from stores.models import StoreMembership

pytestmark = pytest.mark.django_db


def seed() -> dict[str, str]:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_demo_marketer_sees_only_the_demo_store():
    do_create_store(name="Somebody Else's Shop")
    demo = seed()
    client = Client()

    assert client.login(username=demo["marketer_user"], password=demo["marketer_password"])
    stores = client.get("/admin/stores/store/").content.decode()

    assert "Demo Store" in stores
    assert "Somebody Else" not in stores


def test_seeding_twice_keeps_one_membership_and_gives_the_superuser_none():
    seed()
    demo = seed()

    assert StoreMembership.objects.filter(user__username=demo["marketer_user"]).count() == 1
    assert not StoreMembership.objects.filter(user__username=demo["admin_user"]).exists()
