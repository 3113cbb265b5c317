"""Rendering an intervention's message from its template's published version
(docs/templates.md).

``render_message`` is what the pipeline calls at decision time; every failure is a
``RenderError`` with a short ``reason``, which the pipeline turns into a failed
intervention. Rendering runs in the sandbox of ``templates.sandbox``.
"""

import copy
import functools
import html
from dataclasses import dataclass
from typing import Any

import structlog
from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches
from django.utils.html import strip_tags
from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError
from prometheus_client import Counter, Histogram

from templates.content import url_errors
from templates.models import Template, TemplateVersion
from templates.sandbox import RenderLimitExceeded, SecurityError, environment_for

logger = structlog.get_logger(__name__)

RENDERS = Counter(
    "engine_template_renders_total",
    "Template renders by channel and outcome",
    ["channel", "outcome"],
)
RENDER_SECONDS = Histogram(
    "engine_template_render_seconds",
    "Time to render one channel of a message",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)

# What each channel's content holds; transports read exactly these keys.
CHANNEL_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("subject", "html", "text"),
    "sms": ("body",),
    "push": ("title", "body", "data"),
    "websocket": ("title", "body", "cta", "discount_code", "style"),
}
VARIABLE_TYPES = ("string", "number", "integer", "boolean", "list", "object")
PUBLISHED_CACHE_SECONDS = 300


