"""Marketers in the admin: new versions through the form, and a rendered preview."""

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from templates import actions
from templates.models import Template

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client():
    User.objects.create_superuser("admin", "admin@example.test", "pw")
    client = Client()
    client.login(username="admin", password="pw")
    return client


@pytest.fixture
def template(shop):
    return actions.check_create_template(
        shop.store,
        key="reminder",
        name="Reminder",
        content={"en": {"sms": {"body": "Hi {{ shopper.first_name }}!"}}},
        publish=True,
    )


def form_data(template, **extra):
    return {
        "store": str(template.store_id),
        "key": template.key,
        "name": template.name,
        "description": "",
        "variables": "[]",
        "fallback_locale": "en",
        "versions-TOTAL_FORMS": "1",
        "versions-INITIAL_FORMS": "1",
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
        "versions-0-id": str(template.versions.get().pk),
        "versions-0-template": str(template.pk),
        **extra,
    }


def test_change_page_shows_the_rendered_preview(admin_client, template):
    page = admin_client.get(f"/admin/message_templates/template/{template.pk}/change/")

    assert page.status_code == 200
    assert "Hi Alex!" in page.content.decode()


def test_saving_new_content_creates_and_publishes_a_version(admin_client, template):
    content = {"en": {"sms": {"body": "Hello {{ shopper.first_name }}"}}}

    response = admin_client.post(
        f"/admin/message_templates/template/{template.pk}/change/",
        form_data(template, new_version_content=json.dumps(content), publish_new_version="on"),
    )

    template = Template.objects.get(pk=template.pk)
    assert response.status_code == 302
    assert template.published_version.number == 2
    assert template.published_version.content == content


def test_invalid_content_is_shown_as_a_form_error(admin_client, template):
    broken = {"en": {"sms": {"body": "Hello {{ shopper.first_name "}}}

    response = admin_client.post(
        f"/admin/message_templates/template/{template.pk}/change/",
        form_data(template, new_version_content=json.dumps(broken)),
    )

    assert response.status_code == 200
    assert "Syntax error on line 1" in response.content.decode()
    assert template.versions.count() == 1
