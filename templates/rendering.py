"""Rendering an intervention's message from its template (to be made real: sandboxed,
versioned, localized)."""

from typing import Any

from templates.models import Template, TemplateVersion


def render_message(
    store_id: Any, template_key: str, channel: str, context: dict[str, Any], locale: str = ""
) -> tuple[TemplateVersion | None, dict[str, Any]]:
    """The published version used and the rendered content for ``channel``.

    Without a template, the caller's personalization is the content.
    """
    template = (
        Template.objects.filter(store_id=store_id, key=template_key)
        .select_related("published_version")
        .first()
        if template_key
        else None
    )
    if template is None or template.published_version is None:
        return None, {k: v for k, v in context.items() if isinstance(v, str | int | float)}
    version = template.published_version
    by_locale = version.content.get(locale) or version.content.get(template.fallback_locale) or {}
    return version, dict(by_locale.get(channel, {}))
