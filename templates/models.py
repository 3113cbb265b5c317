"""Message templates with immutable versions (docs/templates.md)."""

from django.db import models

from stores.models import Store


class Template(models.Model):
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="message_templates")
    key = models.SlugField(max_length=100, help_text="What interventions and campaigns refer to.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # [{"name": "first_name", "type": "string", "default": "there"}, ...]
    variables = models.JSONField(default=list, blank=True)
    fallback_locale = models.CharField(max_length=16, default="en")
    # RESTRICT, not PROTECT: a published version cannot be deleted on its own, but
    # deleting the template or its store (which deletes the versions too) must work.
    published_version = models.ForeignKey(
        "TemplateVersion", on_delete=models.RESTRICT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["store", "key"]
        constraints = [models.UniqueConstraint(fields=["store", "key"], name="unique_template_key")]

    def __str__(self) -> str:
        return self.key


class TemplateVersion(models.Model):
    """Never edited after creation: editing a template creates a new version."""

    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    # {"en": {"email": {"subject", "html", "text"}, "sms": {"body"}, "push": {"title", "body", "data"},
    #         "websocket": {"title", "body", "cta", "discount_code", "style"}}, "fr": {...}}
    content = models.JSONField(default=dict)
    # The template's declared variables when this version was made, so re-rendering an
    # old version (rollback, reproducing a send) uses the defaults it was written with.
    variables = models.JSONField(default=list, blank=True)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["template", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["template", "number"], name="unique_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.template.key} v{self.number}"
