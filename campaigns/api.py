from typing import Any

from rest_framework import mixins, serializers, viewsets

from campaigns.models import Campaign
from config.api import StrictModelSerializer
from interventions.actions import check_template
from stores.api.scoping import StoreScopedMixin


class CampaignSerializer(StrictModelSerializer):
    segments = serializers.ListField(child=serializers.CharField(max_length=64), required=False)

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "is_active",
            "trigger",
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
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {
            "min_probability": {"min_value": 0.0, "max_value": 1.0},
            "max_probability": {"min_value": 0.0, "max_value": 1.0},
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "template_key" in attrs:
            check_template(self.context["view"].store, attrs["template_key"], field="template_key")

        def current(name: str) -> Any:
            return attrs.get(name, getattr(self.instance, name, None))

        for low, high in (
            ("min_cart_value", "max_cart_value"),
            ("min_probability", "max_probability"),
        ):
            if (
                current(low) is not None
                and current(high) is not None
                and current(low) > current(high)
            ):
                raise serializers.ValidationError({low: [f"Must not exceed {high}."]})
        return attrs


class CampaignViewSet(
    StoreScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Campaign rules that turn cart events into interventions."""

    serializer_class = CampaignSerializer
    queryset = Campaign.objects.all()
    http_method_names = ["get", "post", "patch", "head", "options"]
