"""Tracking, conversions and analytics endpoints (docs/analytics.md): parse, authorize
through the store, call one action or query, serialize."""

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from interventions import actions
from interventions.models import Intervention
from stores.api.scoping import StoreScopedMixin
from stores.auth import store_of
from tracking import analytics
from tracking.actions import ConversionConflict, check_report_time, do_record_tracking_event
from tracking.api.renderers import AnalyticsCSVRenderer
from tracking.api.serializers import (
    AnalyticsQuerySerializer,
    ChannelsSerializer,
    ConversionInputSerializer,
    ConversionSerializer,
    FunnelSerializer,
    PerformanceQuerySerializer,
    PerformanceSerializer,
    TimelineSerializer,
    TrackEventSerializer,
    TrackResultSerializer,
)
from tracking.timeline import timeline


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class TrackView(StoreScopedMixin, generics.GenericAPIView):
    queryset = Intervention.objects.all()
    lookup_url_kwarg = "intervention_id"
    serializer_class = TrackEventSerializer

    @extend_schema(
        responses={200: TimelineSerializer},
        summary="An intervention's timeline",
        description="Status changes and tracking events in one list, oldest first.",
    )
    def get(self, request: Request, intervention_id: Any) -> Response:
        intervention = self.get_object()
        return Response(
            TimelineSerializer(
                {
                    "intervention_id": intervention.pk,
                    "status": intervention.status,
                    "timeline": timeline(intervention),
                }
            ).data
        )

    @extend_schema(
        request=TrackEventSerializer,
        responses={
            201: TrackResultSerializer,
            200: TrackResultSerializer,
            400: OpenApiResponse(
                description="An unknown `event`, or an `occurred_at` in the future, before "
                "the intervention was created or older than tracking retention; "
                "`error.fields` names the field and the reason."
            ),
        },
        summary="Report what happened to an intervention",
        description="`delivered` moves a sent intervention to delivered (200 and "
        "`recorded: false` when it was not sent or already delivered); the other events are "
        "recorded (201). A repeated `opened` or `clicked` within the dedupe window is "
        "recorded with `duplicate: true` and not counted.",
    )
    def post(self, request: Request, intervention_id: Any) -> Response:
        intervention = self.get_object()
        serializer = TrackEventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        event = serializer.validated_data["event"]
        at = serializer.validated_data.get("occurred_at")
        if at is not None:
            check_report_time(intervention, at)
        duplicate = False
        if event == "delivered":
            # A status change: the engine's, which writes the delivered tracking row too.
            recorded = actions.do_mark_delivered(intervention, source="api", at=at)
        else:
            row = do_record_tracking_event(
                intervention,
                event,
                source="api",
                occurred_at=at,
                metadata=serializer.validated_data["metadata"],
            )
            recorded, duplicate = True, row.duplicate
        result = {
            "event": event,
            "recorded": recorded,
            "duplicate": duplicate,
            "status": intervention.status,
        }
        return Response(
            TrackResultSerializer(result).data,
            status=status.HTTP_201_CREATED if recorded else status.HTTP_200_OK,
        )


class ConversionView(APIView):
    @extend_schema(
        request=ConversionInputSerializer,
        responses={201: ConversionSerializer, 200: ConversionSerializer},
        summary="Report an order",
        description="Idempotent on `order_id`: a repeat answers 200 with the first; the "
        "same order id with a different body is a 409. The order is attributed to the "
        "shopper's last intervention sent within the attribution window (any cart).",
    )
    def post(self, request: Request) -> Response:
        serializer = ConversionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            conversion, created = actions.check_record_conversion(
                store_of(request), serializer.validated_data
            )
        except ConversionConflict as exc:
            raise Conflict(str(exc)) from exc
        return Response(
            ConversionSerializer(conversion).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class AnalyticsView(APIView):
    """``?format=csv`` (or ``Accept: text/csv``) answers the same figures as a CSV table."""

    renderer_classes = [JSONRenderer, AnalyticsCSVRenderer]
    csv_name = "analytics"


def query_of(request: Request) -> dict[str, Any]:
    """The filters, without DRF's own ``format`` (?format=csv)."""
    return {k: v for k, v in request.query_params.dict().items() if k != "format"}


def filters_from(request: Request, query: AnalyticsQuerySerializer) -> analytics.Filters:
    query.is_valid(raise_exception=True)
    return analytics.filters_for(
        store_of(request),
        since=query.validated_data.get("since"),
        until=query.validated_data.get("until"),
        campaign_id=query.validated_data.get("campaign"),
        channel=query.validated_data.get("channel", ""),
        variant=query.validated_data.get("variant", ""),
    )


class PerformanceView(AnalyticsView):
    csv_name = "performance"

    @extend_schema(
        parameters=[PerformanceQuerySerializer],
        responses={200: PerformanceSerializer},
        summary="Sends, opens, clicks and recovered revenue by day or week",
    )
    def get(self, request: Request) -> Response:
        query = PerformanceQuerySerializer(data=query_of(request))
        filters = filters_from(request, query)
        result = analytics.performance(store_of(request), filters, query.validated_data["interval"])
        return Response(PerformanceSerializer(result).data)


class ChannelsView(AnalyticsView):
    csv_name = "channels"

    @extend_schema(
        parameters=[AnalyticsQuerySerializer],
        responses={200: ChannelsSerializer},
        summary="The same figures per channel, side by side",
    )
    def get(self, request: Request) -> Response:
        filters = filters_from(request, AnalyticsQuerySerializer(data=query_of(request)))
        return Response(ChannelsSerializer(analytics.channels(store_of(request), filters)).data)


class ConversionFunnelView(AnalyticsView):
    csv_name = "conversion"

    @extend_schema(
        parameters=[AnalyticsQuerySerializer],
        responses={200: FunnelSerializer},
        summary="From abandoned carts to orders, with suppression reasons",
    )
    def get(self, request: Request) -> Response:
        filters = filters_from(request, AnalyticsQuerySerializer(data=query_of(request)))
        funnel = analytics.conversion_funnel(store_of(request), filters)
        return Response(FunnelSerializer(funnel).data)
