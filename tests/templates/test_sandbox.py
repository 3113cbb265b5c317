"""Marketer-authored templates cannot reach Python internals, files, or run away."""

import time

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


def render_timed(body, variables=(), context=None):
    content = {"en": {"sms": {"body": body}}}
    started = time.perf_counter()
    try:
        return render_content(content, list(variables), "en", "sms", context or sample_context())
    finally:
        # A duration, not the wall clock: the point is that nothing runs on in C.
        assert time.perf_counter() - started < 3


@pytest.mark.parametrize(
    ("runaway", "named"),
    [
        ("{{ ((((9**99)**99)**99)**99) > 1 }}", "4096 bits"),
        ("{% set n = 2 ** 99 %}{{ " + " * ".join(["n"] * 42) + " }}", "4096 bits"),
        ('{{ "%0300000000d" % 1 }}', "% formatting"),
        ('{{ "%.300000000f" % 1.5 }}', "% formatting"),
        ('{{ "%*d" % (300000000, 1) }}', "% formatting"),
        ('{{ ("%999d" * 100) % ((1,) * 100) }}', "Formatted text"),
        ('{% macro d(s, n) %}{{ d(s ~ s, n - 1) if n else s }}{% endmacro %}{{ d("x", 29) }}',
         "Joined text"),
        ('{% macro d(s, n) %}{{ d(s + s, n - 1) if n else s }}{% endmacro %}{{ d("x", 29) }}',
         "Joined text"),
        ('{% set s = "x" * 100000 %}{{ ([s] * 1000)|join }}', "Repeated text"),
        ('{% set s = "x" * 50000 %}{{ [s, s, s, s]|join }}', "Joined text"),
        ('{% set s = "x" * 50000 %}{{ [s, s, s, s] }}', "printed value"),
        ('{% set s = "x" * 50000 %}{{ [s, s, s, s]|string }}', "filter's input"),
        ('{% set s = "x" * 50000 %}{{ [s, s, s] ~ "" }}', "Joined text"),
        ('{{ ["a", "b", "c"]|join("y" * 50000) }}', "Joined text"),
        ('{% macro m() %}{% for i in range(1000) %}{% for j in range(1000) %}'
         + "x" * 10000 + "{% endfor %}{% endfor %}{% endmacro %}{{ m()|length }}", "Loops"),
        ('{% macro m() %}{% for i in range(90) %}' + "x" * 5000
         + "{% endfor %}{% endmacro %}{{ m()|length }}", "Output is longer"),
        ("{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}", "nest deeper"),
    ],
)  # fmt: skip
def test_values_that_would_outgrow_the_budget_are_refused_before_they_are_built(runaway, named):
    with pytest.raises(RenderError) as refused:
        render_timed(runaway)

    assert refused.value.reason == "limit_exceeded"
    assert named in str(refused.value)


def test_a_macro_calling_itself_is_a_limit_error_at_its_line_not_a_recursion_error():
    body = "Hi\n{% macro again(n) %}\n{{ again(n) }}{% endmacro %}\n{{ again(1) }}"

    with pytest.raises(RenderError) as refused:
        render_timed(body)

    assert refused.value.reason == "limit_exceeded"
    assert "calls itself" in str(refused.value)
    assert refused.value.line == 3


def test_brackets_nested_past_the_parser_are_a_syntax_error():
    with pytest.raises(RenderError) as refused:
        render_timed("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}")

    assert refused.value.reason == "syntax_error"
    assert "nest too deeply" in str(refused.value)


def test_formatting_concatenation_macros_and_joins_within_bounds_still_render():
    body = (
        '{% macro item(i) %}{{ "%-12s%6.2f" % (i.name, i.price|float) }}{% endmacro %}'
        "{% macro countdown(n) %}{{ n }}{% if n %} {{ countdown(n - 1) }}{% endif %}{% endmacro %}"
        "{{ shopper.first_name ~ '!' }} {{ 'ab' * 3 }} {{ [1, 2] + [3] }} {{ 2 ** 64 }} "
        "{{ cart.items|map(attribute='name')|join(' / ') }} {{ countdown(20)|length }}\n"
        "{% for i in cart.items %}{{ item(i) }}\n{% endfor %}"
    )

    rendered = render_timed(body)["body"]

    assert rendered == (
        "Alex! ababab [1, 2, 3] 18446744073709551616 Trail shoes / Wool socks 52\n"
        "Trail shoes  89.90\nWool socks   12.00\n"
    )
