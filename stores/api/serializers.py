from rest_framework import serializers

from config.api import PhoneNumberField, StrictModelSerializer
from stores.models import CHANNEL_CHOICES, CHANNELS, Shopper, Store


class ChannelListField(serializers.ListField):
    child = serializers.ChoiceField(choices=CHANNEL_CHOICES)


class StoreSerializer(StrictModelSerializer):
    allowed_origins = serializers.ListField(child=serializers.URLField(), required=False)
    fallback_chain = ChannelListField(required=False)
    channel_caps_per_day = serializers.DictField(
        child=serializers.IntegerField(min_value=0), required=False
    )

    class Meta:
        model = Store
        fields = [
            "id",
            "name",
            "timezone",
            "allowed_origins",
            "probability_threshold",
            "quiet_hours_start",
            "quiet_hours_end",
            "frequency_cap_per_hour",
            "channel_caps_per_day",
            "fallback_chain",
            "max_websocket_connections",
            "cart_url_template",
            "attribution_model",
            "attribution_window_hours",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {
            "probability_threshold": {"min_value": 0.0, "max_value": 1.0},
            "attribution_window_hours": {"min_value": 1, "max_value": 24 * 90},
        }

    def validate_cart_url_template(self, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise serializers.ValidationError("Must be an http(s) URL.")
        if value and "{cart_id}" not in value:
            raise serializers.ValidationError("Must contain {cart_id}.")
        return value

    def validate_channel_caps_per_day(self, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(CHANNELS))
        if unknown:
            raise serializers.ValidationError(f"Unknown channels: {', '.join(unknown)}.")
        return value


class ShopperSerializer(StrictModelSerializer):
    user_id = serializers.CharField(source="external_id", max_length=200)
    phone = PhoneNumberField(required=False, allow_blank=True)
    channel_preferences = ChannelListField(required=False)
    opted_out_channels = ChannelListField(required=False)

    class Meta:
        model = Shopper
        fields = [
            "id",
            "user_id",
            "email",
            "phone",
            "first_name",
            "locale",
            "country",
            "timezone",
            "segment",
            "channel_preferences",
            "opted_out_channels",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_user_id(self, value: str) -> str:
        store = self.context["view"].store
        existing = Shopper.objects.filter(store=store, external_id=value)
        if self.instance is not None:
            existing = existing.exclude(pk=self.instance.pk)
        if existing.exists():
            raise serializers.ValidationError("A shopper with this user_id already exists.")
        return value
