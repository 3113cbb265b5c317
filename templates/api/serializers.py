from typing import Any

from rest_framework import serializers

from config.api import StrictModelSerializer, StrictSerializer
from stores.models import CHANNEL_CHOICES
from templates.models import Template, TemplateVersion


class TemplateSerializer(StrictModelSerializer):
    variables = serializers.ListField(child=serializers.DictField(), required=False)
    published_version = serializers.IntegerField(
        source="published_version.number", read_only=True, allow_null=True, default=None
    )
    # On create only: the first version's content, published if ``publish``.
    content = serializers.DictField(write_only=True, required=False)
    publish = serializers.BooleanField(write_only=True, required=False, default=False)

    class Meta:
        model = Template
        fields = [
            "id",
            "key",
            "name",
            "description",
            "variables",
            "fallback_locale",
            "published_version",
            "content",
            "publish",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        # Uniqueness per store is checked by the action (the store is not in the payload).
        validators: list[Any] = []


class TemplateUpdateSerializer(StrictModelSerializer):
    variables = serializers.ListField(child=serializers.DictField(), required=False)

    class Meta:
        model = Template
        fields = ["name", "description", "variables", "fallback_locale"]


class TemplateVersionSerializer(StrictModelSerializer):
    content = serializers.DictField()
    publish = serializers.BooleanField(write_only=True, required=False, default=False)
    published = serializers.SerializerMethodField()

    class Meta:
        model = TemplateVersion
        fields = ["number", "content", "variables", "note", "publish", "published", "created_at"]
        read_only_fields = ["number", "variables", "created_at"]

    def get_published(self, version: TemplateVersion) -> bool:
        return version.template.published_version_id == version.pk


class PublishSerializer(StrictSerializer):
    version = serializers.IntegerField(min_value=1)


class PreviewSerializer(StrictSerializer):
    channel = serializers.ChoiceField(choices=CHANNEL_CHOICES)
    locale = serializers.CharField(required=False, allow_blank=True, default="")
    # Defaults to the published version, else the latest.
    version = serializers.IntegerField(required=False, min_value=1)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # "context" names the serializer's own context attribute, so it is added here.
        # Merged over the sample context: {"shopper": {"first_name": "Zoé"}}.
        fields["context"] = serializers.DictField(required=False, default=dict)
        return fields
