from typing import Any

from django.db import transaction
from django.db.models import Field, ProtectedError, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.errors import error_body
from stores import audit
from stores.api.scoping import StoreScopedMixin
from stores.auth import actor_of
from templates import actions
from templates.api.serializers import (
    PreviewSerializer,
    PublishSerializer,
    TemplateSerializer,
    TemplateUpdateSerializer,
    TemplateVersionSerializer,
)
from templates.models import Template, TemplateVersion
from templates.rendering import RenderError


class TemplateViewSet(StoreScopedMixin, viewsets.ModelViewSet):
    """Message templates. Content lives in immutable versions: POST a version to edit,
    publish one to use it, publish an earlier one to roll back."""

    queryset = Template.objects.select_related("published_version", "store")
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        if self.action in ("update", "partial_update"):
            return TemplateUpdateSerializer
        return TemplateSerializer

    # Every write records an audit entry in its transaction (docs/operations.md#audit-log).
    @transaction.atomic
    def perform_create(self, serializer: serializers.BaseSerializer[Any]) -> None:
        data = dict(serializer.validated_data)
        serializer.instance = actions.check_create_template(self.store, **data)
        audit.do_record_added(serializer.instance, actor_of(self.request))

    @extend_schema(request=TemplateUpdateSerializer, responses=TemplateSerializer)
    @transaction.atomic
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """PATCH changes what it names; PUT replaces the template's fields, so a field it
        leaves out goes back to its default (content stays in versions either way)."""
        template = self.get_object()
        before = audit.snapshot(template)
        partial = kwargs.get("partial", False)
        changes = TemplateUpdateSerializer(data=request.data, partial=partial)
        changes.is_valid(raise_exception=True)
        values = dict(changes.validated_data)
        if not partial:
            for name in TemplateUpdateSerializer.Meta.fields:
                field = Template._meta.get_field(name)
                values.setdefault(name, field.get_default() if isinstance(field, Field) else None)
        actions.check_update_template(template, **values)
        audit.do_record_changed(template, actor_of(request), before)
        return Response(TemplateSerializer(template).data)

    @extend_schema(request=TemplateUpdateSerializer, responses=TemplateSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def perform_destroy(self, instance: Template) -> None:
        try:
            with transaction.atomic():
                audit.do_record_deleted(instance, actor_of(self.request))
                actions.do_delete_template(instance)
        except ProtectedError as error:
            raise TemplateInUse() from error

    def versions_of(self, template: Template) -> "QuerySet[TemplateVersion]":
        return template.versions.select_related("template")

    @extend_schema(
        request=TemplateVersionSerializer, responses=TemplateVersionSerializer(many=True)
    )
    @action(detail=True, methods=["get", "post"])
    def versions(self, request: Request, pk: str | None = None) -> Response:
        template = self.get_object()
        if request.method == "GET":
            return Response(TemplateVersionSerializer(self.versions_of(template), many=True).data)
        incoming = TemplateVersionSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        with transaction.atomic():
            before = audit.snapshot(template)
            version = actions.check_create_version(
                template,
                content=incoming.validated_data["content"],
                note=incoming.validated_data.get("note", ""),
                publish=incoming.validated_data.get("publish", False),
            )
            template.refresh_from_db()
            changes = audit.diff(before, audit.snapshot(template))
            changes["version"] = [None, version.number]
            audit.do_record_audit(template, actor_of(request), "new_version", changes)
        return Response(TemplateVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PublishSerializer, responses=TemplateSerializer)
    @action(detail=True, methods=["post"])
    def publish(self, request: Request, pk: str | None = None) -> Response:
        template = self.get_object()
        incoming = PublishSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        version = (
            self.versions_of(template).filter(number=incoming.validated_data["version"]).first()
        )
        if version is None:
            raise serializers.ValidationError({"version": ["No such version."]})
        with transaction.atomic():
            before = audit.snapshot(template)
            actions.do_publish_version(template, version)
            audit.do_record_changed(template, actor_of(request), before, action="publish")
        return Response(TemplateSerializer(template).data)

    @extend_schema(request=PreviewSerializer)
    @action(detail=True, methods=["post"])
    def preview(self, request: Request, pk: str | None = None) -> Response:
        template = self.get_object()
        incoming = PreviewSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        wanted = incoming.validated_data.get("version")
        versions = self.versions_of(template)
        version = (
            versions.filter(number=wanted).first()
            if wanted
            else template.published_version or versions.first()
        )
        if version is None:
            raise serializers.ValidationError({"version": ["The template has no such version."]})
        try:
            content = actions.preview_version(
                template,
                version,
                channel=incoming.validated_data["channel"],
                locale=incoming.validated_data["locale"],
                context=incoming.validated_data["context"],
            )
        except RenderError as error:
            return Response(
                error_body(
                    "render_error",
                    str(error),
                    {error.field or "content": [error.explanation]},
                ),
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(
            {
                "version": version.number,
                "channel": incoming.validated_data["channel"],
                "content": content,
            }
        )


class TemplateInUse(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Interventions used a version of this template; it cannot be deleted."
    default_code = "template_in_use"
