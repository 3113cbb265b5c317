"""REST endpoints: parse, authorize through the store, call one action, serialize."""

from typing import Any

import django_filters
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import check_datetime
from config.errors import error_body, flatten_field_errors
from interventions import actions
from interventions.actions import check_trigger_batch
from interventions.api.serializers import (
    BatchItemSerializer,
    BatchSerializer,
    EventBatchItemSerializer,
    EventBatchSerializer,
    EventResultSerializer,
    EventSerializer,
    InterventionDetailSerializer,
    InterventionReplaceSerializer,
    InterventionSerializer,
    InterventionUpdateSerializer,
    ScheduleSerializer,
    TriggerSerializer,
)
from interventions.models import Intervention, Status
from stores.api.scoping import StoreScopedMixin
from stores.auth import store_of

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Repeat a request safely: the same key returns the first result, "
    "with no second intervention.",
)


# Built once and shared by every request and thread: constructing a serializer
# deep-copies its declared fields, and a ModelSerializer then builds each field from the
# model (~0.5 ms of the trigger's CPU, issue 12). Validating and representing keep no
# state on the instance, so one instance serves concurrent requests.
TRIGGER = TriggerSerializer()
SCHEDULE = ScheduleSerializer()
EVENT = EventSerializer()
INTERVENTION = InterventionSerializer()
EVENT_RESULT = EventResultSerializer()


def represent(intervention: Intervention) -> dict[str, Any]:
    return INTERVENTION.to_representation(intervention)


def idempotency_key(request: Request) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > 200:
        raise exceptions.ValidationError({"Idempotency-Key": ["At most 200 characters."]})
    return key


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "The intervention is not in a state that allows this."


def batch_summary(intervention: Intervention) -> dict[str, Any]:
    """What a batch caller needs per item; full serialization cost ~2 ms an item."""
    return {
        "id": str(intervention.pk),
        "status": intervention.status,
        "channel": intervention.channel,
        "user_id": intervention.shopper.external_id,
        "cart_id": intervention.cart.external_id if intervention.cart else None,
        "send_at": intervention.send_at.isoformat() if intervention.send_at else None,
        "reasons": intervention.decision.get("reasons", []),
    }


class EventView(APIView):
    @extend_schema(
        request=EventSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={202: EventResultSerializer, 200: EventResultSerializer},
        summary="Report a cart event or a prediction",
        description="Accepted events are stored. `checkout_completed` cancels the cart's "
        "unsent interventions and attributes the conversion; `cart_abandoned` and "
        "`prediction` may start an intervention through the store's campaigns. 202 when "
        "accepted, 200 with the first answer when an Idempotency-Key repeat; the same key "
        "with another body is a 409.",
    )
    def post(self, request: Request) -> Response:
        event = EVENT.run_validation(request.data)
        try:
            answer, created = actions.check_accept_event(
                store_of(request), event, idempotency_key(request), EVENT_RESULT.to_representation
            )
        except actions.InterventionConflict as exc:
            raise Conflict(str(exc)) from exc
        return Response(answer, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


def validate_each(
    items: list[Any], validator: serializers.Serializer
) -> tuple[list[dict[str, Any] | None], list[tuple[int, dict[str, Any]]]]:
    """A batch's items validated one by one: a 400 result in place of each bad item (one
    bad item does not sink the others), and the good ones with their index. One validator
    for every item: building a serializer deep-copies its fields, which cost more than the
    validation itself (~1 ms an item)."""
    results: list[dict[str, Any] | None] = [None] * len(items)
    valid: list[tuple[int, dict[str, Any]]] = []
    for index, item in enumerate(items):
        try:
            valid.append((index, dict(validator.run_validation(item))))
        except serializers.ValidationError as exc:
            fields = flatten_field_errors(exc.detail)
            results[index] = {"status": 400, **error_body("invalid", "Invalid item.", fields)}
    return results, valid


class EventBatchView(APIView):
    @extend_schema(
        request=EventBatchSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            207: inline_serializer(
                "EventBatchResult",
                {
                    "results": serializers.ListField(child=serializers.DictField()),
                    "accepted": serializers.IntegerField(),
                    "failed": serializers.IntegerField(),
                },
            )
        },
        summary=f"Report up to {settings.EVENT_BATCH_MAX} cart events or predictions",
        description="Stored now, decided shortly after by a worker (the answer carries no "
        "decision: the interventions appear under `GET /api/v1/interventions`). One result "
        "per item, in order: `{status: 202|200, event: {id}}` or `{status: 400|409, error}`; "
        "200 for an Idempotency-Key repeat (an item's `idempotency_key`, else the header's "
        "key and the item's index), which stores and decides nothing again. One bad item "
        "does not sink the others.",
    )
    def post(self, request: Request) -> Response:
        envelope = EventBatchSerializer(data=request.data)
        envelope.is_valid(raise_exception=True)
        items = envelope.validated_data["events"]
        results, valid = validate_each(items, EventBatchItemSerializer())
        accepted = actions.check_accept_events(
            store_of(request), [event for _, event in valid], idempotency_key(request)
        )
        for (index, _), outcome in zip(valid, accepted, strict=True):
            if isinstance(outcome, actions.Accepted):
                results[index] = {
                    "status": 202 if outcome.created else 200,
                    "event": {"id": outcome.event_id},
                }
            else:
                code = 409 if isinstance(outcome, actions.InterventionConflict) else 400
                results[index] = {"status": code, **error_body("rejected", str(outcome))}
        ok = sum(1 for r in results if r and r["status"] in (200, 202))
        return Response(
            {"results": results, "accepted": ok, "failed": len(results) - ok}, status=207
        )


