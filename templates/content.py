"""Links in message content: only absolute http(s) URLs reach a shopper (docs/templates.md).

The WebSocket client navigates to ``cta_url`` and push payloads carry ``data.url``; a
``javascript:`` URL there runs in the store's page with the shopper's session. Every
field that carries a URL (``url``, ``link``, ``href`` or a name ending in ``_url``,
``_link``, ``_href``) is checked wherever content comes from: a trigger's
personalization at intake, a template's rendered output, an edited content.

``CONTENT_URL_HOSTS`` (comma-separated) narrows links to the store's domains and their
subdomains; empty allows any http(s) host. This service's own host (``PUBLIC_BASE_URL``,
recovery and unsubscribe links) is always allowed.
"""

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

URL_FIELD_NAMES = frozenset({"url", "link", "href"})
URL_FIELD_SUFFIXES = ("_url", "_link", "_href")
# Browsers drop these before reading a URL's scheme ("java\tscript:" is javascript:).
_IGNORED_BY_BROWSERS = re.compile(r"[\x00-\x20\x7f]")


def is_url_field(name: Any) -> bool:
    name = str(name).lower()
    return name in URL_FIELD_NAMES or name.endswith(URL_FIELD_SUFFIXES)


def url_problem(value: Any) -> str | None:
    """Why ``value`` may not be a link in a message, or ``None`` when it may."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        return "Must be an absolute http(s) URL."
    parts = urlsplit(_IGNORED_BY_BROWSERS.sub("", value))
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "Must be an absolute http(s) URL."
    if not host_allowed(parts.hostname):
        return f"{parts.hostname} is not one of the allowed hosts (CONTENT_URL_HOSTS)."
    return None


def host_allowed(host: str) -> bool:
    allowed = [h.strip().lower().lstrip(".") for h in settings.CONTENT_URL_HOSTS if h.strip()]
    if not allowed:
        return True
    allowed.append(urlsplit(settings.PUBLIC_BASE_URL).hostname or "")
    host = host.lower()
    return any(host == domain or host.endswith(f".{domain}") for domain in allowed if domain)


def url_errors(values: Any, path: str = "") -> dict[str, list[str]]:
    """Every URL-carrying field under ``values`` that is not an allowed link, by path
    (``data.url``, ``links.0.href``)."""
    errors: dict[str, list[str]] = {}
    if isinstance(values, Mapping):
        children: Any = values.items()
    elif isinstance(values, list):
        children = enumerate(values)
    else:
        return errors
    for name, value in children:
        where = f"{path}.{name}" if path else str(name)
        problem = url_problem(value) if is_url_field(name) else None
        if problem:
            errors[where] = [problem]
        else:
            errors.update(url_errors(value, where))
    return errors


def check_content_urls(values: Any) -> None:
    """Raises ``ValidationError`` keyed by field path when a link is not allowed."""
    errors = url_errors(values)
    if errors:
        raise ValidationError(errors)
