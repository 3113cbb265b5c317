from rest_framework import serializers

from config.api import StrictModelSerializer, StrictSerializer
from notifications.models import Device


class DeviceRegistrationSerializer(StrictSerializer):
    user_id = serializers.CharField(max_length=200)
    token = serializers.CharField(max_length=4096)
    platform = serializers.ChoiceField(
        choices=["ios", "android", "web"], required=False, allow_blank=True
    )


class DeviceSerializer(StrictModelSerializer):
    user_id = serializers.CharField(source="shopper.external_id", read_only=True)

    class Meta:
        model = Device
        fields = ["token", "user_id", "platform", "active", "created_at", "updated_at"]
        read_only_fields = fields