class RenderError(Exception):
    """A message could not be rendered; ``reason`` is a stable label for the intervention.

    reasons: template_not_found, template_not_published, channel_missing,
    syntax_error, undefined_variable, forbidden, limit_exceeded, render_error, unsafe_url.
    """

    def __init__(self, reason: str, message: str, *, field: str = "", line: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.line = line

    @property
    def explanation(self) -> str:
        """The message with its template line, for a field's error list."""
        return f"{self.args[0]} (line {self.line})" if self.line else str(self.args[0])

    def __str__(self) -> str:
        where = self.field + (f" line {self.line}" if self.line else "")
        return f"{where}: {self.args[0]}" if where else str(self.args[0])


@dataclass(frozen=True)
class PublishedTemplate:
    template_id: int
    version_id: int
    number: int
    content: dict[str, Any]
    variables: list[dict[str, Any]]
    fallback_locale: str

    def as_version(self) -> TemplateVersion:
        # Built from the cache without a query; enough to be stored as a foreign key.
        return TemplateVersion(
            pk=self.version_id,
            template_id=self.template_id,
            number=self.number,
            content=self.content,
            variables=self.variables,
        )


def published_cache_key(store_id: Any, template_key: str) -> str:
    return f"template:published:{store_id}:{template_key}"


@functools.cache
def published_cache() -> BaseCache:
    """One cache client per process. Django's ``cache`` is per request context under ASGI:
    each request built a new RedisCache, so a new connection pool, and opened a new TCP
    connection to Redis for its first render (issue 12). Redis stays the shared store, so
    a publish still reaches every process at once."""
    return caches.create_connection(DEFAULT_CACHE_ALIAS)


def published_template(store_id: Any, template_key: str) -> PublishedTemplate:
    key = published_cache_key(store_id, template_key)
    cached = published_cache().get(key)
    if cached is not None:
        return PublishedTemplate(**cached)
    template = (
        Template.objects.filter(store_id=store_id, key=template_key)
        .select_related("published_version")
        .first()
    )
    if template is None:
        raise RenderError("template_not_found", f"No template with key {template_key!r}.")
    version = template.published_version
    if version is None:
        raise RenderError(
            "template_not_published", f"Template {template_key!r} has no published version."
        )
    published = PublishedTemplate(
        template_id=template.pk,
        version_id=version.pk,
        number=version.number,
        content=version.content,
        variables=version.variables,
        fallback_locale=template.fallback_locale,
    )
    published_cache().set(key, published.__dict__, PUBLISHED_CACHE_SECONDS)
    return published


def render_message(
    store_id: Any, template_key: str, channel: str, context: dict[str, Any], locale: str = ""
) -> tuple[TemplateVersion | None, dict[str, Any]]:
    """The published version used and the rendered content for ``channel``.

    Without a template key, the caller's flat personalization is the content (an
    explicit trigger that carries its own text). Raises ``RenderError``.
    """
    if not template_key:
        content = {k: v for k, v in context.items() if isinstance(v, str | int | float)}
        refuse_unsafe_urls(content, "personalization")
        return None, content
    published = published_template(store_id, template_key)
    content = render_content(
        published.content,
        published.variables,
        published.fallback_locale,
        channel,
        context,
        locale,
    )
    return published.as_version(), content


def locale_chain(locale: str, fallback_locale: str) -> list[str]:
    """``fr-CA`` → ``["fr-CA", "fr", <fallback>]``, without repeats."""
    chain: list[str] = []
    normalized = (locale or "").replace("_", "-")
    for candidate in (normalized, normalized.split("-")[0], fallback_locale):
        if candidate and candidate not in chain:
            chain.append(candidate)
    return chain


def pick_locale(
    content: dict[str, Any], channel: str, locale: str, fallback_locale: str
) -> tuple[str, dict[str, Any]]:
    for candidate in locale_chain(locale, fallback_locale):
        for key in content:
            if key.lower() == candidate.lower() and channel in (content[key] or {}):
                return key, content[key][channel]
    raise RenderError(
        "channel_missing",
        f"The template has no {channel} content for locale {locale or '-'} "
        f"or its fallback {fallback_locale}.",
    )


def render_content(
    content: dict[str, Any],
    variables: list[dict[str, Any]],
    fallback_locale: str,
    channel: str,
    context: dict[str, Any],
    locale: str = "",
) -> dict[str, Any]:
    if channel not in CHANNEL_FIELDS:
        raise RenderError("channel_missing", f"Unknown channel {channel!r}.")
    locale_key, fields = pick_locale(content, channel, locale, fallback_locale)
    full_context = with_defaults(variables, context)
    rendered: dict[str, Any] = {}
    with RENDER_SECONDS.time():
        try:
            for name in CHANNEL_FIELDS[channel]:
                if name in fields:
                    rendered[name] = render_value(
                        name, fields[name], full_context, f"{locale_key}.{channel}.{name}"
                    )
            refuse_unsafe_urls(rendered, f"{locale_key}.{channel}")
        except RenderError as error:
            RENDERS.labels(channel, error.reason).inc()
            logger.warning(
                "template_render_failed",
                channel=channel,
                reason=error.reason,
                field=error.field,
                error=str(error),
            )
            raise
    if channel == "email" and not rendered.get("text") and rendered.get("html"):
        # Spam filters and text-only clients want a text part; derive one rather than omit it.
        rendered["text"] = html.unescape(strip_tags(rendered["html"])).strip()
    RENDERS.labels(channel, "ok").inc()
    return rendered


def render_value(field_name: str, value: Any, context: dict[str, Any], path: str) -> Any:
    """Render a string field, or every string inside a dict/list field (push ``data``)."""
    if isinstance(value, str):
        return render_text(field_name, value, context, path)
    if isinstance(value, dict):
        return {
            str(k): render_value(field_name, v, context, f"{path}.{k}") for k, v in value.items()
        }
    if isinstance(value, list):
        return [render_value(field_name, v, context, f"{path}.{i}") for i, v in enumerate(value)]
    return value


def render_text(field_name: str, source: str, context: dict[str, Any], path: str) -> str:
    environment = environment_for(field_name)
    try:
        return environment.render_bounded(source, context)
    except TemplateSyntaxError as error:
        raise RenderError(
            "syntax_error", error.message or "", field=path, line=error.lineno
        ) from error
    except UndefinedError as error:
        raise RenderError("undefined_variable", str(error.message), field=path) from error
    except SecurityError as error:
        raise RenderError("forbidden", str(error), field=path, line=template_line(error)) from error
    except RenderLimitExceeded as error:
        raise RenderError(
            "limit_exceeded", str(error), field=path, line=template_line(error)
        ) from error
    except (TemplateError, TypeError, ValueError, ArithmeticError, OverflowError) as error:
        raise RenderError(
            "render_error", str(error), field=path, line=template_line(error)
        ) from error


def template_line(error: BaseException) -> int | None:
    """The template line an error was raised at: Jinja rewrites a render's traceback
    so that template code shows as frames of a ``<template>`` file at its own lines;
    the innermost one is where it failed (inside a macro, the macro's line)."""
    line = None
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename in ("<template>", "<unknown>"):
            line = frame.tb_lineno
        frame = frame.tb_next
    return line


def refuse_unsafe_urls(content: dict[str, Any], path: str) -> None:
    """A link that is not an allowed http(s) URL (``javascript:…``) never reaches a
    shopper, whether the template or the caller's personalization wrote it."""
    for field, problems in url_errors(content, path).items():
        raise RenderError("unsafe_url", problems[0], field=field)


_MISSING = object()


def with_defaults(variables: list[dict[str, Any]], context: dict[str, Any]) -> dict[str, Any]:
    """The context with every declared variable present: missing, blank or mistyped
    values take the declared default, so a gap in the data never breaks a message."""
    full = copy.deepcopy(context)
    for variable in variables:
        path = str(variable.get("name", "")).split(".")
        if not path[0]:
            continue
        holder: Any = full
        for part in path[:-1]:
            if not isinstance(holder.get(part), dict):
                holder[part] = {}
            holder = holder[part]
        current = holder.get(path[-1], _MISSING)
        if (
            current is _MISSING
            or current in (None, "")
            or not is_of_type(current, variable.get("type", "string"))
        ):
            holder[path[-1]] = variable.get("default", "")
    return full


def is_of_type(value: Any, type_name: str) -> bool:
    if type_name == "string":
        return isinstance(value, str | int | float) and not isinstance(value, bool)
    if type_name == "number":
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                return False
            return True
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name == "list":
        return isinstance(value, list)
    if type_name == "object":
        return isinstance(value, dict)
    return True
