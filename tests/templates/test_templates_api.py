"""Marketers' templates through the API: validated versions, publish, rollback, preview."""

import time

import pytest

pytestmark = pytest.mark.django_db

SMS = {"en": {"sms": {"body": "Hi {{ shopper.first_name }}, your cart misses you."}}}


def create(shop, **overrides):
    body = {"key": "reminder", "name": "Reminder", "content": SMS, "publish": True, **overrides}
    return shop.client.post("/api/v1/templates", body, format="json")


def test_template_is_created_with_its_first_version_published(shop):
    response = create(shop)

    assert response.status_code == 201, response.json()
    assert response.json()["published_version"] == 1
    versions = shop.client.get(f"/api/v1/templates/{response.json()['id']}/versions").json()
    assert [(v["number"], v["published"]) for v in versions] == [(1, True)]


def test_syntax_error_is_reported_with_its_field_and_line(shop):
    broken = {"en": {"sms": {"body": "Hi\n{{ shopper.first_name }\n"}}}

    response = create(shop, content=broken)

    assert response.status_code == 400
    message = response.json()["error"]["fields"]["content.en.sms.body"][0]
    assert "line 2" in message


def test_undeclared_variable_is_refused_and_declaring_it_fixes_it(shop):
    uses_coupon = {"en": {"sms": {"body": "Use {{ coupon }}"}}}

    refused = create(shop, content=uses_coupon)
    accepted = create(
        shop, content=uses_coupon, variables=[{"name": "coupon", "type": "string", "default": "X"}]
    )

    assert refused.status_code == 400
    assert "coupon" in refused.json()["error"]["fields"]["content.en.sms.body"][0]
    assert accepted.status_code == 201


def test_email_without_subject_is_refused(shop):
    response = create(shop, content={"en": {"email": {"subject": "", "html": "<p>x</p>"}}})

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "content.en.email.subject": ["This field is required."]
    }


def test_push_over_its_length_limits_is_refused(shop):
    response = create(shop, content={"en": {"push": {"title": "t" * 100, "body": "b"}}})

    assert response.status_code == 400
    assert "65 characters" in response.json()["error"]["fields"]["content.en.push.title"][0]


def test_sms_over_the_segment_limit_names_the_count(shop, settings):
    settings.SMS_MAX_SEGMENTS = 1

    response = create(shop, content={"en": {"sms": {"body": "é" * 100 + "😀"}}})

    assert response.status_code == 400
    assert "2 SMS segments (UCS-2" in response.json()["error"]["fields"]["content.en.sms.body"][0]


def test_edit_creates_a_version_and_rollback_publishes_an_earlier_one(shop):
    template_id = create(shop).json()["id"]

    edit = shop.client.post(
        f"/api/v1/templates/{template_id}/versions",
        {"content": {"en": {"sms": {"body": "Second"}}}, "note": "shorter", "publish": True},
        format="json",
    )
    rollback = shop.client.post(
        f"/api/v1/templates/{template_id}/publish", {"version": 1}, format="json"
    )

    assert edit.status_code == 201
    assert edit.json()["number"] == 2
    assert rollback.json()["published_version"] == 1


def test_preview_renders_with_sample_or_given_context(shop):
    template_id = create(shop).json()["id"]

    sample = shop.client.post(
        f"/api/v1/templates/{template_id}/preview", {"channel": "sms"}, format="json"
    )
    given = shop.client.post(
        f"/api/v1/templates/{template_id}/preview",
        {"channel": "sms", "context": {"shopper": {"first_name": "Zoé"}}},
        format="json",
    )

    assert sample.json()["content"]["body"] == "Hi Alex, your cart misses you."
    assert given.json()["content"]["body"] == "Hi Zoé, your cart misses you."


