from typing import Any

from django.conf import settings
from rest_framework import serializers

from config.api import DateTimeField, PhoneNumberField, ReportedAtField, StrictSerializer
from interventions.models import (
    REQUESTED_CHANNEL_CHOICES,
    EventType,
    Intervention,
    InterventionEvent,
)
from stores.models import iana_timezones
from templates.content import check_content_urls
from tracking.api.serializers import TrackingEventSerializer


class CartItemSerializer(StrictSerializer):
    sku = serializers.CharField(max_length=100)
    category = serializers.CharField(max_length=100, required=False, allow_blank=True)
    name = serializers.CharField(max_length=300, required=False, allow_blank=True)
    price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0)
    quantity = serializers.IntegerField(min_value=1, default=1)
    image = serializers.URLField(required=False, allow_blank=True)
    url = serializers.URLField(required=False, allow_blank=True)


class CartSerializer(StrictSerializer):
    value = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, help_text="ISO 4217, e.g. EUR")
    items = CartItemSerializer(many=True, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # JSON-safe for storage on the cart.
        if "items" in attrs:
            attrs["items"] = [{**item, "price": str(item["price"])} for item in attrs["items"]]
        return attrs


class ShopperProfileSerializer(StrictSerializer):
    email = serializers.EmailField(required=False, allow_blank=True)
    phone = PhoneNumberField(required=False, allow_blank=True)
    first_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    locale = serializers.CharField(max_length=16, required=False, allow_blank=True)
    country = serializers.RegexField(
        r"^[A-Z]{2}$", required=False, allow_blank=True, help_text="ISO 3166-1 alpha-2, e.g. FR"
    )
    timezone = serializers.CharField(max_length=64, required=False, allow_blank=True)
    segment = serializers.CharField(max_length=64, required=False, allow_blank=True)
    push_tokens = serializers.ListField(
        child=serializers.CharField(max_length=4096),
        max_length=20,
        required=False,
        help_text="FCM registration tokens of the shopper's devices; registered for push.",
    )

    def validate_timezone(self, value: str) -> str:
        if value and value not in iana_timezones():
            raise serializers.ValidationError(f"{value!r} is not an IANA time zone name.")
        return value


class PredictionSerializer(StrictSerializer):
    probability = serializers.FloatField(min_value=0.0, max_value=1.0)
    confidence = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    recommended_action = serializers.ChoiceField(
        choices=["none", "discount", "reminder", "urgency"], required=False
    )
    recommended_discount = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=0, max_value=100, required=False
    )
    model_version = serializers.CharField(max_length=64, required=False, allow_blank=True)


class EventSerializer(StrictSerializer):
    type = serializers.ChoiceField(choices=EventType.choices)
    cart_id = serializers.CharField(max_length=200)
    user_id = serializers.CharField(max_length=200)
    occurred_at = ReportedAtField(
        kept="cart_events",
        required=False,
        help_text="When it happened; default: now. At most TRACKING_CLOCK_SKEW_SECONDS in "
        "the future and not older than cart-event retention (RETENTION_CART_EVENTS_DAYS); "
        "otherwise a 400 naming `occurred_at`.",
    )
    cart = CartSerializer(required=False)
    user = ShopperProfileSerializer(required=False)
    prediction = PredictionSerializer(required=False)
    order_id = serializers.CharField(
        max_length=200,
        required=False,
        help_text="checkout_completed only: the store's order id (default cart:<cart_id>).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["type"] == EventType.PREDICTION and "prediction" not in attrs:
            raise serializers.ValidationError({"prediction": ["Required for prediction events."]})
        return attrs


class EventBatchItemSerializer(EventSerializer):
    idempotency_key = serializers.CharField(max_length=200, required=False, allow_blank=True)


class EventBatchSerializer(StrictSerializer):
    events = serializers.ListField(
        child=serializers.DictField(),
        min_length=1,
        max_length=settings.EVENT_BATCH_MAX,
        help_text=f"Up to {settings.EVENT_BATCH_MAX} events; each is validated on its own.",
    )


class DecisionOutcomeSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="intervention.pk")
    status = serializers.CharField(source="intervention.status")
    channel = serializers.CharField(source="intervention.channel")
    campaign = serializers.IntegerField(source="intervention.campaign_id", allow_null=True)
    variant = serializers.CharField(
        source="intervention.variant", help_text="The experiment arm, or 'holdout'; blank if none."
    )
    reasons = serializers.ListField(child=serializers.CharField())


class EventResultSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="event.pk")
    type = serializers.CharField(source="event.type")
    received_at = serializers.DateTimeField(source="event.received_at")
    reasons = serializers.ListField(child=serializers.CharField())
    interventions = DecisionOutcomeSerializer(source="outcomes", many=True)


class TriggerSerializer(StrictSerializer):
    user_id = serializers.CharField(max_length=200)
    cart_id = serializers.CharField(max_length=200, required=False, allow_blank=True)
    channel = serializers.ChoiceField(choices=REQUESTED_CHANNEL_CHOICES, default="auto")
    template = serializers.SlugField(max_length=100, required=False, allow_blank=True, default="")
    personalization = serializers.DictField(required=False, default=dict)
    scheduled_at = DateTimeField(required=False)
    user = ShopperProfileSerializer(required=False)
    cart = CartSerializer(required=False)

    def validate_personalization(self, personalization: dict[str, Any]) -> dict[str, Any]:
        # Without a template it is the content itself: cta_url is where the client navigates.
        check_content_urls(personalization)
        return personalization


class BatchItemSerializer(TriggerSerializer):
    idempotency_key = serializers.CharField(max_length=200, required=False, allow_blank=True)


class BatchSerializer(StrictSerializer):
    interventions = serializers.ListField(
        child=serializers.DictField(),
        min_length=1,
        max_length=settings.INTERVENTION_BATCH_MAX,
        help_text=f"Up to {settings.INTERVENTION_BATCH_MAX} triggers; each is validated on its own.",
    )


class ScheduleSerializer(TriggerSerializer):
    scheduled_at = DateTimeField()


class InterventionEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = InterventionEvent
        fields = ["from_status", "to_status", "reason", "at"]


class InterventionSerializer(serializers.ModelSerializer):
    user_id = serializers.CharField(source="shopper.external_id")
    cart_id = serializers.SerializerMethodField()
    reasons = serializers.SerializerMethodField()
    template_version = serializers.SerializerMethodField()

    class Meta:
        model = Intervention
        fields = [
            "id",
            "status",
            "status_reason",
            "channel",
            "requested_channel",
            "fallback_channels",
            "origin",
            "user_id",
            "cart_id",
            "campaign",
            "variant",
            "template_key",
            "template_version",
            "reasons",
            "decision",
            "personalization",
            "content",
            "send_at",
            "expires_at",
            "attempts",
            "provider_message_id",
            "sent_at",
            "delivered_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_cart_id(self, obj: Intervention) -> str | None:
        return obj.cart.external_id if obj.cart else None

    def get_reasons(self, obj: Intervention) -> list[str]:
        return list(obj.decision.get("reasons", []))

    def get_template_version(self, obj: Intervention) -> int | None:
        return obj.template_version.number if obj.template_version else None


class InterventionDetailSerializer(InterventionSerializer):
    history = InterventionEventSerializer(source="events", many=True, read_only=True)
    tracking = TrackingEventSerializer(source="tracking_events", many=True, read_only=True)

    class Meta(InterventionSerializer.Meta):
        fields = [*InterventionSerializer.Meta.fields, "history", "tracking"]
        read_only_fields = fields


class InterventionUpdateSerializer(StrictSerializer):
    send_at = DateTimeField(required=False)
    expires_at = DateTimeField(required=False, allow_null=True)
    content = serializers.DictField(required=False)
    personalization = serializers.DictField(required=False)

    def validate_content(self, content: dict[str, Any]) -> dict[str, Any]:
        check_content_urls(content)
        return content

    def validate_personalization(self, personalization: dict[str, Any]) -> dict[str, Any]:
        check_content_urls(personalization)
        return personalization


class InterventionReplaceSerializer(InterventionUpdateSerializer):
    """PUT: the whole editable part; a left-out expiry is cleared."""

    send_at = DateTimeField()
    expires_at = DateTimeField(required=False, allow_null=True, default=None)
    content = serializers.DictField()
    personalization = serializers.DictField()
