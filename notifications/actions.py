"""Opt-outs, suppressions and devices (docs/notifications.md).

The pipeline refuses a channel in ``Shopper.opted_out_channels`` and any address in
``Suppression`` for that store and channel; these functions are the only writers.
"""

import uuid
from collections.abc import Collection
from typing import Any

import structlog
from django.db import transaction
from prometheus_client import Counter

from notifications.links import InvalidLink, read_unsubscribe_token
from notifications.models import Device, Suppression, WebhookReceipt
from stores.actions import do_upsert_shopper
from stores.models import Shopper, Store

logger = structlog.get_logger(__name__)

OPT_CHANGES = Counter(
    "engine_opt_changes_total", "Opt-outs and opt-ins by channel and cause", ["channel", "change"]
)

# Carrier-standard keywords (CTIA) and Twilio's Advanced Opt-Out defaults.
STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
START_WORDS = frozenset({"START", "YES", "UNSTOP", "OPTIN"})
HELP_WORDS = frozenset({"HELP", "INFO"})
# Suppression reasons a shopper's own START / re-subscription may lift; a bounce may not.
OPT_OUT_REASONS = frozenset({"sms_stop", "email_unsubscribe"})


def do_suppress_address(store_id: Any, channel: str, address: str, reason: str) -> bool:
    """Never send to ``address`` on ``channel`` again; True if it was not suppressed yet."""
    _, created = Suppression.objects.get_or_create(
        store_id=store_id,
        channel=channel,
        # Stored exactly as the shopper's address is, which is what the pipeline compares.
        address=address,
        defaults={"reason": reason[:64]},
    )
    if created:
        logger.info("address_suppressed", store_id=str(store_id), channel=channel, reason=reason)
    return created


@transaction.atomic
def do_opt_out(shopper: Shopper, channel: str, address: str, reason: str) -> None:
    locked = Shopper.objects.select_for_update().get(pk=shopper.pk)
    if channel not in locked.opted_out_channels:
        locked.opted_out_channels = [*locked.opted_out_channels, channel]
        locked.save(update_fields=["opted_out_channels", "updated_at"])
    shopper.opted_out_channels = locked.opted_out_channels
    if address:
        do_suppress_address(shopper.store_id, channel, address, reason)
    OPT_CHANGES.labels(channel, "opt_out").inc()
    logger.info("shopper_opted_out", shopper_id=shopper.pk, channel=channel, reason=reason)


@transaction.atomic
def do_opt_in(shopper: Shopper, channel: str, address: str) -> None:
    locked = Shopper.objects.select_for_update().get(pk=shopper.pk)
    if channel in locked.opted_out_channels:
        locked.opted_out_channels = [c for c in locked.opted_out_channels if c != channel]
        locked.save(update_fields=["opted_out_channels", "updated_at"])
    shopper.opted_out_channels = locked.opted_out_channels
    Suppression.objects.filter(
        store_id=shopper.store_id, channel=channel, address=address, reason__in=OPT_OUT_REASONS
    ).delete()
    OPT_CHANGES.labels(channel, "opt_in").inc()
    logger.info("shopper_opted_in", shopper_id=shopper.pk, channel=channel)


def do_set_opted_out_channels(shopper: Shopper, channels: Collection[str], reason: str) -> None:
    """The shopper's opt-outs as a whole (the shopper API): each change goes through
    ``do_opt_out`` / ``do_opt_in``; the address suppression list is left as it is."""
    current = set(shopper.opted_out_channels or ())
    for channel in sorted(set(channels) - current):
        do_opt_out(shopper, channel, "", reason)
    for channel in sorted(current - set(channels)):
        do_opt_in(shopper, channel, "")


def do_handle_sms_keyword(phone: str, body: str, help_text: str) -> str:
    """Apply STOP / START / HELP from ``phone``; returns the reply to send ("" for none).

    Our Twilio sender is shared by every store, and carriers apply STOP to the sender,
    so a STOP opts the number out in every store that knows it.
    """
    keyword = body.strip().split()[0].upper() if body.strip() else ""
    shoppers = list(Shopper.objects.filter(phone=phone))
    if keyword in STOP_WORDS:
        for shopper in shoppers:
            do_opt_out(shopper, "sms", phone, "sms_stop")
        # Twilio's Advanced Opt-Out answers STOP itself; a second reply would be spam.
        return ""
    if keyword in START_WORDS:
        for shopper in shoppers:
            do_opt_in(shopper, "sms", phone)
        return ""
    if keyword in HELP_WORDS:
        return help_text
    return ""


def do_claim_webhook_receipt(source: str, key: str) -> bool:
    """True the first time ``(source, key)`` is seen, False for a replay. Call it in the
    transaction that applies the callback: if that fails, the claim rolls back with it.
    Two copies racing wait on the unique index; the second then finds the first's row."""
    _, created = WebhookReceipt.objects.get_or_create(source=source, key=key[:128])
    return created


class InvalidUnsubscribeLink(Exception):
    """A tampered token, or one naming a store that no longer exists."""


def access_unsubscribe_link(token: str) -> tuple[Store, str]:
    """The store and address an unsubscribe link names. A deleted store's old emails
    still carry signed links: those must be the bad-link 404, not a foreign-key 500."""
    try:
        store_id, email = read_unsubscribe_token(token)
        store = Store.objects.filter(pk=uuid.UUID(store_id)).first()
    except (InvalidLink, ValueError) as invalid:
        raise InvalidUnsubscribeLink from invalid
    if store is None:
        raise InvalidUnsubscribeLink
    return store, email


def do_unsubscribe_email(store_id: Any, email: str) -> int:
    """One-click unsubscribe: every shopper of the store with this address opts out."""
    shoppers = list(Shopper.objects.filter(store_id=store_id, email__iexact=email))
    for shopper in shoppers:
        do_opt_out(shopper, "email", shopper.email, "email_unsubscribe")
    if not shoppers:
        do_suppress_address(store_id, "email", email, "email_unsubscribe")
    return len(shoppers)


def do_register_device(store: Store, user_id: str, token: str, platform: str = "") -> Device:
    """Register (or re-activate) a push token; a token seen again under another shopper
    moves to them (the phone changed hands or accounts)."""
    shopper = do_upsert_shopper(store, user_id)
    device, created = Device.objects.update_or_create(
        store=store,
        token=token,
        defaults={
            "shopper": shopper,
            "active": True,
            **({"platform": platform} if platform else {}),
        },
    )
    if created:
        logger.info("device_registered", store_id=str(store.pk), platform=platform)
    return device


def do_unregister_device(store: Store, token: str) -> bool:
    return bool(Device.objects.filter(store=store, token=token).update(active=False))
