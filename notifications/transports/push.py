"""Push through firebase-admin (FCM HTTP v1): ``send_each``, one request per device token.

Only this transport learns which tokens of a multicast are dead (UNREGISTERED,
SENDER_ID_MISMATCH, a malformed token), so it deactivates those devices itself.
QUOTA_EXCEEDED and FCM outages are transient; FCM's Retry-After becomes
``retry_after``.
"""

import warnings
from functools import cached_property
from typing import Any

import firebase_admin
import structlog
from django.conf import settings
from firebase_admin import credentials, exceptions, messaging
from prometheus_client import Counter

from notifications.models import Device
from notifications.ratelimit import acquire_send_slot
from notifications.transports.base import OutboundMessage, Transport, TransportError

logger = structlog.get_logger(__name__)

PUSH_RESULTS = Counter(
    "engine_push_results_total", "FCM answers per device token by outcome", ["outcome"]
)
APP_NAME = "intervention-engine"


def firebase_app() -> firebase_admin.App:
    try:
        return firebase_admin.get_app(APP_NAME)
    except ValueError:
        return firebase_admin.initialize_app(
            credentials.Certificate(settings.FCM_CREDENTIALS_FILE),
            options={"httpTimeout": settings.FCM_TIMEOUT},
            name=APP_NAME,
        )


def is_dead_token(error: Exception) -> bool:
    if isinstance(error, messaging.UnregisteredError | messaging.SenderIdMismatchError):
        return True
    # INVALID_ARGUMENT also covers a malformed payload; only a bad token kills the device.
    return (
        isinstance(error, exceptions.InvalidArgumentError)
        and "registration token" in str(error).lower()
    )


def retry_after_of(error: Exception) -> float | None:
    response = getattr(error, "http_response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value else None
    except ValueError:
        return None


class FcmPushTransport(Transport):
    channel = "push"
    name = "fcm"

    @cached_property
    def app(self) -> firebase_admin.App:
        return firebase_app()

    def send(self, message: OutboundMessage) -> str:
        tokens = [message.recipient] if isinstance(message.recipient, str) else message.recipient
        tokens = [token for token in tokens if token]
        if not tokens:
            raise TransportError("no active device", permanent=True, reason="no_device")
        acquire_send_slot("push", self.name)
        content = message.content
        data: dict[str, Any] = {str(k): str(v) for k, v in (content.get("data") or {}).items()}
        # Lets the app report opens back against the right intervention.
        data["intervention_id"] = message.intervention_id
        notification = messaging.Notification(
            title=content.get("title") or None, body=content.get("body") or None
        )
        # Apps register FCM registration tokens, which go in ``token``; firebase-admin 7
        # deprecates it in favour of installation ids (``fid``), which our clients do not send.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            batch_messages = [
                messaging.Message(token=token, notification=notification, data=data)
                for token in tokens
            ]
        try:
            batch = messaging.send_each(batch_messages, app=self.app)
        except exceptions.FirebaseError as error:
            PUSH_RESULTS.labels("request_failed").inc()
            raise TransportError(
                f"FCM request failed: {error}", reason="fcm_unreachable"
            ) from error

        message_ids: list[str] = []
        dead: list[str] = []
        transient: list[Exception] = []
        for token, response in zip(tokens, batch.responses, strict=True):
            if response.success:
                message_ids.append(response.message_id)
                PUSH_RESULTS.labels("sent").inc()
            elif response.exception is not None and is_dead_token(response.exception):
                dead.append(token)
                PUSH_RESULTS.labels("dead_token").inc()
            elif isinstance(response.exception, exceptions.InvalidArgumentError):
                PUSH_RESULTS.labels("invalid_message").inc()
                raise TransportError(
                    f"FCM refused the message: {response.exception}",
                    permanent=True,
                    reason="invalid_message",
                )
            else:
                transient.append(response.exception or Exception("unknown FCM error"))
                PUSH_RESULTS.labels("transient_error").inc()
        if dead:
            Device.objects.filter(store_id=message.store_id, token__in=dead).update(active=False)
            logger.info(
                "push_tokens_deactivated",
                intervention_id=message.intervention_id,
                count=len(dead),
            )
        if message_ids:
            logger.info(
                "push_sent",
                intervention_id=message.intervention_id,
                delivered_to=len(message_ids),
                failed=len(dead) + len(transient),
            )
            return message_ids[0]
        if transient:
            delays = [d for d in (retry_after_of(e) for e in transient) if d is not None]
            raise TransportError(
                f"FCM: {transient[0]}",
                retry_after=max(delays) if delays else None,
                reason="fcm_quota"
                if any(isinstance(e, messaging.QuotaExceededError) for e in transient)
                else "fcm_unavailable",
            )
        raise TransportError("every device token is dead", permanent=True, reason="no_live_device")
