"""Carts, the events that describe them, and interventions with their one lifecycle.

Lifecycle (docs/delivery.md):

    pending ─▶ scheduled ─▶ queued ─▶ sending ─▶ sent ─────────▶ delivered
       │           │          │          │  └──▶ unconfirmed ──┘
       └───────────┴──────────┴──────────┴────────┴─▶ suppressed | cancelled | failed

``record_created()`` writes an intervention's first status; after that ``transition()``
(or its bulk forms ``transition_each()`` and ``transition_many()``) is the only way a status changes: a conditional
UPDATE (the row moves only if it is still in an allowed source state, so two workers
racing for the same row cannot both win) plus an ``InterventionEvent`` row recording it
and an outbox row telling other services (docs/webhooks.md), in the same transaction.
"""

import copy
import datetime
import functools
import uuid
from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.db.models.sql import InsertQuery
from django.utils import timezone

from outbound import outbox
from stores.models import CHANNEL_CHOICES, Shopper, Store

REQUESTED_CHANNEL_CHOICES = [*CHANNEL_CHOICES, ("auto", "Auto")]


class EventType(models.TextChoices):
    CART_ABANDONED = "cart_abandoned"
    CART_UPDATED = "cart_updated"
    CHECKOUT_COMPLETED = "checkout_completed"
    PREDICTION = "prediction"


