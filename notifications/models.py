"""Where messages can go: push devices, and addresses that must not be sent to."""

from django.db import models

from stores.models import Shopper, Store


class Device(models.Model):
    """A push token registered for a shopper; deactivated when FCM says it is dead."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="devices")
    shopper = models.ForeignKey(Shopper, on_delete=models.CASCADE, related_name="devices")
    token = models.CharField(max_length=4096)
    platform = models.CharField(
        max_length=16, choices=[("ios", "iOS"), ("android", "Android"), ("web", "Web")], blank=True
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["store", "-created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["store", "token"], name="unique_device_token")
        ]

    def __str__(self) -> str:
        return f"{self.platform or 'device'} {self.token[:12]}…"


class Suppression(models.Model):
    """An address never to send to again on a channel (bounce, complaint, STOP, dead number)."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="suppressions")
    channel = models.CharField(max_length=16)
    address = models.CharField(max_length=320)
    reason = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["store", "-created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["store", "channel", "address"], name="unique_suppression"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.address} ({self.reason})"


class WebhookReceipt(models.Model):
    """A provider callback already applied, so that a replay of it is not applied again.

    A table rather than a Redis ``SET NX`` with a TTL: Twilio's signature covers the URL
    and the parameters but no timestamp, so a captured request stays valid for ever and
    a 24 h key would only move the replay to the next day (a STOP replayed after the
    shopper's START would opt them out again). The row is inserted in the transaction
    that applies the callback, so a crash half-way lets Twilio's own retry through, and
    unlike a Redis key it survives eviction and a flush.
    """

    source = models.CharField(max_length=32)
    key = models.CharField(max_length=128)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "key"], name="unique_webhook_receipt")
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.key}"
