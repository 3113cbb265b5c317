"""Explicit triggers, one at a time and in bulk, side by side (docs/delivery.md).

The bulk form makes the same decisions as the single one (``build_decided``) with the
I/O batched: shoppers and carts are upserted with one statement per shape, devices and
suppressions are read with one query each, interventions and their first history rows
are inserted with one statement each, and dispatch is one Celery task per chunk. If the
bulk insert hits a constraint (an Idempotency-Key raced by a concurrent request), the
batch is redone one item at a time, which resolves each key on its own.
"""

from collections import defaultdict
from typing import Any

import structlog
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from interventions import decisions
from interventions.actions.deciding import Outcome, announce, build_decided, create_decided
from interventions.actions.events import (
    PREDICTION_FIELDS,
    fold_cart,
    json_safe,
    register_push_tokens,
)
from interventions.actions.facts import facts_from
from interventions.actions.idempotency import check_same_request, request_fingerprint
from interventions.errors import InterventionConflict
from interventions.models import Cart, Intervention, InterventionEvent, record_created
from notifications.recipients import reachability
from realtime.registry import is_connected
from stores.actions import SHOPPER_FIELDS, do_upsert_shopper
from stores.models import Shopper, Store
from templates.rendering import RenderError, published_template

logger = structlog.get_logger(__name__)


def check_template(store: Store, template_key: str, field: str = "template") -> None:
    """A template that does not exist or has no published version is the caller's
    mistake: a 400 naming the field, and nothing stored."""
    if not template_key:
        return
    try:
        published_template(store.pk, template_key)
    except RenderError as exc:
        raise ValidationError({field: [str(exc)]}) from exc


def check_trigger_intervention(
    store: Store, trigger: dict[str, Any], idempotency_key: str = ""
) -> tuple[Intervention, bool]:
    """An explicit trigger: the caller decided to intervene (POST /api/v1/interventions).

    With an ``idempotency_key`` a repeat returns the first intervention (created=False);
    the same key with a different body is a conflict, never a second intervention.
    """
    fingerprint = request_fingerprint(trigger) if idempotency_key else ""
    if idempotency_key:
        existing = Intervention.objects.filter(store=store, idempotency_key=idempotency_key).first()
        if existing is not None:
            return idempotent_replay(existing, fingerprint), False
    check_template(store, trigger.get("template", ""))
    try:
        with transaction.atomic():
            intervention = _trigger(store, trigger, idempotency_key, fingerprint)
    except IntegrityError:
        # A concurrent request with the same key won the race; answer with its result.
        existing = Intervention.objects.filter(store=store, idempotency_key=idempotency_key).first()
        if not idempotency_key or existing is None:
            raise
        return idempotent_replay(existing, fingerprint), False
    return intervention, True


def idempotent_replay(existing: Intervention, fingerprint: str) -> Intervention:
    check_same_request(existing.request_fingerprint, fingerprint)
    return existing


def _trigger(
    store: Store, trigger: dict[str, Any], idempotency_key: str, fingerprint: str
) -> Intervention:
    shopper = do_upsert_shopper(store, trigger["user_id"], trigger.get("user"))
    register_push_tokens(store, shopper, trigger.get("user"))
    cart = None
    if trigger.get("cart_id"):
        cart = fold_cart(store, shopper, trigger["cart_id"], trigger.get("cart"), None)
    request = decisions.Request(
        channel=trigger.get("channel", "auto"),
        explicit=True,
        template_key=trigger.get("template", ""),
        send_at=trigger.get("scheduled_at"),
    )
    return create_decided(
        store=store,
        shopper=shopper,
        cart=cart,
        request=request,
        origin="trigger",
        personalization=trigger.get("personalization") or {},
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
    )


CART_FIELDS = ("value", "currency", "items")


def check_trigger_batch(store: Store, triggers: list[dict[str, Any]]) -> list[Outcome | Exception]:
    """One result per trigger, in order; one bad item does not sink the others."""
    keys = [trigger.pop("idempotency_key", "") or "" for trigger in triggers]
    fingerprints = [
        request_fingerprint(t) if k else "" for t, k in zip(triggers, keys, strict=True)
    ]
    results: list[Outcome | Exception | None] = [None] * len(triggers)

    earlier = {
        i.idempotency_key: i
        for i in Intervention.objects.filter(
            store=store, idempotency_key__in=[k for k in keys if k]
        ).select_related("shopper", "cart")
    }
    unusable = _unusable_templates(store, {t.get("template", "") for t in triggers})
    first_in_batch: dict[str, int] = {}
    repeats: dict[int, int] = {}
    todo: list[int] = []
    for index, key in enumerate(keys):
        if key and key in earlier:
            results[index] = _replay(earlier[key], fingerprints[index])
        elif triggers[index].get("template", "") in unusable:
            results[index] = unusable[triggers[index]["template"]]
        elif key and key in first_in_batch:
            repeats[index] = first_in_batch[key]
        else:
            if key:
                first_in_batch[key] = index
            todo.append(index)

    try:
        with transaction.atomic():
            created = _create_all(store, [triggers[i] for i in todo], [keys[i] for i in todo],
                                  [fingerprints[i] for i in todo])  # fmt: skip
    except IntegrityError:
        logger.warning("batch_insert_conflict_retrying_one_by_one", store_id=str(store.pk))
        return _one_by_one(store, triggers, keys)
    for index, intervention in zip(todo, created, strict=True):
        results[index] = Outcome(intervention, True)
    for index, original in repeats.items():
        first = results[original]
        results[index] = (
            _replay(first.intervention, fingerprints[index])
            if isinstance(first, Outcome) and first.intervention is not None
            else first
        )
    return [r if r is not None else ValueError("not processed") for r in results]


