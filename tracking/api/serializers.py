from rest_framework import serializers

from config.api import DateTimeField, ReportedAtField, StrictSerializer
from stores.models import CHANNEL_CHOICES
from tracking.models import Conversion, TrackingEvent

# What a client (storefront, app, the store's backend) may report about an intervention.
REPORTED_EVENTS = ["delivered", "displayed", "opened", "clicked", "dismissed", "converted"]


class TrackEventSerializer(StrictSerializer):
    event = serializers.ChoiceField(choices=REPORTED_EVENTS)
    metadata = serializers.DictField(required=False, default=dict)
    occurred_at = DateTimeField(
        required=False,
        help_text="When it happened; default: now. At most TRACKING_CLOCK_SKEW_SECONDS "
        "(300 s by default) in the future or before the intervention was created, and not "
        "older than tracking retention (RETENTION_TRACKING_EVENTS_DAYS); otherwise a 400 "
        "naming `occurred_at` with the reason.",
    )


class TrackResultSerializer(serializers.Serializer):
    event = serializers.CharField()
    recorded = serializers.BooleanField(
        help_text="False when nothing changed (a delivered report for one not sent, or again)."
    )
    duplicate = serializers.BooleanField(
        help_text="A repeated open or click within the dedupe window: kept, not counted."
    )
    status = serializers.CharField(help_text="The intervention's status afterwards.")


class TimelineEntrySerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["status", "tracking"])
    event = serializers.CharField(help_text="The status reached, or the tracking event.")
    at = serializers.DateTimeField()
    from_status = serializers.CharField(required=False)
    reason = serializers.CharField(required=False)
    # DRF takes declared fields off the class; only mypy sees Field.source here.
    source = serializers.CharField(required=False)  # type: ignore[assignment]
    duplicate = serializers.BooleanField(required=False)
    machine = serializers.BooleanField(
        required=False, help_text="An open the ESP says a privacy proxy made: not counted."
    )
    revenue = serializers.DecimalField(
        max_digits=12, decimal_places=2, required=False, allow_null=True
    )
    metadata = serializers.DictField(required=False)


class TimelineSerializer(serializers.Serializer):
    intervention_id = serializers.UUIDField()
    status = serializers.CharField()
    timeline = TimelineEntrySerializer(many=True)


class TrackingEventSerializer(serializers.ModelSerializer):
    event = serializers.CharField(source="kind")

    class Meta:
        model = TrackingEvent
        fields = ["event", "source", "occurred_at", "duplicate", "machine", "revenue", "metadata"]
        read_only_fields = fields


class ConversionInputSerializer(StrictSerializer):
    order_id = serializers.CharField(max_length=200)
    user_id = serializers.CharField(max_length=200)
    cart_id = serializers.CharField(max_length=200, required=False, allow_blank=True)
    value = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0)
    currency = serializers.RegexField(r"^[A-Z]{3}$", help_text="ISO 4217, e.g. EUR")
    discount = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=0,
        required=False,
        help_text="The discount the shopper got, if known; otherwise the attributed "
        "intervention's discount percentage of the value.",
    )
    occurred_at = ReportedAtField(
        kept="tracking_events",
        required=False,
        help_text="When the order was placed; default: now. At most "
        "TRACKING_CLOCK_SKEW_SECONDS in the future and not older than tracking retention "
        "(RETENTION_TRACKING_EVENTS_DAYS); otherwise a 400 naming `occurred_at`.",
    )


class ConversionSerializer(serializers.ModelSerializer):
    cart_id = serializers.CharField(source="cart_external_id")
    attributed_to = serializers.UUIDField(
        source="intervention_id",
        allow_null=True,
        help_text="The intervention the order is counted on (once per order).",
    )
    credits = serializers.ListField(
        child=serializers.DictField(),
        help_text="Each credited intervention: intervention_id, weight, recovered_revenue.",
    )

    class Meta:
        model = Conversion
        fields = [
            "order_id",
            "user_id",
            "cart_id",
            "value",
            "currency",
            "discount",
            "recovered_revenue",
            "attributed_to",
            "attribution_model",
            "credits",
            "source",
            "occurred_at",
            "recorded_at",
        ]
        read_only_fields = fields


class AnalyticsQuerySerializer(StrictSerializer):
    since = serializers.DateField(required=False, help_text="First day (store time), included.")
    until = serializers.DateField(required=False, help_text="Last day (store time), included.")
    campaign = serializers.IntegerField(required=False, min_value=1)
    channel = serializers.ChoiceField(choices=CHANNEL_CHOICES, required=False)
    variant = serializers.CharField(required=False, max_length=64, help_text="Experiment arm.")

    def validate(self, attrs: dict) -> dict:
        if "since" in attrs and "until" in attrs and attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"until": ["Must not be before since."]})
        return attrs


class PerformanceQuerySerializer(AnalyticsQuerySerializer):
    interval = serializers.ChoiceField(choices=["day", "week"], default="day")


class TotalsSerializer(serializers.Serializer):
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField(help_text="Interventions opened at least once.")
    clicked = serializers.IntegerField(help_text="Interventions clicked at least once.")
    converted = serializers.IntegerField(
        help_text=(
            "Orders attributed to these sends. In totals: each order once, on its primary "
            "touch. In a row of a breakdown: the orders that credited a send of the row "
            "(under any exposure, each exposed arm counts the order)."
        )
    )
    credited = serializers.CharField(
        help_text=(
            "The orders' shares as the attribution model gives them, 4 decimal places "
            "(fractional under linear; equal to converted under last and first touch)."
        )
    )
    revenue = serializers.DictField(
        child=serializers.CharField(),
        help_text=(
            "Recovered revenue per currency: in totals each order's once, in a breakdown "
            "row the revenue shares credited to its sends."
        ),
    )


class MetricsSerializer(TotalsSerializer):
    delivery_rate = serializers.FloatField(allow_null=True)
    open_rate = serializers.FloatField(allow_null=True)
    click_rate = serializers.FloatField(allow_null=True)
    conversion_rate = serializers.FloatField(allow_null=True)
    revenue_per_send = serializers.DictField(child=serializers.CharField())


class PeriodSerializer(MetricsSerializer):
    period = serializers.DateField(help_text="First day of the day or week (store time).")


class PerformanceSerializer(serializers.Serializer):
    interval = serializers.CharField()
    series = PeriodSerializer(many=True)
    totals = MetricsSerializer()


class CostedMetricsSerializer(MetricsSerializer):
    cost = serializers.DictField(
        child=serializers.CharField(),
        help_text="What the sends cost, from the CHANNEL_COST_* settings ({} when unknown); "
        "in totals, the channels' costs added up.",
    )
    cost_per_conversion = serializers.DictField(
        child=serializers.CharField(),
        help_text="Cost over the credited orders ({} without orders); in totals, over the "
        "orders counted once each.",
    )


class ChannelMetricsSerializer(CostedMetricsSerializer):
    channel = serializers.CharField()


class ChannelsSerializer(serializers.Serializer):
    channels = ChannelMetricsSerializer(many=True)
    totals = CostedMetricsSerializer()


class ReasonCountSerializer(serializers.Serializer):
    reason = serializers.CharField()
    count = serializers.IntegerField()


class FunnelStepSerializer(serializers.Serializer):
    step = serializers.CharField()
    count = serializers.IntegerField()
    reasons = ReasonCountSerializer(many=True, required=False)


class FunnelSerializer(serializers.Serializer):
    funnel = FunnelStepSerializer(many=True)
    totals = MetricsSerializer()