def test_preview_of_a_missing_channel_is_a_400_render_error(shop):
    template_id = create(shop).json()["id"]

    response = shop.client.post(
        f"/api/v1/templates/{template_id}/preview", {"channel": "push"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "render_error"


def test_unknown_fields_and_duplicate_keys_are_400(shop):
    create(shop)

    duplicate = create(shop)
    typo = create(shop, key="other", contnet={})

    assert duplicate.json()["error"]["fields"] == {
        "key": ["A template with this key already exists."]
    }
    assert typo.json()["error"]["fields"] == {"contnet": ["Unknown field."]}


def test_another_stores_template_is_404(shop, other_shop):
    template_id = create(shop).json()["id"]

    for method, path in [
        ("get", f"/api/v1/templates/{template_id}"),
        ("post", f"/api/v1/templates/{template_id}/preview"),
        ("post", f"/api/v1/templates/{template_id}/publish"),
        ("delete", f"/api/v1/templates/{template_id}"),
    ]:
        response = getattr(other_shop.client, method)(path, {"channel": "sms"}, format="json")
        assert response.status_code == 404, path


def test_patch_updates_declared_variables_and_delete_removes_an_unused_template(shop):
    template_id = create(shop).json()["id"]

    patched = shop.client.patch(
        f"/api/v1/templates/{template_id}",
        {"variables": [{"name": "shopper.first_name", "default": "friend"}]},
        format="json",
    )
    deleted = shop.client.delete(f"/api/v1/templates/{template_id}")

    assert patched.json()["variables"][0]["default"] == "friend"
    assert deleted.status_code == 204


def test_a_version_whose_sample_rendering_would_blow_up_is_a_quick_400_naming_it(shop):
    huge_format = {"en": {"sms": {"body": 'Hi {{ "%0300000000d" % 1 }}'}}}
    started = time.perf_counter()

    response = create(shop, content=huge_format)

    assert time.perf_counter() - started < 3
    assert response.status_code == 400
    assert "% formatting" in response.json()["error"]["fields"]["content.en.sms.body"][0]


def test_a_macro_calling_itself_is_a_400_with_its_line_at_validation(shop):
    looping = {
        "en": {
            "sms": {"body": "Hi\n{% macro again(n) %}{{ again(n) }}{% endmacro %}\n{{ again(1) }}"}
        }
    }

    response = create(shop, content=looping)

    assert response.status_code == 400
    message = response.json()["error"]["fields"]["content.en.sms.body"][0]
    assert "calls itself" in message
    assert "line 2" in message


@pytest.mark.parametrize(
    ("body", "context", "named"),
    [
        ("{{ (((n ** 99) ** 99) ** 99) ** 99 > 1 }}", {"n": 9}, "bits"),
        (
            "{% macro countdown(n) %}{{ n }} {{ countdown(n - 1) if n }}{% endmacro %}"
            "{{ countdown(n) }}",
            {"n": 100_000},
            "calls itself",
        ),
    ],
)
def test_preview_with_a_context_that_blows_up_a_valid_template_is_a_quick_400(
    shop, body, context, named
):
    # Valid with the declared default (n = 1), runaway with the previewed value.
    variables = [{"name": "n", "type": "integer", "default": 1}]
    template_id = create(shop, content={"en": {"sms": {"body": body}}}, variables=variables)
    assert template_id.status_code == 201, template_id.json()
    started = time.perf_counter()

    response = shop.client.post(
        f"/api/v1/templates/{template_id.json()['id']}/preview",
        {"channel": "sms", "context": context},
        format="json",
    )

    assert time.perf_counter() - started < 3
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "render_error"
    message = response.json()["error"]["fields"]["en.sms.body"][0]
    assert named in message
    assert "(line 1)" in message


def test_put_replaces_the_templates_fields_and_needs_its_name(shop, other_shop):
    template_id = create(shop, description="Old words").json()["id"]

    replaced = shop.client.put(
        f"/api/v1/templates/{template_id}", {"name": "Second reminder"}, format="json"
    )
    incomplete = shop.client.put(
        f"/api/v1/templates/{template_id}", {"description": "no name"}, format="json"
    )
    theirs = other_shop.client.put(f"/api/v1/templates/{template_id}", {"name": "x"}, format="json")

    assert replaced.status_code == 200, replaced.content
    assert (replaced.json()["name"], replaced.json()["description"]) == ("Second reminder", "")
    assert incomplete.status_code == 400
    assert "name" in incomplete.json()["error"]["fields"]
    assert theirs.status_code == 404
