"""Campaigns: rules that turn cart events into interventions."""

from django.db import models

from stores.models import Store


class Trigger(models.TextChoices):
    CART_ABANDONED = "cart_abandoned"
    PREDICTION_HIGH = (
        "prediction_high"  # the prediction says intervene: probability under threshold
    )
    TIME_BASED = "time_based"  # fires delay_minutes after abandonment if the cart is still open


class CampaignChannel(models.TextChoices):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    WEBSOCKET = "websocket"
    ALL = "all"  # the shopper's preferred channel, falling back along the store's chain


class Campaign(models.Model):
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    trigger = models.CharField(max_length=32, choices=Trigger.choices)
    delay_minutes = models.PositiveIntegerField(default=0)
    channel = models.CharField(max_length=16, choices=CampaignChannel.choices)
    template_key = models.CharField(max_length=100, blank=True)
    priority = models.IntegerField(default=0, help_text="Higher wins when several campaigns match.")
    # Conditions; empty means "any".
    min_cart_value = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    max_cart_value = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    segments = models.JSONField(default=list, blank=True)
    min_probability = models.FloatField(null=True, blank=True)
    max_probability = models.FloatField(null=True, blank=True)
    discount_percent = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["store", "-priority", "name", "id"]

    def __str__(self) -> str:
        return self.name