def _unusable_templates(store: Store, keys: set[str]) -> dict[str, ValidationError]:
    """Each distinct template of the batch checked once (the published version is cached)."""
    unusable = {}
    for key in keys:
        try:
            check_template(store, key)
        except ValidationError as exc:
            unusable[key] = exc
    return unusable


def _replay(intervention: Intervention, fingerprint: str) -> Outcome | Exception:
    try:
        return Outcome(idempotent_replay(intervention, fingerprint), False)
    except InterventionConflict as exc:
        return exc


def _one_by_one(
    store: Store, triggers: list[dict[str, Any]], keys: list[str]
) -> list[Outcome | Exception]:
    results: list[Outcome | Exception] = []
    for trigger, key in zip(triggers, keys, strict=True):
        try:
            intervention, created = check_trigger_intervention(store, trigger, key)
        except (InterventionConflict, IntegrityError, ValidationError) as exc:
            results.append(exc)
        else:
            results.append(Outcome(intervention, created))
    return results


def _create_all(
    store: Store, triggers: list[dict[str, Any]], keys: list[str], fingerprints: list[str]
) -> list[Intervention]:
    if not triggers:
        return []
    now = timezone.now()
    shoppers, carts = upsert_senders(store, triggers, now)
    reach = reachability(shoppers.values())

    created: list[tuple[Intervention, InterventionEvent]] = []
    for trigger, key, fingerprint in zip(triggers, keys, fingerprints, strict=True):
        shopper = shoppers[trigger["user_id"]]
        channel = trigger.get("channel", "auto")
        request = decisions.Request(
            channel=channel,
            explicit=True,
            template_key=trigger.get("template", ""),
            send_at=trigger.get("scheduled_at"),
        )
        connected = channel == "auto" and is_connected(str(store.pk), shopper.external_id)
        facts = facts_from(shopper, reach, connected)
        intervention, first_event = build_decided(
            store=store,
            shopper=shopper,
            cart=carts.get(trigger.get("cart_id") or ""),
            request=request,
            facts=facts,
            history=[],  # explicit triggers skip frequency caps
            origin="trigger",
            now=now,
            personalization=trigger.get("personalization") or {},
            idempotency_key=key,
            fingerprint=fingerprint,
        )
        created.append((intervention, first_event))
    record_created(created)
    interventions = [intervention for intervention, _ in created]
    announce(interventions)
    return interventions


def _merged(rows: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """One entry per key, later non-blank values winning: ON CONFLICT DO UPDATE may not
    touch the same row twice in one statement."""
    merged: dict[str, dict[str, Any]] = {}
    for key, values in rows:
        merged.setdefault(key, {}).update({k: v for k, v in values.items() if v not in (None, "")})
    return merged


def _upsert_grouped(model: Any, store: Store, rows: dict[str, dict[str, Any]], now: Any) -> None:
    """Upsert by (store, external_id), one statement per set of provided fields, so a
    field a trigger did not send is never overwritten."""
    by_shape: dict[tuple[str, ...], list[Any]] = defaultdict(list)
    # In external id order, as the decisioning worker locks shoppers (event_batches.py):
    # two transactions taking the same rows in one order cannot deadlock.
    for external_id, values in sorted(rows.items()):
        by_shape[tuple(sorted(values))].append(
            model(store=store, external_id=external_id, updated_at=now, **values)
        )
    for shape, objects in by_shape.items():
        model.objects.bulk_create(
            objects,
            update_conflicts=True,
            unique_fields=["store", "external_id"],
            update_fields=[*shape, "updated_at"],
        )


def upsert_senders(
    store: Store, items: list[dict[str, Any]], now: Any
) -> tuple[dict[str, Shopper], dict[str, Cart]]:
    """A batch's shoppers and carts (triggers or events), by external id, with the push
    tokens their profiles carry registered."""
    shoppers = upsert_shoppers(store, items, now)
    carts = upsert_carts(store, items, shoppers, now)
    for item in items:
        if (item.get("user") or {}).get("push_tokens"):
            register_push_tokens(store, shoppers[item["user_id"]], item["user"])
    return shoppers, carts


def upsert_shoppers(store: Store, triggers: list[dict[str, Any]], now: Any) -> dict[str, Shopper]:
    """The shoppers of a batch of triggers or events, by external id: one upsert per shape
    of profile, then one read."""
    rows = _merged(
        [
            (t["user_id"], {k: v for k, v in (t.get("user") or {}).items() if k in SHOPPER_FIELDS})
            for t in triggers
        ]
    )
    _upsert_grouped(Shopper, store, rows, now)
    return {
        s.external_id: s for s in Shopper.objects.filter(store=store, external_id__in=list(rows))
    }


def upsert_carts(
    store: Store, triggers: list[dict[str, Any]], shoppers: dict[str, Shopper], now: Any
) -> dict[str, Cart]:
    """The carts of a batch by external id, folded as ``fold_cart`` folds one: the cart's
    value, currency and items and an event's prediction, later items winning."""
    rows = _merged(
        [
            (
                t["cart_id"],
                {
                    **json_safe(
                        {k: v for k, v in (t.get("cart") or {}).items() if k in CART_FIELDS}
                    ),
                    **{
                        k: v
                        for k, v in (t.get("prediction") or {}).items()
                        if k in PREDICTION_FIELDS
                    },
                    "shopper": shoppers[t["user_id"]],
                },
            )
            for t in triggers
            if t.get("cart_id")
        ]
    )
    if not rows:
        return {}
    _upsert_grouped(Cart, store, rows, now)
    return {c.external_id: c for c in Cart.objects.filter(store=store, external_id__in=list(rows))}
