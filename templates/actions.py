"""Template operations: validate, version, publish, roll back, preview (docs/templates.md).

Versions are immutable: an edit is a new version; publishing points the template at
one; a rollback publishes an earlier one. The published lookup is cached and the
cache entry is dropped after the publishing transaction commits.
"""

from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from jinja2 import TemplateSyntaxError, meta
from prometheus_client import Counter

from notifications.segments import count_segments
from stores.models import Store
from templates.content import url_errors
from templates.context import STANDARD_ROOTS, sample_context
from templates.models import Template, TemplateVersion
from templates.rendering import (
    CHANNEL_FIELDS,
    VARIABLE_TYPES,
    RenderError,
    published_cache,
    published_cache_key,
    render_content,
    render_value,
    with_defaults,
)
from templates.sandbox import MAX_SOURCE_CHARS, environment_for

logger = structlog.get_logger(__name__)

TEMPLATE_CHANGES = Counter(
    "engine_template_changes_total", "Template versions created and published", ["action"]
)
TEMPLATE_REJECTIONS = Counter(
    "engine_template_rejections_total", "Template versions refused by validation", ["reason"]
)

# Beyond these most devices truncate the notification; FCM refuses payloads over 4 KB.
PUSH_TITLE_MAX = 65
PUSH_BODY_MAX = 240
PUSH_PAYLOAD_MAX_BYTES = 4000
EMAIL_SUBJECT_MAX = 200
REQUIRED_FIELDS = {"email": ("subject",), "sms": ("body",), "push": ("body",), "websocket": ()}

Errors = dict[str, list[str]]


def check_variables(variables: Any) -> Errors:
    errors: Errors = {}
    if not isinstance(variables, list):
        return {"variables": ["Must be a list of {name, type, default}."]}
    seen: set[str] = set()
    for index, variable in enumerate(variables):
        where = f"variables.{index}"
        if not isinstance(variable, dict) or not isinstance(variable.get("name"), str):
            errors[where] = ["Each variable needs a name."]
            continue
        name = variable["name"]
        if not all(part.isidentifier() and not part.startswith("_") for part in name.split(".")):
            errors[where] = [f"{name!r} is not a valid variable name (letters, digits, _ and .)."]
        elif name in seen:
            errors[where] = [f"{name!r} is declared twice."]
        elif variable.get("type", "string") not in VARIABLE_TYPES:
            errors[where] = [f"Type must be one of {', '.join(VARIABLE_TYPES)}."]
        unknown = sorted(set(variable) - {"name", "type", "default", "description"})
        if unknown:
            errors.setdefault(where, []).append(f"Unknown keys: {', '.join(unknown)}.")
        seen.add(name)
    return errors


def check_template_content(  # noqa: C901 - one check per rule of docs/templates.md, each naming its field
    content: Any, variables: list[dict[str, Any]], fallback_locale: str
) -> Errors:
    """Every problem with a version's content, keyed by field path
    (``fr.sms.body``): syntax errors with their line, undeclared variables, fields
    that do not render with the sample context, and channel limits."""
    if not isinstance(content, dict) or not content:
        return {"content": ['Give content per locale: {"en": {"sms": {"body": "…"}}}.']}
    errors: Errors = {}
    if fallback_locale not in content:
        errors["content"] = [f"The fallback locale {fallback_locale!r} must have content."]
    declared_roots = STANDARD_ROOTS | {v["name"].split(".")[0] for v in variables}
    for locale, channels in content.items():
        if not isinstance(channels, dict):
            errors[f"content.{locale}"] = ["Must map channels to their fields."]
            continue
        for channel, fields in channels.items():
            where = f"content.{locale}.{channel}"
            if channel not in CHANNEL_FIELDS:
                errors[where] = [f"Unknown channel; use {', '.join(CHANNEL_FIELDS)}."]
                continue
            if not isinstance(fields, dict):
                errors[where] = ["Must map field names to text."]
                continue
            unknown = sorted(set(fields) - set(CHANNEL_FIELDS[channel]))
            if unknown:
                errors[where] = [f"Unknown fields: {', '.join(unknown)}."]
            for required in REQUIRED_FIELDS[channel]:
                if not fields.get(required):
                    errors[f"{where}.{required}"] = ["This field is required."]
            for name, value in fields.items():
                for path, source in _strings(value, f"{where}.{name}"):
                    errors.update(_check_source(name, source, path, declared_roots))
    if errors:
        return errors
    context = with_defaults(variables, sample_context())
    for locale, channels in content.items():
        for channel, fields in channels.items():
            try:
                rendered = {
                    name: render_value(name, value, context, f"content.{locale}.{channel}.{name}")
                    for name, value in fields.items()
                }
            except RenderError as error:
                errors[error.field] = [error.explanation]
                continue
            errors.update(check_channel_limits(channel, rendered, f"content.{locale}.{channel}"))
            errors.update(url_errors(rendered, f"content.{locale}.{channel}"))
    return errors


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, f"{path}.{i}")]
    return []


def _check_source(
    field_name: str, source: str, path: str, declared_roots: frozenset[str]
) -> Errors:
    if len(source) > MAX_SOURCE_CHARS:
        return {path: [f"Longer than {MAX_SOURCE_CHARS} characters."]}
    environment = environment_for(field_name)
    try:
        ast = environment.parse_source(source)
    except TemplateSyntaxError as error:
        return {path: [f"Syntax error on line {error.lineno}: {error.message}"]}
    undeclared = sorted(meta.find_undeclared_variables(ast) - declared_roots - {"range", "loop"})
    if undeclared:
        return {
            path: [
                f"Undeclared variables: {', '.join(undeclared)}. Declare them in the "
                f"template's variables or use {', '.join(sorted(STANDARD_ROOTS))}."
            ]
        }
    return {}


