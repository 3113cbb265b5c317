"""``/api/v1/webhook-endpoints``: a store's subscribers (docs/webhooks.md). The secret is
in the response to the create call only."""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.api import DateTimeField, StrictModelSerializer, StrictSerializer
from outbound import actions
from outbound.models import WebhookEndpoint
from stores.api.scoping import StoreScopedMixin


class WebhookEndpointSerializer(StrictModelSerializer):
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        max_length=100,
        help_text="Event types to receive (`intervention.sent`, or a prefix `tracking.*`); "
        "empty: all.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "enabled",
            "disabled_reason",
            "consecutive_failures",
            "last_error",
            "last_failure_at",
            "last_success_at",
            "next_attempt_at",
            "created_at",
        ]
        read_only_fields = [
            "id",
            "disabled_reason",
            "consecutive_failures",
            "last_error",
            "last_failure_at",
            "last_success_at",
            "next_attempt_at",
            "created_at",
        ]


class CreatedWebhookEndpointSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="Shown once: store it to verify signatures."
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class ReplaySerializer(StrictSerializer):
    since = DateTimeField(required=False, help_text="Every event recorded since then.")
    ids = serializers.ListField(
        child=serializers.CharField(max_length=40),
        required=False,
        max_length=1000,
        help_text="webhook-id values of the events to send again.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("since") and not attrs.get("ids"):
            raise serializers.ValidationError({"since": ["Give since, ids, or both."]})
        return attrs


class ReplayResultSerializer(serializers.Serializer):
    queued = serializers.IntegerField(help_text="Events that will be sent again, in order.")


def invalid(error: actions.EndpointInvalid) -> serializers.ValidationError:
    return serializers.ValidationError({error.field: [str(error)]})


class WebhookEndpointViewSet(
    StoreScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = WebhookEndpointSerializer
    queryset = WebhookEndpoint.objects.all()
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    @extend_schema(responses={201: CreatedWebhookEndpointSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = WebhookEndpointSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            endpoint = actions.do_create_endpoint(
                self.store,
                url=body.validated_data["url"],
                description=body.validated_data.get("description", ""),
                event_types=body.validated_data.get("event_types", []),
            )
        except actions.EndpointInvalid as error:
            raise invalid(error) from error
        return Response(
            CreatedWebhookEndpointSerializer(endpoint).data, status=status.HTTP_201_CREATED
        )

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        endpoint = self.get_object()
        body = WebhookEndpointSerializer(endpoint, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        try:
            endpoint = actions.do_update_endpoint(endpoint, dict(body.validated_data))
        except actions.EndpointInvalid as error:
            raise invalid(error) from error
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(request=ReplaySerializer, responses={202: ReplayResultSerializer})
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Send events again, with their original webhook-id (receivers deduplicate)."""
        endpoint = self.get_object()
        body = ReplaySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        queued = actions.do_replay(
            endpoint,
            since=body.validated_data.get("since"),
            webhook_ids=body.validated_data.get("ids"),
        )
        return Response({"queued": queued}, status=status.HTTP_202_ACCEPTED)
