"""/api/v1/campaigns: parse, authorize through the store, call one campaign action."""

from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import actions
from campaigns.budgets import budget_status
from campaigns.models import Campaign, CampaignChannel, CampaignRun
from config.api import DateTimeField, StrictModelSerializer, StrictSerializer
from stores.api.scoping import StoreScopedMixin
from stores.auth import actor_of


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "The campaign is not in a state that allows this."


class VariantSerializer(StrictSerializer):
    key = serializers.CharField(max_length=64)
    weight = serializers.FloatField(help_text="Percent of the treated shoppers; all sum to 100.")
    template_key = serializers.CharField(max_length=100, required=False, allow_blank=True)
    channel = serializers.ChoiceField(choices=CampaignChannel.choices, required=False)
    discount_percent = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=0, max_value=100, required=False, allow_null=True
    )
    delay_minutes = serializers.IntegerField(min_value=0, required=False)


class CampaignSerializer(StrictModelSerializer):
    segments = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    variants = VariantSerializer(many=True, required=False)
    is_active = serializers.BooleanField(
        required=False, help_text="Running. Setting it launches, resumes or pauses the campaign."
    )
    starts_at = DateTimeField(required=False, allow_null=True)
    ends_at = DateTimeField(required=False, allow_null=True)
    schedule_at = DateTimeField(required=False, allow_null=True)
    audience = serializers.JSONField(
        required=False, help_text="The audience rule (docs/campaigns.md); {} is everyone."
    )
    budget_channel_costs = serializers.JSONField(
        required=False, help_text='Cost caps per channel, e.g. {"sms": "50.00"}.'
    )
    budget = serializers.SerializerMethodField(
        help_text="Spend today and in total, and which budgets are exhausted."
    )

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "status",
            "is_active",
            "starts_at",
            "ends_at",
            "launched_at",
            "completed_at",
            "kind",
            "trigger",
            "schedule_cron",
            "schedule_at",
            "audience",
            "delay_minutes",
            "channel",
            "template_key",
            "priority",
            "min_cart_value",
            "max_cart_value",
            "segments",
            "min_probability",
            "max_probability",
            "discount_percent",
            "variants",
            "holdout_percent",
            "attribution_window_hours",
            "budget_sends_per_day",
            "budget_sends_total",
            "budget_discount",
            "budget_channel_costs",
            "budget",
            "mode",
            "auto_promote",
            "bandit_floor_percent",
            "live_weights",
            "attribution_model",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "status",
            "budget",
            "launched_at",
            "completed_at",
            "live_weights",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {
            "min_probability": {"min_value": 0.0, "max_value": 1.0},
            "max_probability": {"min_value": 0.0, "max_value": 1.0},
            "holdout_percent": {"min_value": 0.0, "max_value": 50.0},
            "attribution_window_hours": {"min_value": 1, "max_value": 24 * 90},
            "budget_discount": {"min_value": 0},
            "bandit_floor_percent": {"min_value": 0.0, "max_value": 50.0},
            "live_weights": {
                "help_text": "The split new shoppers get when a bandit or a promoted winner "
                "set it; null means the variants' weights."
            },
        }

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_budget(self, campaign: Campaign) -> dict[str, Any]:
        return budget_status(campaign, timezone.now())

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        current = {
            name: getattr(self.instance, name)
            for name in self.Meta.fields
            if self.instance is not None and name not in self.Meta.read_only_fields
        }
        variants = actions.check_campaign(self.context["view"].store, {**current, **attrs})
        if "variants" in attrs:
            attrs["variants"] = variants
        if "audience" in attrs:
            attrs["audience"] = actions.check_audience(attrs["audience"])
        if "budget_channel_costs" in attrs:
            attrs["budget_channel_costs"] = attrs["budget_channel_costs"] or {}
        return attrs


class CampaignRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = CampaignRun
        fields = [
            "id",
            "slot",
            "status",
            "selected",
            "sent",
            "skipped",
            "skip_reasons",
            "error",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class AudiencePreviewSerializer(serializers.Serializer):
    size = serializers.IntegerField(help_text="Shoppers in the audience now.")
    sample_shopper_ids = serializers.ListField(child=serializers.CharField())
    computed_at = serializers.DateTimeField()


class CampaignViewSet(
    StoreScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Campaign rules that turn cart events into interventions, and their experiments."""

    serializer_class = CampaignSerializer
    # The budget field reads the store's timezone and the spend rows of each campaign.
    queryset = Campaign.objects.select_related("store").prefetch_related("spend")

    @extend_schema(responses={201: CampaignSerializer}, summary="Create a draft")
    def create(self, request: Request) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        active = values.pop("is_active", None)
        campaign = actions.do_create_campaign(
            Campaign(store=self.store, **values), actor_of(request)
        )
        if active:
            campaign = actions.do_set_active(campaign, True, actor_of(request))
        return Response(self.get_serializer(campaign).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: CampaignSerializer, 409: OpenApiTypes.OBJECT})
    def update(self, request: Request, pk: str | None = None, partial: bool = False) -> Response:
        campaign = self.get_object()
        serializer = self.get_serializer(campaign, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        active = values.pop("is_active", None)
        try:
            campaign = actions.do_update_campaign(campaign, values, actor_of(request))
            if active is not None:
                campaign = actions.do_set_active(campaign, active, actor_of(request))
        except actions.CampaignConflict as exc:
            raise Conflict(str(exc)) from exc
        return Response(self.get_serializer(campaign).data)

    @extend_schema(responses={200: CampaignSerializer, 409: OpenApiTypes.OBJECT})
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self.update(request, pk, partial=True)

    @extend_schema(responses={204: None, 409: OpenApiTypes.OBJECT}, summary="Delete a draft")
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        try:
            actions.do_delete_campaign(self.get_object(), actor_of(request))
        except actions.CampaignConflict as exc:
            raise Conflict(str(exc)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)

    def command(self, request: Request, command: str) -> Response:
        try:
            campaign = actions.do_transition_campaign(self.get_object(), command, actor_of(request))
        except actions.CampaignConflict as exc:
            raise Conflict(str(exc)) from exc
        return Response(self.get_serializer(campaign).data)

    @extend_schema(
        request=None,
        responses={200: CampaignSerializer, 409: OpenApiTypes.OBJECT},
        summary="Start it (scheduled when starts_at is ahead)",
    )
    @action(detail=True, methods=["post"])
    def launch(self, request: Request, pk: str | None = None) -> Response:
        return self.command(request, "launch")

    @extend_schema(request=None, responses={200: CampaignSerializer, 409: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self.command(request, "pause")

    @extend_schema(request=None, responses={200: CampaignSerializer, 409: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self.command(request, "resume")

    @extend_schema(
        request=None,
        responses={200: CampaignSerializer, 409: OpenApiTypes.OBJECT},
        summary="Stop it and freeze its results",
    )
    @action(detail=True, methods=["post"])
    def complete(self, request: Request, pk: str | None = None) -> Response:
        return self.command(request, "complete")

    @extend_schema(request=None, responses={200: CampaignSerializer, 409: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str | None = None) -> Response:
        return self.command(request, "archive")

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
        summary="Experiment results per arm (docs/campaigns.md)",
    )
    @action(detail=True, methods=["get"])
    def results(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        try:
            document = actions.latest_results(campaign)
        except actions.NoExperiment as exc:
            raise Conflict(str(exc)) from exc
        return Response(with_promotion(campaign, document))

    @extend_schema(
        responses={200: AudiencePreviewSerializer},
        summary="How many shoppers the audience holds now, with a few of their ids",
    )
    @action(detail=True, methods=["get"], url_path="audience-preview")
    def audience_preview(self, request: Request, pk: str | None = None) -> Response:
        preview = actions.audience_preview(self.get_object(), timezone.now())
        return Response(AudiencePreviewSerializer(preview).data)

    @extend_schema(
        responses={200: CampaignRunSerializer(many=True)},
        summary="The scheduled campaign's runs, newest first",
    )
    @action(detail=True, methods=["get"])
    def runs(self, request: Request, pk: str | None = None) -> Response:
        runs = self.get_object().runs.order_by("-slot", "-id")
        page = self.paginate_queryset(runs)
        if page is not None:
            return self.get_paginated_response(CampaignRunSerializer(page, many=True).data)
        return Response(CampaignRunSerializer(runs, many=True).data)

    @extend_schema(
        request=None,
        responses={200: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
        summary="Recompute the results now (beat does every RESULTS_REFRESH_MINUTES)",
    )
    @action(detail=True, methods=["post"], url_path="results/refresh")
    def refresh_results(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        try:
            document = actions.do_refresh_results(campaign, "refresh").document
        except actions.NoExperiment as exc:
            raise Conflict(str(exc)) from exc
        campaign.refresh_from_db()
        return Response(with_promotion(campaign, document))

    @extend_schema(
        request=None,
        responses={200: CampaignSerializer, 409: OpenApiTypes.OBJECT},
        summary="Undo the automatic promotion of a winner: the split before it is restored",
    )
    @action(detail=True, methods=["post"], url_path="promotion/undo")
    def undo_promotion(self, request: Request, pk: str | None = None) -> Response:
        try:
            campaign = self.get_object()
            actions.do_undo_promotion(campaign, actor_of(request))
        except actions.CampaignConflict as exc:
            raise Conflict(str(exc)) from exc
        return Response(self.get_serializer(campaign).data)


def with_promotion(campaign: Campaign, document: dict[str, Any]) -> dict[str, Any]:
    """The results document and, under ``promotion``, the winner promoted (or null)."""
    promotion = actions.active_promotion(campaign)
    return {
        **document,
        "promotion": None
        if promotion is None
        else {
            "winner": promotion.winner,
            "decided_at": promotion.decided_at.isoformat(),
            "previous_weights": promotion.previous_weights,
        },
    }
