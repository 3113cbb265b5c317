"""Marketer-authored templates cannot reach Python internals, files, or run away."""

import pytest

from templates.context import sample_context
from templates.rendering import RenderError, render_content


def render_sms(body, variables=()):
    content = {"en": {"sms": {"body": body}}}
    return render_content(content, list(variables), "en", "sms", sample_context())["body"]


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cart.items.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ '{0.__class__}'.format(cart) }}",
        "{{ shopper.first_name.upper() }}",
        "{{ cart['items'].pop() }}",
        "{{ cart.items|attr('__class__') }}",
        "{% include '/etc/passwd' %}",
        "{% import 'os' as os %}",
        "{{ lipsum() }}",
        "{{ config }}",
        "{{ request }}",
    ],
)
def test_sandbox_escapes_are_rejected(escape):
    with pytest.raises(RenderError) as refused:
        render_sms(escape)

    assert refused.value.reason in {
        "forbidden",
        "undefined_variable",
        "render_error",
        "syntax_error",
    }


@pytest.mark.parametrize(
    "runaway",
    [
        "{{ 'a' * 100000000 }}",
        "{{ [1] * 100000000 }}",
        "{{ 2 ** 100000000 }}",
        "{{ range(100000000)|length }}",
        "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
        "{% endfor %}{% endfor %}{% endfor %}",
        "{% for a in range(1000) %}{% for b in range(1000) %}xxxxxxxxxx{% endfor %}{% endfor %}",
    ],
)
def test_runaway_templates_stop_at_the_size_and_time_budget(runaway):
    with pytest.raises(RenderError) as refused:
        render_sms(runaway)

    assert refused.value.reason == "limit_exceeded"


def test_context_values_and_loops_render():
    body = render_sms(
        "Hi {{ shopper.first_name }}: {% for item in cart.items %}{{ item.name }}"
        "{% if not loop.last %}, {% endif %}{% endfor %} ({{ cart.value }} {{ cart.currency }})"
    )

    assert body == "Hi Alex: Trail shoes, Wool socks (113.90 EUR)"


def test_html_is_autoescaped_and_text_is_not():
    content = {
        "en": {
            "email": {"subject": "{{ name }}", "html": "<p>{{ name }}</p>", "text": "{{ name }}"}
        }
    }
    context = {**sample_context(), "name": "<script>x</script>"}

    rendered = render_content(content, [], "en", "email", context)

    assert rendered["html"] == "<p>&lt;script&gt;x&lt;/script&gt;</p>"
    assert rendered["text"] == "<script>x</script>"


def test_undefined_variable_is_an_error_not_a_blank():
    with pytest.raises(RenderError) as refused:
        render_sms("Hi {{ shopper.nickname }}")

    assert refused.value.reason == "undefined_variable"