class Cart(models.Model):
    """The latest known state of a store's cart, folded from its events."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="carts")
    external_id = models.CharField(max_length=200)
    shopper = models.ForeignKey(Shopper, on_delete=models.SET_NULL, null=True, related_name="carts")
    value = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    items = models.JSONField(default=list, blank=True)
    abandoned_at = models.DateTimeField(null=True, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    conversion_value = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    # The latest prediction for this cart.
    probability = models.FloatField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    recommended_action = models.CharField(max_length=16, blank=True)
    recommended_discount = models.DecimalField(
        max_digits=5, decimal_places=2, null=True, blank=True
    )
    model_version = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["store", "-updated_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["store", "external_id"], name="unique_cart_per_store")
        ]
        # The funnel's abandoned carts of a period (tracking.analytics).
        indexes = [models.Index(fields=["store", "abandoned_at"], name="cart_store_abandoned")]

    def __str__(self) -> str:
        return self.external_id

    @property
    def converted(self) -> bool:
        return self.converted_at is not None


class CartEvent(models.Model):
    """An event exactly as accepted from another service."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="cart_events")
    type = models.CharField(max_length=32, choices=EventType.choices)
    cart = models.ForeignKey(Cart, on_delete=models.CASCADE, related_name="events")
    user_id = models.CharField(max_length=200)
    payload = models.JSONField(default=dict)
    occurred_at = models.DateTimeField(default=timezone.now)
    received_at = models.DateTimeField(auto_now_add=True)
    # Idempotency-Key (docs/idempotency.md): a retried POST finds this row and gets
    # ``answer``, the body the first one got, instead of a second event.
    idempotency_key = models.CharField(max_length=200, blank=True, default="")
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")
    answer = models.JSONField(null=True, blank=True)
    # Accepted in bulk (POST /api/v1/events/batch) and not decided yet: a ``decisioning``
    # worker decides it and clears this in the same transaction that stores what it
    # decided, so an event is decided once, and a lost task leaves it set for the sweeper
    # (docs/decisions.md, "Events in bulk"). Events posted one at a time are decided inline.
    decision_pending = models.BooleanField(default=False)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["store", "type", "received_at"]),
            models.Index(
                fields=["received_at"],
                condition=models.Q(decision_pending=True),
                name="cart_event_decision_pending",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["store", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="unique_event_idempotency_key_per_store",
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.cart_id}"


class Status(models.TextChoices):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    # The worker died during the provider call: the provider may or may not have the
    # message. Never re-sent (a second email is worse than a lost one); its delivery
    # webhook, if it comes, settles it (docs/delivery.md).
    UNCONFIRMED = "unconfirmed"
    DELIVERED = "delivered"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"
    FAILED = "failed"


# Allowed source states for each target state.
ALLOWED_SOURCES: dict[str, frozenset[str]] = {
    # scheduled → scheduled: a new send time (the history says when and why).
    Status.SCHEDULED: frozenset({Status.PENDING, Status.QUEUED, Status.SCHEDULED}),
    # queued → queued: re-queued on the next channel of the fallback chain.
    # unconfirmed → queued / sent: the worker that was presumed dead finished its call
    # after all, and what it saw beats the sweeper's guess.
    Status.QUEUED: frozenset(
        {
            Status.PENDING,
            Status.SCHEDULED,
            Status.QUEUED,
            Status.SENDING,
            Status.UNCONFIRMED,
            Status.FAILED,
        }
    ),
    Status.SENDING: frozenset({Status.QUEUED}),
    # queued → sent: WebSocket publishes first and records after (docs/delivery.md).
    Status.SENT: frozenset({Status.SENDING, Status.QUEUED, Status.UNCONFIRMED}),
    Status.UNCONFIRMED: frozenset({Status.SENDING}),
    Status.DELIVERED: frozenset({Status.SENT, Status.UNCONFIRMED}),
    Status.SUPPRESSED: frozenset({Status.PENDING, Status.SCHEDULED, Status.QUEUED}),
    Status.CANCELLED: frozenset({Status.PENDING, Status.SCHEDULED, Status.QUEUED}),
    # From sent too: a hard bounce or an undeliverable SMS is reported after the send.
    Status.FAILED: frozenset(
        {
            Status.PENDING,
            Status.SCHEDULED,
            Status.QUEUED,
            Status.SENDING,
            Status.SENT,
            Status.UNCONFIRMED,
        }
    ),
}
UNSENT_STATUSES = frozenset({Status.PENDING, Status.SCHEDULED, Status.QUEUED})
FINAL_STATUSES = frozenset({Status.DELIVERED, Status.SUPPRESSED, Status.CANCELLED})


class IllegalTransition(Exception):
    def __init__(self, intervention_id: Any, current: str, target: str):
        self.current = current
        self.target = target
        super().__init__(f"Intervention {intervention_id} cannot go from {current} to {target}.")


class Intervention(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="interventions")
    shopper = models.ForeignKey(Shopper, on_delete=models.CASCADE, related_name="interventions")
    cart = models.ForeignKey(
        Cart, on_delete=models.SET_NULL, null=True, blank=True, related_name="interventions"
    )
    campaign = models.ForeignKey(
        "campaigns.Campaign",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="interventions",
    )
    # The campaign experiment's arm this shopper got ("holdout" included); blank otherwise.
    variant = models.CharField(max_length=64, blank=True)
    origin = models.CharField(
        max_length=16,
        choices=[
            ("trigger", "Explicit trigger"),
            ("event", "Cart event"),
            ("campaign", "Campaign"),
        ],
    )
    requested_channel = models.CharField(max_length=16, choices=REQUESTED_CHANNEL_CHOICES)
    channel = models.CharField(max_length=16, choices=CHANNEL_CHOICES)
    # Channels still to try, in order, if this one fails permanently.
    fallback_channels = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    status_reason = models.CharField(max_length=500, blank=True)
    decision = models.JSONField(default=dict, blank=True)
    template_key = models.CharField(max_length=100, blank=True)
    # RESTRICT, not PROTECT: a version in use cannot be deleted on its own, but deleting
    # the store deletes both.
    template_version = models.ForeignKey(
        "message_templates.TemplateVersion",
        on_delete=models.RESTRICT,
        null=True,
        blank=True,
        related_name="interventions",
    )
    personalization = models.JSONField(default=dict, blank=True)
    content = models.JSONField(default=dict, blank=True, help_text="Rendered message, per channel.")
    send_at = models.DateTimeField(null=True, blank=True, db_index=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    provider_message_id = models.CharField(max_length=200, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["store", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="unique_idempotency_key_per_store",
            )
        ]
        indexes = [
            models.Index(fields=["status", "send_at"]),
            models.Index(fields=["status", "updated_at"]),
            models.Index(fields=["store", "shopper", "created_at"]),
            models.Index(fields=["store", "status", "created_at"]),
            # The rollup recounts: a store's sends, and its decisions, of some days.
            models.Index(fields=["store", "sent_at"], name="intervention_store_sent"),
            models.Index(fields=["store", "created_at"], name="intervention_store_created"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} intervention {self.pk} ({self.status})"


class InterventionEvent(models.Model):
    """One row per status change: the intervention's full history."""

    intervention = models.ForeignKey(Intervention, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    reason = models.CharField(max_length=500, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status}"


class DeliveryAttempt(models.Model):
    """One try at handing the message to a transport."""

    class Outcome(models.TextChoices):
        STARTED = "started"
        SUCCEEDED = "succeeded"
        # The worker died during the call; whether the provider has it is unknown.
        WORKER_LOST = "worker_lost"
        TRANSIENT_ERROR = "transient_error"
        PERMANENT_ERROR = "permanent_error"

    intervention = models.ForeignKey(
        Intervention, on_delete=models.CASCADE, related_name="attempts_log"
    )
    channel = models.CharField(max_length=16, choices=CHANNEL_CHOICES)
    transport = models.CharField(max_length=100)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.STARTED)
    error = models.CharField(max_length=500, blank=True)
    provider_message_id = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    FAILED = (Outcome.WORKER_LOST, Outcome.TRANSIENT_ERROR, Outcome.PERMANENT_ERROR)

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [
            # The delivery-failure rollups' recount of a few days (tracking.rollups): the
            # failed attempts are a few percent of all, so a partial index stays small.
            models.Index(
                fields=["started_at"],
                name="attempt_failed_started",
                # ORs, not IN: PostgreSQL prints an IN-list predicate in a form that
                # re-parses differently, and the bench seed rebuilds indexes from that print.
                condition=models.Q(outcome="worker_lost")
                | models.Q(outcome="transient_error")
                | models.Q(outcome="permanent_error"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} attempt {self.outcome}"


def transition(
    intervention: Intervention,
    target: str,
    reason: str = "",
    detail: dict[str, Any] | None = None,
    attempt: "DeliveryAttempt | None" = None,
    **fields: Any,
) -> None:
    """Move ``intervention`` to ``target`` and record it, or raise IllegalTransition.

    Optimistic: the UPDATE matches only while the row still has the status we read,
    so of two workers racing for the same row exactly one wins, and the history row
    names the true source state. A stale in-memory status is re-read once.

    One statement (issue 12): the UPDATE, the history row and the optional ``attempt``
    row go to PostgreSQL as one ``WITH moved AS (UPDATE … RETURNING) INSERT … SELECT …
    FROM moved``, so the rows are written only if the status moved, atomically even
    outside a transaction, in one round trip instead of three.
    """
    sources = ALLOWED_SOURCES[target]
    now = timezone.now()
    changes: dict[str, Any] = {"status": target, "status_reason": reason[:500], "updated_at": now}
    changes.update(fields)
    expected = intervention.status
    for _ in range(2):
        if expected not in sources:
            raise IllegalTransition(intervention.pk, expected, target)
        history = InterventionEvent(
            intervention=intervention,
            from_status=expected,
            to_status=target,
            reason=reason[:500],
            detail=detail or {},
            at=now,
        )
        # The event describes the row as it will be (a re-queue on the next channel names
        # the new one), and rides in the same statement: it exists exactly if the move does.
        moved = copy.copy(intervention)
        for name, value in changes.items():
            setattr(moved, name, value)
        event = outbox.status_changed(moved, expected, target, reason[:500], now)
        rows: list[models.Model] = [history, *([attempt] if attempt else []), event]
        if _move(intervention, expected, changes, rows):
            for name, value in changes.items():
                setattr(intervention, name, value)
            return
        current = Intervention.objects.filter(pk=intervention.pk).values_list("status", flat=True)
        expected = current.first() or "missing"
        intervention.status = expected
    raise IllegalTransition(intervention.pk, expected, target)


def _move(
    intervention: Intervention, expected: str, changes: dict[str, Any], rows: list[models.Model]
) -> bool:
    """UPDATE the row if it still has ``expected``; insert ``rows`` only if it did."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        # Embedded mode (SQLite) has no data-modifying WITH: three statements.
        with transaction.atomic(savepoint=False):
            if not Intervention.objects.filter(pk=intervention.pk, status=expected).update(
                **changes
            ):
                return False
            for row in rows:
                row.save(force_insert=True)
        return True
    quote = connection.ops.quote_name
    opts = Intervention._meta
    assignments, params = [], []
    for name, value in changes.items():
        field = opts.get_field(name)
        assert isinstance(field, models.Field)  # a column of the row, not a relation's
        assignments.append(f"{quote(str(field.column))} = %s")
        params.append(field.get_db_prep_save(value, connection))
    pk = opts.pk
    assert pk is not None
    status_field = opts.get_field("status")
    assert isinstance(status_field, models.Field)
    # Identifiers from the model's metadata, every value a parameter.
    statement = (
        f"WITH moved AS (UPDATE {quote(opts.db_table)} "  # noqa: S608
        f"SET {', '.join(assignments)} WHERE {quote(str(pk.column))} = %s "
        f"AND {quote(str(status_field.column))} = %s RETURNING 1)"
    )
    params += [pk.get_db_prep_value(intervention.pk, connection), expected]
    for index, row in enumerate(rows):
        insert, insert_params = insert_statement([row])
        # INSERT … VALUES (…) → INSERT … SELECT … FROM moved: no row unless it moved.
        head, _, values = insert.rpartition(" VALUES (")
        statement += f", row{index} AS ({head} SELECT {values[:-1]} FROM moved RETURNING 1)"  # noqa: S608
        params += insert_params
    with connection.cursor() as cursor:
        cursor.execute(f"{statement} SELECT count(*) FROM moved", params)  # noqa: S608
        moved = bool(cursor.fetchone()[0])
    if moved:
        for row in rows:
            row._state.adding, row._state.db = False, DEFAULT_DB_ALIAS
    return moved


def insert_statement(objs: Sequence[models.Model]) -> tuple[str, list[Any]]:
    """The INSERT bulk_create would send for ``objs`` (one model, database-assigned ids
    left out), without RETURNING: to be combined into one statement with others."""
    model = type(objs[0])
    fields = _inserted_fields(model)
    if len(objs) == 1:
        params = _plain_insert_params(fields, objs[0])
        if params is not None:
            return _single_row_insert(model), params
    query = InsertQuery(model)
    query.insert_values(fields, list(objs))
    [(sql, params)] = query.get_compiler(using=DEFAULT_DB_ALIAS).as_sql()
    return sql, list(params)


@functools.cache
def _inserted_fields(model: type[models.Model]) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if not isinstance(f, models.AutoField)]


@functools.cache
def _single_row_insert(model: type[models.Model]) -> str:
    """The compiler's INSERT of one row of ``model``, compiled once per process: it is
    the same text for every row of plain values, and compiling it was ~10 % of a
    WebSocket trigger's CPU (six per trigger; issue 12, stop 17)."""
    fields = _inserted_fields(model)
    connection = connections[DEFAULT_DB_ALIAS]
    quote = connection.ops.quote_name
    return (
        f"INSERT INTO {quote(model._meta.db_table)} "  # noqa: S608
        f"({', '.join(quote(str(f.column)) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )


def _plain_insert_params(fields: list[models.Field], obj: models.Model) -> list[Any] | None:
    """What the compiler would pass for ``obj`` (``pre_save``, then ``get_db_prep_save``),
    or None when a value or field needs the compiler: an expression, or a field with its
    own placeholder."""
    if _has_own_placeholders(type(obj)):
        return None
    connection = connections[DEFAULT_DB_ALIAS]
    params = []
    for field in fields:
        value = field.pre_save(obj, add=True)
        if hasattr(value, "resolve_expression"):
            return None
        params.append(field.get_db_prep_save(value, connection))
    return params


@functools.cache
def _has_own_placeholders(model: type[models.Model]) -> bool:
    return any(hasattr(field, "get_placeholder") for field in _inserted_fields(model))


def transition_many(
    changes: Sequence[tuple[Intervention, dict[str, Any]]], target: str, reason: str
) -> list[Intervention]:
    """The bulk form of ``transition``: each row still in an allowed source state moves
    to ``target`` with its own extra fields; the others are left alone (not an error: in
    a burst, some rows have moved on). Returns the interventions that moved.

    One locked SELECT, one UPDATE and one INSERT of history rows for the whole batch.
    """
    wanted = {intervention.pk: (intervention, fields) for intervention, fields in changes}
    if not wanted:
        return []
    now = timezone.now()
    reason = reason[:500]
    with transaction.atomic(savepoint=False):
        sources = dict(
            Intervention.objects.select_for_update()
            .filter(pk__in=list(wanted), status__in=ALLOWED_SOURCES[target])
            .values_list("pk", "status")
        )
        moved = []
        for pk, from_status in sources.items():
            intervention, fields = wanted[pk]
            for name, value in {
                "status": target,
                "status_reason": reason,
                "updated_at": now,
                **fields,
            }.items():
                setattr(intervention, name, value)
            moved.append((intervention, from_status))
        names = {"status", "status_reason", "updated_at"}.union(*(f for _, f in changes))
        Intervention.objects.bulk_update([i for i, _ in moved], sorted(names))
        InterventionEvent.objects.bulk_create(
            InterventionEvent(
                intervention=intervention,
                from_status=from_status,
                to_status=target,
                reason=reason,
                at=now,
            )
            for intervention, from_status in moved
        )
        outbox.record(
            outbox.status_changed(intervention, from_status, target, reason, now)
            for intervention, from_status in moved
        )
    return [intervention for intervention, _ in moved]


def record_attempts_succeeded(
    sent: Sequence[tuple[Intervention, str]], at: datetime.datetime
) -> None:
    """The started attempts of a chunk sent in one call, succeeded with each message's
    provider id: one UPDATE for the chunk (a bulk_update's CASE per row costs more)."""
    if not sent:
        return
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(
            "UPDATE interventions_deliveryattempt AS attempt SET outcome = %s, finished_at = %s,"
            " provider_message_id = sent.message_id"
            " FROM unnest(%s::uuid[], %s::varchar[]) AS sent(intervention_id, message_id)"
            " WHERE attempt.intervention_id = sent.intervention_id AND attempt.outcome = %s",
            [
                DeliveryAttempt.Outcome.SUCCEEDED,
                at,
                [intervention.pk for intervention, _ in sent],
                [message_id for _, message_id in sent],
                DeliveryAttempt.Outcome.STARTED,
            ],
        )


def transition_each(
    moves: Sequence[tuple[Intervention, dict[str, Any], Sequence[models.Model]]],
    target: str,
    reason: str,
) -> list[Intervention]:
    """A burst of ``transition``s (WebSocket acks): each intervention moves to ``target``
    if it still has the status it was read with, with its own values of the same extra
    fields and its own rows to record beside the history and outbox rows (a tracking row,
    say). Returns the interventions that moved; the others changed meanwhile and are left
    alone.

    One statement on PostgreSQL (issue 12), as ``transition`` does for one row: the UPDATE
    of the whole batch with every INSERT hanging off its RETURNING, so a row is written
    exactly for the interventions that moved, atomically without a transaction, in one
    round trip instead of the ten a locked SELECT, an UPDATE and four INSERTs in a
    transaction took. The UPDATE holds each moved row's lock while the outbox rows get
    their ids, so one intervention's events still get ids in the order they commit.
    """
    now = timezone.now()
    reason = reason[:500]
    planned: list[tuple[Intervention, dict[str, Any], list[models.Model]]] = []
    seen = set()
    for intervention, fields, extra in moves:
        if intervention.pk in seen or intervention.status not in ALLOWED_SOURCES[target]:
            continue
        seen.add(intervention.pk)
        changes = {"status": target, "status_reason": reason, "updated_at": now, **fields}
        moved = copy.copy(intervention)
        for name, value in changes.items():
            setattr(moved, name, value)
        history = InterventionEvent(
            intervention=intervention,
            from_status=intervention.status,
            to_status=target,
            reason=reason,
            at=now,
        )
        event = outbox.status_changed(moved, intervention.status, target, reason, now)
        planned.append((intervention, changes, [history, event, *extra]))
    if not planned:
        return []
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        with transaction.atomic(savepoint=False):
            moved_ids = {i.pk for i, c, rows in planned if _move(i, i.status, c, rows)}
    else:
        moved_ids = _move_each(planned)
    done = []
    for intervention, changes, _ in planned:
        if intervention.pk in moved_ids:
            for name, value in changes.items():
                setattr(intervention, name, value)
            done.append(intervention)
    return done


def _move_each(planned: list[tuple[Intervention, dict[str, Any], list[models.Model]]]) -> set[Any]:
    """``_move`` for many rows in one statement: the ids that moved."""
    connection = connections[DEFAULT_DB_ALIAS]
    opts = Intervention._meta
    pk = opts.pk
    assert pk is not None
    # Every value an array parameter, one element per intervention, typed as its column
    # (as Django's own bulk INSERT does with UNNEST), so the SQL is the same for any batch.
    names = list(planned[0][1])
    assert all(list(changes) == names for _, changes, _ in planned)  # one column per array
    columns: list[models.Field] = []
    for name in names:
        field = opts.get_field(name)
        assert isinstance(field, models.Field)  # a column of the row, not a relation's
        columns.append(field)
    params: list[Any] = [
        [pk.get_db_prep_value(i.pk, connection) for i, _, _ in planned],
        [i.status for i, _, _ in planned],
        *(
            [field.get_db_prep_save(changes[name], connection) for _, changes, _ in planned]
            for name, field in zip(names, columns, strict=True)
        ),
    ]
    statement = _move_each_update(tuple(names))
    by_model: dict[type[models.Model], list[models.Model]] = {}
    for _, _, rows in planned:
        for row in rows:
            by_model.setdefault(type(row), []).append(row)
    for index, (model, rows) in enumerate(by_model.items()):
        insert, insert_params = _insert_for_moved(model, rows, connection)
        statement += f", rows{index} AS ({insert})"
        params += insert_params
    with connection.cursor() as cursor:
        cursor.execute(f"{statement} SELECT id FROM moved", params)  # noqa: S608
        moved = {row[0] for row in cursor.fetchall()}
    for _, _, rows in planned:
        for row in rows:
            if getattr(row, "intervention_id", None) in moved:
                row._state.adding, row._state.db = False, DEFAULT_DB_ALIAS
    return moved


@functools.cache
def _move_each_update(names: tuple[str, ...]) -> str:
    """The UPDATE at the head of ``_move_each`` for these columns: the same text for any
    batch, compiled once (issue 12, stop 17)."""
    connection = connections[DEFAULT_DB_ALIAS]
    quote = connection.ops.quote_name
    opts = Intervention._meta
    pk = opts.pk
    assert pk is not None
    columns: list[models.Field] = []
    for name in names:
        field = opts.get_field(name)
        assert isinstance(field, models.Field)  # a column of the row, not a relation's
        columns.append(field)
    status = opts.get_field("status")
    assert isinstance(status, models.Field)
    arrays = ", ".join(_array_of(field, connection) for field in [pk, status, *columns])
    aliases = ", ".join(f"c{index}" for index in range(len(columns)))
    return (
        f"WITH moved AS (UPDATE {quote(opts.db_table)} AS t "  # noqa: S608
        f"SET {', '.join(f'{quote(str(f.column))} = w.c{i}' for i, f in enumerate(columns))} "
        f"FROM unnest({arrays}) AS w(id, expected, {aliases}) "
        f"WHERE t.{quote(str(pk.column))} = w.id AND t.{quote('status')} = w.expected "
        f"RETURNING t.{quote(str(pk.column))} AS id)"
    )


def _array_of(field: models.Field, connection: Any) -> str:
    # varchar[], not varchar(16)[]: no truncation on the way in (as Django's UNNEST does).
    return f"(%s)::{str(field.db_type(connection)).split('(')[0]}[]"


def _insert_for_moved(
    model: type[models.Model], rows: list[models.Model], connection: Any
) -> tuple[str, list[Any]]:
    """INSERT ``rows`` whose ``intervention_id`` is in ``moved``, in the given order
    (outbox ids must follow it), from one array per column."""
    params = [
        [field.get_db_prep_save(field.pre_save(row, add=True), connection) for row in rows]
        for field in _inserted_fields(model)
    ]
    return _insert_for_moved_sql(model), params


@functools.cache
def _insert_for_moved_sql(model: type[models.Model]) -> str:
    # The same text for any batch: compiled once per model (issue 12, stop 17).
    connection = connections[DEFAULT_DB_ALIAS]
    quote = connection.ops.quote_name
    fields = _inserted_fields(model)
    arrays = [_array_of(field, connection) for field in fields]
    aliases = [f"c{index}" for index in range(len(fields))]
    link = aliases[[f.attname for f in fields].index("intervention_id")]
    return (
        f"INSERT INTO {quote(model._meta.db_table)} "  # noqa: S608
        f"({', '.join(quote(str(f.column)) for f in fields)}) "
        f"SELECT {', '.join(aliases)} FROM unnest({', '.join(arrays)}) "
        f"WITH ORDINALITY AS v({', '.join(aliases)}, position) "
        f"WHERE {link} IN (SELECT id FROM moved) ORDER BY position RETURNING 1"
    )


def record_created(created: Sequence[tuple[Intervention, InterventionEvent]]) -> None:
    """Insert new interventions with the history row of their first status: how a status
    is first written (every later change goes through ``transition``)."""
    events = [
        outbox.status_changed(
            intervention, event.from_status, event.to_status, event.reason, event.at
        )
        for intervention, event in created
    ]
    if len(created) == 1 and connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
        # One statement, one round trip, all three rows or none (issue 12).
        [(intervention, event)] = created
        first, first_params = insert_statement([intervention])
        second, second_params = insert_statement([event])
        third, third_params = insert_statement(events)
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute(
                f"WITH created AS ({first}), announced AS ({third}) {second} RETURNING id",
                first_params + third_params + second_params,
            )
            event.id = cursor.fetchone()[0]
        for row in (intervention, event, *events):
            row._state.adding, row._state.db = False, DEFAULT_DB_ALIAS
        return
    with transaction.atomic(savepoint=False):
        Intervention.objects.bulk_create([intervention for intervention, _ in created])
        InterventionEvent.objects.bulk_create([event for _, event in created])
        outbox.record(events)
