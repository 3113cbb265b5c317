"""Templates in the admin: edit by saving a new version, publish or roll back by
choosing a version, and see every channel rendered with the sample context."""

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from stores.admin_scoping import StoreScopedAdmin, StoreScopedTabularInline
from templates import actions
from templates.models import Template, TemplateVersion
from templates.rendering import CHANNEL_FIELDS, RenderError


class TemplateForm(forms.ModelForm):
    new_version_content = forms.JSONField(
        required=False,
        help_text='Saving with content creates a new version: {"en": {"sms": {"body": "…"}}}.',
    )
    new_version_note = forms.CharField(required=False, max_length=200)
    publish = forms.ModelChoiceField(
        queryset=TemplateVersion.objects.none(),
        required=False,
        help_text="Publish this version (choose an earlier one to roll back).",
    )
    publish_new_version = forms.BooleanField(required=False)

    class Meta:
        model = Template
        fields = ["store", "key", "name", "description", "variables", "fallback_locale"]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["publish"].queryset = self.instance.versions.all()  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        errors = actions.check_variables(cleaned.get("variables") or [])
        content = cleaned.get("new_version_content")
        if content and not errors:
            errors = actions.check_template_content(
                content, cleaned.get("variables") or [], cleaned.get("fallback_locale") or "en"
            )
        if errors:
            raise forms.ValidationError(
                [f"{path}: {message}" for path, messages in errors.items() for message in messages]
            )
        return cleaned


class TemplateVersionInline(StoreScopedTabularInline):
    model = TemplateVersion
    store_path = "template__store"
    fields = ["number", "note", "created_at"]
    readonly_fields = ["number", "note", "created_at"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def render_previews(version: TemplateVersion | None) -> SafeString:
    if version is None:
        return format_html("<p>{}</p>", "No version yet.")
    template = version.template
    rows = []
    for locale, channels in sorted(version.content.items()):
        for channel in CHANNEL_FIELDS:
            if channel not in (channels or {}):
                continue
            try:
                content = actions.preview_version(template, version, channel=channel, locale=locale)
                shown = json.dumps(content, indent=2, ensure_ascii=False)
            except RenderError as error:
                shown = f"Render error: {error}"
            rows.append((f"{locale} / {channel}", shown))
    return format_html(
        "<p>v{} rendered with the sample context (HTML shown as source).</p>{}",
        version.number,
        format_html_join(
            "",
            "<h4>{}</h4><pre style='white-space:pre-wrap;max-width:60rem'>{}</pre>",
            rows,
        ),
    )


@admin.register(Template)
class TemplateAdmin(StoreScopedAdmin):
    form = TemplateForm
    audited = frozenset({"added", "changed", "deleted"})
    list_display = ["key", "name", "store", "published_version", "updated_at"]
    list_filter = ["store"]
    search_fields = ["key", "name"]
    readonly_fields = ["published_version", "preview"]
    inlines = [TemplateVersionInline]
    fieldsets = [
        (None, {"fields": ["store", "key", "name", "description", "variables", "fallback_locale"]}),
        (
            "Versions",
            {
                "fields": [
                    "published_version",
                    "publish",
                    "new_version_content",
                    "new_version_note",
                    "publish_new_version",
                ]
            },
        ),
        ("Preview of the published version", {"fields": ["preview"]}),
    ]

    @admin.display(description="Rendered preview")
    def preview(self, template: Template) -> SafeString:
        if not template.pk:
            return format_html("<p>{}</p>", "Save the template first.")
        return render_previews(template.published_version or template.versions.first())

    def save_model(self, request: HttpRequest, obj: Template, form: Any, change: bool) -> None:
        # The admin form has validated the fields; the action saves and drops the cached
        # published lookup.
        actions.do_update_template(obj)
        content = form.cleaned_data.get("new_version_content")
        if content:
            actions.check_create_version(
                obj,
                content=content,
                note=form.cleaned_data.get("new_version_note", ""),
                publish=form.cleaned_data.get("publish_new_version", False),
            )
        elif form.cleaned_data.get("publish"):
            actions.do_publish_version(obj, form.cleaned_data["publish"])


@admin.register(TemplateVersion)
class TemplateVersionAdmin(StoreScopedAdmin):
    """Versions are immutable: viewable, never editable."""

    store_path = "template__store"

    list_display = ["__str__", "note", "created_at"]
    list_filter = ["template__store"]
    readonly_fields = [
        "template",
        "number",
        "content",
        "variables",
        "note",
        "created_at",
        "preview",
    ]

    @admin.display(description="Rendered preview")
    def preview(self, version: TemplateVersion) -> SafeString:
        return render_previews(version)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
