"""Tracking and conversion endpoints (docs/analytics.md): parse, authorize through the
store, call one action, serialize."""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from interventions import actions
from interventions.models import Intervention
from stores.api.scoping import StoreScopedMixin
from stores.auth import store_of
from tracking.actions import ConversionConflict, do_record_tracking_event
from tracking.api.serializers import (
    ConversionInputSerializer,
    ConversionSerializer,
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
        responses={201: TrackResultSerializer, 200: TrackResultSerializer},
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