class CheckedIsoDateTimeField(django_filters.fields.IsoDateTimeField):
    def clean(self, value: Any) -> Any:
        cleaned = super().clean(value)
        return check_datetime(cleaned) if cleaned is not None else None


class CheckedIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = CheckedIsoDateTimeField


class InterventionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Status.choices)
    channel = django_filters.CharFilter()
    user_id = django_filters.CharFilter(field_name="shopper__external_id")
    cart_id = django_filters.CharFilter(field_name="cart__external_id")
    created_after = CheckedIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = CheckedIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Intervention
        fields = ["status", "channel", "user_id", "cart_id", "created_after", "created_before"]


class NewestFirst(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class InterventionViewSet(
    StoreScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Intervention.objects.select_related("shopper", "cart", "template_version")
    serializer_class = InterventionSerializer
    filterset_class = InterventionFilter
    filter_backends = [django_filters.rest_framework.DjangoFilterBackend]
    pagination_class = NewestFirst
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Intervention]:
        queryset = super().get_queryset()
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("events", "tracking_events")
        return queryset

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        if self.action == "retrieve":
            return InterventionDetailSerializer
        return InterventionSerializer

    @extend_schema(
        request=TriggerSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: InterventionSerializer, 200: InterventionSerializer},
        summary="Trigger an intervention",
        description="The caller's decision: the probability threshold, campaign conditions "
        "and frequency caps are skipped; opt-outs, suppression lists and quiet hours "
        "(email, SMS, push) still apply. 201 when created, 200 when an Idempotency-Key repeat; "
        "an unknown or unpublished `template` is a 400 and nothing is stored.",
    )
    def create(self, request: Request) -> Response:
        return self._trigger(request, TRIGGER)

    def _trigger(self, request: Request, validator: TriggerSerializer) -> Response:
        trigger = validator.run_validation(request.data)
        key = idempotency_key(request)
        try:
            intervention, created = actions.check_trigger_intervention(self.store, trigger, key)
        except actions.InterventionConflict as exc:
            raise Conflict(str(exc)) from exc
        return Response(
            represent(intervention),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        request=InterventionUpdateSerializer,
        responses={200: InterventionSerializer, 409: OpenApiTypes.OBJECT},
        summary="Reschedule or change content before the send",
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self.update(request, pk, partial=True)

    @extend_schema(
        request=InterventionReplaceSerializer,
        responses={200: InterventionSerializer, 409: OpenApiTypes.OBJECT},
        summary="Replace send time, expiry, content and personalization before the send",
    )
    def update(self, request: Request, pk: str | None = None, partial: bool = False) -> Response:
        intervention = self.get_object()
        serializer = (InterventionUpdateSerializer if partial else InterventionReplaceSerializer)(
            data=request.data
        )
        serializer.is_valid(raise_exception=True)
        try:
            updated = actions.do_update_unsent(intervention, serializer.validated_data)
        except actions.InterventionConflict as exc:
            raise Conflict(str(exc)) from exc
        return Response(represent(updated))

    @extend_schema(
        responses={204: None, 409: OpenApiTypes.OBJECT}, summary="Cancel (409 once sent)"
    )
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        try:
            actions.do_cancel_intervention(self.get_object())
        except actions.InterventionConflict as exc:
            raise Conflict(str(exc)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=None, responses={200: InterventionSerializer}, summary="Retry a failed one"
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        intervention = self.get_object()
        try:
            actions.do_retry_failed(intervention, "retry requested through the API")
        except actions.InterventionConflict as exc:
            raise Conflict(str(exc)) from exc
        return Response(represent(intervention))

    @extend_schema(
        request=BatchSerializer,
        responses={
            207: inline_serializer(
                "BatchResult",
                {
                    "results": serializers.ListField(child=serializers.DictField()),
                    "created": serializers.IntegerField(),
                    "failed": serializers.IntegerField(),
                },
            )
        },
        summary=f"Trigger up to {settings.INTERVENTION_BATCH_MAX} interventions",
        description="One result per item, in order: `{status: 201|200, intervention: {id, "
        "status, channel, send_at, reasons}}` or `{status: 400|409, error}`. One bad item does "
        "not sink the others. The full intervention is at `GET /api/v1/interventions/{id}`.",
    )
    @action(detail=False, methods=["post"])
    def batch(self, request: Request) -> Response:
        envelope = BatchSerializer(data=request.data)
        envelope.is_valid(raise_exception=True)
        items = envelope.validated_data["interventions"]
        results, valid = validate_each(items, BatchItemSerializer())
        outcomes = check_trigger_batch(self.store, [trigger for _, trigger in valid])
        for (index, _), outcome in zip(valid, outcomes, strict=True):
            if isinstance(outcome, actions.Outcome):
                assert outcome.intervention is not None
                results[index] = {
                    "status": 201 if outcome.created else 200,
                    "intervention": batch_summary(outcome.intervention),
                }
            elif isinstance(outcome, DjangoValidationError):
                fields = {k: [str(m) for m in v] for k, v in outcome.message_dict.items()}
                results[index] = {"status": 400, **error_body("invalid", "Invalid item.", fields)}
            else:
                code = 409 if isinstance(outcome, actions.InterventionConflict) else 400
                results[index] = {"status": code, **error_body("rejected", str(outcome))}
        created = sum(1 for r in results if r and r["status"] in (200, 201))
        return Response(
            {"results": results, "created": created, "failed": len(results) - created},
            status=207,
        )

    @extend_schema(
        request=ScheduleSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: InterventionSerializer},
        summary="Schedule an intervention for a given time",
    )
    @action(detail=False, methods=["post"])
    def schedule(self, request: Request) -> Response:
        # The schema's promise: a send time is required here, not optional as on create.
        return self._trigger(request, SCHEDULE)