def check_channel_limits(channel: str, rendered: dict[str, Any], where: str) -> Errors:  # noqa: C901 - one limit per channel
    errors: Errors = {}
    if channel == "sms":
        body = rendered.get("body", "")
        segments = count_segments(body)
        if segments.segments > settings.SMS_MAX_SEGMENTS:
            errors[f"{where}.body"] = [
                f"{segments.segments} SMS segments ({segments.encoding}, {segments.units} "
                f"units) with the sample context; the limit is {settings.SMS_MAX_SEGMENTS}."
            ]
    elif channel == "push":
        if len(rendered.get("title", "")) > PUSH_TITLE_MAX:
            errors[f"{where}.title"] = [f"Push titles are limited to {PUSH_TITLE_MAX} characters."]
        if len(rendered.get("body", "")) > PUSH_BODY_MAX:
            errors[f"{where}.body"] = [f"Push bodies are limited to {PUSH_BODY_MAX} characters."]
        data = rendered.get("data", {})
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            errors[f"{where}.data"] = ["Push data must map names to text (FCM sends strings)."]
        elif sum(len(k) + len(v.encode()) for k, v in data.items()) > PUSH_PAYLOAD_MAX_BYTES:
            errors[f"{where}.data"] = [f"Push data is limited to {PUSH_PAYLOAD_MAX_BYTES} bytes."]
    elif channel == "email":
        subject = rendered.get("subject", "")
        if len(subject) > EMAIL_SUBJECT_MAX or "\n" in subject:
            errors[f"{where}.subject"] = [
                f"Subjects are one line of at most {EMAIL_SUBJECT_MAX} characters."
            ]
        if not rendered.get("html") and not rendered.get("text"):
            errors[where] = ["An email needs an html or a text part."]
    return errors


def _raise_if(errors: Errors) -> None:
    if errors:
        for path in errors:
            TEMPLATE_REJECTIONS.labels(path.split(".")[-1] if "." in path else path).inc()
        raise ValidationError(errors)


@transaction.atomic
def check_create_template(
    store: Store,
    *,
    key: str,
    name: str,
    description: str = "",
    variables: list[dict[str, Any]] | None = None,
    fallback_locale: str = "en",
    content: dict[str, Any] | None = None,
    publish: bool = False,
) -> Template:
    variables = variables or []
    _raise_if(check_variables(variables))
    if Template.objects.filter(store=store, key=key).exists():
        raise ValidationError({"key": ["A template with this key already exists."]})
    template = Template.objects.create(
        store=store,
        key=key,
        name=name,
        description=description,
        variables=variables,
        fallback_locale=fallback_locale,
    )
    if content is not None:
        check_create_version(template, content=content, publish=publish)
    return template


def check_update_template(template: Template, **changes: Any) -> Template:
    """Name, description, declared variables, fallback locale; content goes in versions."""
    if "variables" in changes:
        _raise_if(check_variables(changes["variables"]))
    return do_update_template(template, **changes)


def do_update_template(template: Template, **changes: Any) -> Template:
    for field, value in changes.items():
        setattr(template, field, value)
    template.save()
    _forget_published(template)
    return template


def check_create_version(
    template: Template, *, content: dict[str, Any], note: str = "", publish: bool = False
) -> TemplateVersion:
    _raise_if(check_variables(template.variables))
    _raise_if(check_template_content(content, template.variables, template.fallback_locale))
    version = do_create_version(template, content=content, note=note)
    if publish:
        do_publish_version(template, version)
    return version


@transaction.atomic
def do_create_version(
    template: Template, *, content: dict[str, Any], note: str = ""
) -> TemplateVersion:
    # Lock the template so two editors saving at once get numbers n+1 and n+2.
    Template.objects.select_for_update().filter(pk=template.pk).first()
    latest = template.versions.aggregate(latest=Max("number"))["latest"] or 0
    version = TemplateVersion.objects.create(
        template=template,
        number=latest + 1,
        content=content,
        variables=template.variables,
        note=note,
    )
    TEMPLATE_CHANGES.labels("version").inc()
    logger.info("template_version_created", template=template.key, version=version.number)
    return version


@transaction.atomic
def do_publish_version(template: Template, version: TemplateVersion) -> None:
    """Publish ``version`` (a rollback is publishing an earlier one)."""
    if version.template_id != template.pk:
        raise ValidationError({"version": ["This version belongs to another template."]})
    previous = template.published_version_id
    Template.objects.filter(pk=template.pk).update(published_version=version)
    template.published_version = version
    _forget_published(template)
    TEMPLATE_CHANGES.labels("publish").inc()
    logger.info(
        "template_published",
        template=template.key,
        version=version.number,
        previous_version_id=previous,
    )


@transaction.atomic
def do_delete_template(template: Template) -> None:
    """Raises ``ProtectedError`` when an intervention used one of its versions."""
    Template.objects.filter(pk=template.pk).update(published_version=None)
    template.delete()
    _forget_published(template)


def _forget_published(template: Template) -> None:
    key = published_cache_key(template.store_id, template.key)
    # After commit, or a render racing the publish could re-cache the old version.
    transaction.on_commit(lambda: published_cache().delete(key))
    published_cache().delete(key)


def preview_version(
    template: Template,
    version: TemplateVersion,
    *,
    channel: str,
    locale: str = "",
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Render ``version`` for ``channel``; ``context`` is merged over the sample one.
    Raises ``RenderError``."""
    full = sample_context(template.store.name)
    for name, value in (context or {}).items():
        if isinstance(value, dict) and isinstance(full.get(name), dict):
            full[name] = {**full[name], **value}
        else:
            full[name] = value
    return render_content(
        version.content, version.variables, template.fallback_locale, channel, full, locale
    )
