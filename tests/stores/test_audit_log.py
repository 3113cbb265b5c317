"""The audit log: who changed a store's settings, keys, templates and campaigns, when and
what, from the API and the admin; read-only in the admin and scoped per store."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from stores.actions import do_grant_store_membership
from stores.models import AuditEntry, StoreApiKey, StoreRole

pytestmark = pytest.mark.django_db


def member(username, store, role=StoreRole.OWNER):
    user = User.objects.create_user(username, is_staff=True)
    do_grant_store_membership(user, store, role)
    client = Client()
    client.force_login(user)
    return client


def entries(store, **filters):
    return list(
        AuditEntry.objects.filter(store=store, **filters).values_list(
            "actor", "action", "object_type", "changes"
        )
    )


def key_name(shop):
    return StoreApiKey.objects.get(store=shop.store).name


def test_api_change_to_store_settings_is_logged_with_key_and_values(shop):
    response = shop.client.patch(
        f"/api/v1/stores/{shop.store.pk}", {"probability_threshold": 0.45}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert entries(shop.store, object_type="stores.store") == [
        (
            f"api key: {key_name(shop)}",
            "changed",
            "stores.store",
            {"probability_threshold": [0.3, 0.45]},
        )
    ]


def test_template_writes_through_the_api_are_logged(shop):
    created = shop.client.post(
        "/api/v1/templates",
        {"key": "hello", "name": "Hello", "content": {"en": {"sms": {"body": "Hi"}}}},
        format="json",
    ).json()
    template_path = f"/api/v1/templates/{created['id']}"
    shop.client.patch(template_path, {"name": "Hello again"}, format="json")
    shop.client.post(
        f"{template_path}/versions",
        {"content": {"en": {"sms": {"body": "Hi!"}}}, "publish": True},
        format="json",
    )
    shop.client.post(f"{template_path}/publish", {"version": 1}, format="json")
    deleted = shop.client.delete(template_path)

    assert deleted.status_code == 204
    logged = entries(shop.store, object_type="message_templates.template")
    assert [action for _, action, _, _ in logged] == [
        "deleted", "publish", "new_version", "changed", "added",
    ]  # fmt: skip
    assert logged[3][3] == {"name": ["Hello", "Hello again"]}
    assert logged[2][3]["version"] == [None, 2]
    new_version_published = logged[2][3]["published_version_id"][1]
    assert logged[1][3]["published_version_id"][0] == new_version_published  # rolled back


def test_a_template_replaced_with_put_is_logged_with_what_went_back_to_default(shop):
    # Given a template with a description
    created = shop.client.post(
        "/api/v1/templates",
        {
            "key": "hello",
            "name": "Hello",
            "description": "Old",
            "content": {"en": {"sms": {"body": "Hi"}}},
        },
        format="json",
    ).json()

    # When a PUT replaces it without naming the description
    replaced = shop.client.put(
        f"/api/v1/templates/{created['id']}", {"name": "Hello again"}, format="json"
    )

    # Then the log has the replacement, the cleared description included
    assert replaced.status_code == 200, replaced.json()
    changed = entries(shop.store, object_type="message_templates.template", action="changed")
    assert [values for _, _, _, values in changed] == [
        {"name": ["Hello", "Hello again"], "description": ["Old", ""]}
    ]


def test_a_deleted_campaign_keeps_its_trail(shop):
    created = shop.client.post(
        "/api/v1/campaigns",
        {"name": "Comeback", "trigger": "cart_abandoned", "channel": "sms"},
        format="json",
    ).json()
    shop.client.patch(f"/api/v1/campaigns/{created['id']}", {"name": "Back"}, format="json")

    shop.client.delete(f"/api/v1/campaigns/{created['id']}")

    logged = entries(shop.store, object_type="campaigns.campaign")
    assert [action for _, action, _, _ in logged] == ["deleted", "updated", "created"]
    assert logged[1][3] == {"name": ["Comeback", "Back"]}


def test_admin_change_to_an_api_key_is_logged_without_its_hash(shop):
    owner = member("olive", shop.store)
    key = StoreApiKey.objects.get(store=shop.store)
    url = reverse("admin:stores_storeapikey_change", args=[key.pk])
    form = {"name": key.name, "store": shop.store.pk, "revoked": "on", "expiry_date": ""}

    response = owner.post(url, form)

    assert response.status_code == 302, response.content.decode()[:3000]
    [(actor, action, _, changes)] = entries(shop.store, object_type="stores.storeapikey")
    assert (actor, action, changes) == ("olive", "changed", {"revoked": [False, True]})
    logged = str(list(AuditEntry.objects.values()))
    assert key.hashed_key not in logged
    assert key.prefix in logged


def test_admin_store_settings_change_is_logged(shop):
    owner = member("olive", shop.store)
    url = reverse("admin:stores_store_change", args=[shop.store.pk])
    page = owner.get(url)
    form = {
        field.name: field.value() if field.value() is not None else ""
        for field in page.context["adminform"].form
    }
    form.update(
        {
            "name": "Acme Outdoor & Co",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        }
    )
    for name, value in list(form.items()):
        if isinstance(value, list):
            form[name] = value
        elif isinstance(value, bool):
            form[name] = "on" if value else ""

    response = owner.post(url, {k: v for k, v in form.items() if v != ""})

    assert response.status_code == 302, response.context["adminform"].form.errors
    [(actor, action, _, changes)] = entries(shop.store, object_type="stores.store")
    assert (actor, action) == ("olive", "changed")
    assert changes["name"] == ["Acme Outdoor", "Acme Outdoor & Co"]


def test_marketers_read_their_stores_log_only_and_nobody_edits_it(shop, other_shop):
    shop.client.patch(f"/api/v1/stores/{shop.store.pk}", {"name": "Ours"}, format="json")
    other_shop.client.patch(
        f"/api/v1/stores/{other_shop.store.pk}", {"name": "Theirs"}, format="json"
    )
    ours = AuditEntry.objects.get(store=shop.store)
    theirs = AuditEntry.objects.get(store=other_shop.store)
    marketer = member("mia", shop.store, StoreRole.MARKETER)
    superuser = Client()
    superuser.force_login(User.objects.create_superuser("root"))

    listing = marketer.get(reverse("admin:stores_auditentry_changelist")).content.decode()
    mine = marketer.get(reverse("admin:stores_auditentry_change", args=[ours.pk]))
    foreign = marketer.get(reverse("admin:stores_auditentry_change", args=[theirs.pk]))
    everything = superuser.get(reverse("admin:stores_auditentry_changelist")).content.decode()
    edit = superuser.post(
        reverse("admin:stores_auditentry_change", args=[ours.pk]), {"actor": "forged"}
    )
    delete = superuser.post(
        reverse("admin:stores_auditentry_delete", args=[ours.pk]), {"post": "yes"}
    )

    assert "Ours" in listing
    assert "Theirs" not in listing
    assert mine.status_code == 200
    assert "Acme Outdoor" in mine.content.decode()  # the before value
    assert foreign.status_code == 404
    assert "Ours" in everything
    assert "Theirs" in everything
    assert edit.status_code == 403
    assert delete.status_code == 403
    assert AuditEntry.objects.get(pk=ours.pk).actor.startswith("api key:")


def test_membership_edits_in_the_store_page_are_logged(shop):
    owner = member("olive", shop.store)
    member("mia", shop.store, StoreRole.MARKETER)
    member("vic", shop.store, StoreRole.VIEWER)
    url = reverse("admin:stores_store_change", args=[shop.store.pk])
    page = owner.get(url)
    form = {
        field.name: field.value()
        for field in page.context["adminform"].form
        if field.value() not in (None, "")
    }
    memberships = page.context["inline_admin_formsets"][0].formset
    form.update(memberships.management_form.initial)
    form = {f"memberships-{k}" if k.endswith("_FORMS") else k: v for k, v in form.items()}
    for inline in memberships.forms:
        username = inline.instance.user.username
        for name in ("id", "store", "user", "role"):
            form[inline.add_prefix(name)] = inline[name].value()
        if username == "mia":
            form[inline.add_prefix("role")] = StoreRole.OWNER
        if username == "vic":
            form[inline.add_prefix("DELETE")] = "on"
    form = {k: ("on" if v is True else v) for k, v in form.items() if v is not False}

    response = owner.post(url, form)

    assert response.status_code == 302, response.context["inline_admin_formsets"][0].formset.errors
    logged = {
        (actor, action, changes.get("role", [None, None])[0], changes.get("role", [None, None])[1])
        for actor, action, _, changes in entries(shop.store, object_type="stores.storemembership")
    }
    assert logged == {
        ("olive", "changed", StoreRole.MARKETER, StoreRole.OWNER),
        ("olive", "deleted", StoreRole.VIEWER, None),
    }
