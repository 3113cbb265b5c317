"""Audiences: which shoppers' carts a campaign is for, as a small JSON rule language.

One rule, two evaluators with the same semantics (docs/campaigns.md, "Audiences"):
``audience_q`` turns it into a ``Q`` over ``Cart`` for scheduled sends (one query for the
whole audience), ``matches`` checks one cart's ``AudienceFacts`` in memory for triggered
campaigns. ``check_audience`` is the one validation (API and admin); it names the field
of the first problem (``audience.conditions.2.value``).

A rule is a group::

    {"match": "all" | "any", "conditions": [condition | group, ...]}

and a condition is ``{"field": ..., "op": ..., "value": ...}`` (plus ``"days"`` for the
history counts). A condition over a value the cart or shopper does not have (no
probability, never abandoned) is false whatever its operator, ``ne`` and ``none_of``
included, in both evaluators.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count, Exists, F, Func, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    LessThan,
    LessThanOrEqual,
)

from interventions.models import Cart, Intervention, Status
from notifications.models import Device, Suppression
from stores.models import Shopper, Store

MAX_CONDITIONS = 50
MAX_DEPTH = 3
MAX_LIST = 200
MAX_DAYS = 365
REACHABLE_CHANNELS = ("email", "sms", "push")
# What counts as a past intervention: one that went out.
SENT_STATUSES = (Status.SENT, Status.DELIVERED, Status.UNCONFIRMED)

NUMBER_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "between")
AGE_OPS = ("gt", "gte", "lt", "lte", "between")
TEXT_OPS = ("eq", "ne", "in", "not_in")
LIST_OPS = ("any_of", "none_of")
BOOL_OPS = ("eq",)

COUNT_LOOKUPS = {
    "eq": Exact,
    "gt": GreaterThan,
    "gte": GreaterThanOrEqual,
    "lt": LessThan,
    "lte": LessThanOrEqual,
}

# field: (kind, operators)
FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cart.value": ("number", NUMBER_OPS),
    "cart.items_count": ("number", NUMBER_OPS),
    "cart.probability": ("number", NUMBER_OPS),
    "cart.abandoned_hours": ("age", AGE_OPS),
    "cart.age_hours": ("age", AGE_OPS),
    "cart.converted": ("bool", BOOL_OPS),
    "cart.currency": ("text", TEXT_OPS),
    "cart.skus": ("list", LIST_OPS),
    "cart.categories": ("list", LIST_OPS),
    "shopper.locale": ("text", TEXT_OPS),
    "shopper.country": ("text", TEXT_OPS),
    "shopper.segment": ("text", TEXT_OPS),
    "shopper.interventions": ("count", NUMBER_OPS),
    "shopper.conversions": ("count", NUMBER_OPS),
    "shopper.reachable": ("channels", LIST_OPS),
}


# ---- validation -------------------------------------------------------------------------


def check_audience(rule: Any, prefix: str = "audience") -> dict[str, Any]:
    """The rule in its stored shape, or ``ValidationError({field: [message]})``.

    ``{}`` (or None) is everyone.
    """
    if rule in (None, {}):
        return {}
    counter = [0]
    return _check_group(rule, prefix, 1, counter)


def _fail(path: str, message: str) -> ValidationError:
    return ValidationError({path: [message]})


def _check_group(group: Any, path: str, depth: int, counter: list[int]) -> dict[str, Any]:
    if not isinstance(group, Mapping):
        raise _fail(path, "Must be an object with 'match' and 'conditions'.")
    unknown = sorted(set(group) - {"match", "conditions"})
    if unknown:
        raise _fail(f"{path}.{unknown[0]}", "Unknown field.")
    match = group.get("match", "all")
    if match not in ("all", "any"):
        raise _fail(f"{path}.match", "Must be 'all' or 'any'.")
    conditions = group.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        raise _fail(f"{path}.conditions", "Must be a non-empty list.")
    clean = []
    for index, condition in enumerate(conditions):
        where = f"{path}.conditions.{index}"
        if isinstance(condition, Mapping) and "conditions" in condition:
            if depth >= MAX_DEPTH:
                raise _fail(where, f"Groups nest at most {MAX_DEPTH} deep.")
            clean.append(_check_group(condition, where, depth + 1, counter))
        else:
            counter[0] += 1
            if counter[0] > MAX_CONDITIONS:
                raise _fail(where, f"At most {MAX_CONDITIONS} conditions.")
            clean.append(_check_condition(condition, where))
    return {"match": match, "conditions": clean}


def _check_condition(condition: Any, path: str) -> dict[str, Any]:
    if not isinstance(condition, Mapping):
        raise _fail(path, "Must be an object with field, op and value.")
    unknown = sorted(set(condition) - {"field", "op", "value", "days"})
    if unknown:
        raise _fail(f"{path}.{unknown[0]}", "Unknown field.")
    name = condition.get("field")
    if name not in FIELDS:
        raise _fail(f"{path}.field", f"Must be one of {', '.join(FIELDS)}.")
    kind, ops = FIELDS[name]
    op = condition.get("op")
    if op not in ops:
        raise _fail(f"{path}.op", f"For {name}, must be one of {', '.join(ops)}.")
    clean: dict[str, Any] = {
        "field": name,
        "op": op,
        "value": _check_value(kind, op, condition.get("value"), f"{path}.value"),
    }
    if kind == "count":
        days = condition.get("days", 30)
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
            raise _fail(f"{path}.days", f"Must be a whole number of days from 1 to {MAX_DAYS}.")
        clean["days"] = days
    elif "days" in condition:
        raise _fail(f"{path}.days", "Only shopper.interventions and shopper.conversions take days.")
    return clean


def _number(value: Any, path: str, *, whole: bool = False) -> str | int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _fail(path, "Must be a number.")
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise _fail(path, "Must be a number.") from exc
    if not number.is_finite() or number < 0:
        raise _fail(path, "Must be a number ≥ 0.")
    if whole:
        if number != number.to_integral_value():
            raise _fail(path, "Must be a whole number.")
        return int(number)
    return str(number)


def _check_numeric(op: str, value: Any, path: str, *, whole: bool) -> Any:
    if op != "between":
        return _number(value, path, whole=whole)
    if not isinstance(value, list) or len(value) != 2:
        raise _fail(path, "Must be [low, high].")
    low, high = (_number(v, f"{path}.{i}", whole=whole) for i, v in enumerate(value))
    if Decimal(str(low)) > Decimal(str(high)):
        raise _fail(path, "The low end must not exceed the high end.")
    return [low, high]


def _check_value(kind: str, op: str, value: Any, path: str) -> Any:
    if kind in ("number", "age", "count"):
        return _check_numeric(op, value, path, whole=kind == "count")
    if kind == "bool":
        if not isinstance(value, bool):
            raise _fail(path, "Must be true or false.")
        return value
    if kind == "text" and op in ("eq", "ne"):
        if not isinstance(value, str) or len(value) > 64:
            raise _fail(path, "Must be a text of at most 64 characters.")
        return value
    # in / not_in / any_of / none_of: a list of texts
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_LIST
        or not all(isinstance(v, str) and 0 < len(v) <= 100 for v in value)
    ):
        raise _fail(path, f"Must be a list of 1 to {MAX_LIST} non-empty texts.")
    if kind == "channels":
        bad = [v for v in value if v not in REACHABLE_CHANNELS]
        if bad:
            raise _fail(path, f"Channels must be among {', '.join(REACHABLE_CHANNELS)}.")
    return list(dict.fromkeys(value))


def conditions_of(rule: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for condition in rule.get("conditions") or ():
        if "conditions" in condition:
            yield from conditions_of(condition)
        else:
            yield condition


# ---- in memory ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AudienceFacts:
    """What the rule can ask about one cart and its shopper, as plain data."""

    value: Decimal | None = None
    items: tuple[Mapping[str, Any], ...] = ()
    probability: float | None = None
    abandoned_at: datetime | None = None
    created_at: datetime | None = None
    converted: bool = False
    currency: str = ""
    locale: str = ""
    country: str = ""
    segment: str = ""
    reachable: frozenset[str] = frozenset()
    # {days: count} for the windows the rule asks about
    interventions: Mapping[int, int] = field(default_factory=dict)
    conversions: Mapping[int, int] = field(default_factory=dict)


def matches(rule: Mapping[str, Any], facts: AudienceFacts, now: datetime) -> bool:
    """Whether the cart is in the audience; ``{}`` is everyone."""
    if not rule:
        return True
    results = (
        matches(c, facts, now) if "conditions" in c else _condition_holds(c, facts, now)
        for c in rule["conditions"]
    )
    return all(results) if rule.get("match", "all") == "all" else any(results)


COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda actual, value: actual == value,
    "ne": lambda actual, value: actual != value,
    "gt": lambda actual, value: actual > value,
    "gte": lambda actual, value: actual >= value,
    "lt": lambda actual, value: actual < value,
    "lte": lambda actual, value: actual <= value,
    "in": lambda actual, value: actual in value,
    "not_in": lambda actual, value: actual not in value,
    "between": lambda actual, value: value[0] <= actual <= value[1],
}


def _compare(actual: Any, op: str, value: Any) -> bool:
    return actual is not None and COMPARISONS[op](actual, value)


def _decimal(value: Any) -> Any:
    return [Decimal(str(v)) for v in value] if isinstance(value, list) else Decimal(str(value))


def _condition_holds(condition: Mapping[str, Any], facts: AudienceFacts, now: datetime) -> bool:
    name, op, value = condition["field"], condition["op"], condition["value"]
    kind, _ = FIELDS[name]
    if kind == "age":
        moment = facts.abandoned_at if name == "cart.abandoned_hours" else facts.created_at
        if moment is None:
            return False
        # Compared as instants, as the SQL does: "older than h hours" is "at or before
        # now - h", so both evaluators round the same way.
        hours = value if op == "between" else [value]
        bounds = [now - timedelta(hours=float(h)) for h in hours]
        if op == "between":
            return bounds[1] <= moment <= bounds[0]
        return {
            "gt": moment < bounds[0],
            "gte": moment <= bounds[0],
            "lt": moment > bounds[0],
            "lte": moment >= bounds[0],
        }[op]
    if kind in ("number", "count"):
        actual: Any = {
            "cart.value": facts.value,
            "cart.items_count": len(facts.items),
            "cart.probability": facts.probability,
            "shopper.interventions": facts.interventions.get(condition.get("days", 30)),
            "shopper.conversions": facts.conversions.get(condition.get("days", 30)),
        }[name]
        if actual is None:
            return False
        return _compare(Decimal(str(actual)), op, _decimal(value))
    if kind == "bool":
        return facts.converted == value
    if kind == "text":
        actual = {
            "cart.currency": facts.currency,
            "shopper.locale": facts.locale,
            "shopper.country": facts.country,
            "shopper.segment": facts.segment,
        }[name]
        return _compare(actual, op, value)
    present: set[str] | frozenset[str]
    if name == "shopper.reachable":
        present = facts.reachable & set(value)
    else:
        key = "sku" if name == "cart.skus" else "category"
        present = {str(item.get(key)) for item in facts.items if isinstance(item, Mapping)} & set(
            value
        )
    return bool(present) if op == "any_of" else not present


def facts_for(
    cart: Cart, shopper: Shopper, rule: Mapping[str, Any], now: datetime
) -> AudienceFacts:
    """One cart's facts, with only the look-ups the rule needs (a trigger's path)."""
    needed = {c["field"]: c for c in conditions_of(rule)}
    windows = {
        name: {c.get("days", 30) for c in conditions_of(rule) if c["field"] == name}
        for name in ("shopper.interventions", "shopper.conversions")
    }
    interventions = {
        days: Intervention.objects.filter(
            shopper=shopper, status__in=SENT_STATUSES, sent_at__gte=now - timedelta(days=days)
        ).count()
        for days in windows["shopper.interventions"]
    }
    conversions = {
        days: Cart.objects.filter(
            shopper=shopper, converted_at__gte=now - timedelta(days=days)
        ).count()
        for days in windows["shopper.conversions"]
    }
    reachable: frozenset[str] = frozenset()
    if "shopper.reachable" in needed:
        reachable = frozenset(c for c in REACHABLE_CHANNELS if _reachable_now(shopper, c))
    return AudienceFacts(
        value=cart.value,
        items=tuple(cart.items or ()),
        probability=cart.probability,
        abandoned_at=cart.abandoned_at,
        created_at=cart.created_at,
        converted=cart.converted_at is not None,
        currency=cart.currency,
        locale=shopper.locale,
        country=shopper.country,
        segment=shopper.segment,
        reachable=reachable,
        interventions=interventions,
        conversions=conversions,
    )


def _reachable_now(shopper: Shopper, channel: str) -> bool:
    if channel in (shopper.opted_out_channels or ()):
        return False
    if channel == "push":
        return Device.objects.filter(shopper=shopper, active=True).exists()
    address = shopper.email if channel == "email" else shopper.phone
    return (
        bool(address)
        and not Suppression.objects.filter(
            store_id=shopper.store_id, channel=channel, address=address
        ).exists()
    )


# ---- in SQL ------------------------------------------------------------------------------


def audience_carts(store: Store, rule: Mapping[str, Any], now: datetime) -> QuerySet[Cart]:
    """The store's carts in the audience (with a live shopper), as one query."""
    carts = Cart.objects.filter(store=store, shopper__isnull=False, shopper__erased_at__isnull=True)
    if any(c["field"] == "cart.items_count" for c in conditions_of(rule)):
        carts = carts.annotate(
            audience_items_count=Coalesce(
                Func(F("items"), function="jsonb_array_length", output_field=IntegerField()), 0
            )
        )
    return carts.filter(audience_q(rule, now))


def audience_q(rule: Mapping[str, Any], now: datetime) -> Q:
    """The rule as a ``Q`` over ``Cart`` (``audience_carts`` adds what it needs)."""
    if not rule:
        return Q()
    parts = [
        audience_q(c, now) if "conditions" in c else _condition_q(c, now)
        for c in rule["conditions"]
    ]
    combined = parts[0]
    for part in parts[1:]:
        combined = combined & part if rule.get("match", "all") == "all" else combined | part
    return combined


def _compare_q(column: str, op: str, value: Any) -> Q:
    present = Q(**{f"{column}__isnull": False})
    if op == "between":
        return Q(**{f"{column}__gte": value[0], f"{column}__lte": value[1]})
    if op in ("ne", "not_in"):
        lookup = "exact" if op == "ne" else "in"
        return present & ~Q(**{f"{column}__{lookup}": value})
    lookup = {"eq": "exact", "in": "in", "gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte"}[op]
    return Q(**{f"{column}__{lookup}": value})


def _condition_q(condition: Mapping[str, Any], now: datetime) -> Q:  # noqa: C901 - one branch per field kind
    name, op, value = condition["field"], condition["op"], condition["value"]
    kind, _ = FIELDS[name]
    if kind == "age":
        column = "abandoned_at" if name == "cart.abandoned_hours" else "created_at"
        hours = value if op == "between" else [value]
        bounds = [now - timedelta(hours=float(h)) for h in hours]
        if op == "between":
            return Q(**{f"{column}__gte": bounds[1], f"{column}__lte": bounds[0]})
        flipped = {"gt": "lt", "gte": "lte", "lt": "gt", "lte": "gte"}[op]
        return Q(**{f"{column}__{flipped}": bounds[0]})
    if kind == "number":
        column = {
            "cart.value": "value",
            "cart.items_count": "audience_items_count",
            "cart.probability": "probability",
        }[name]
        number = _decimal(value)
        if name == "cart.probability":
            number = [float(v) for v in number] if isinstance(number, list) else float(number)
        return _compare_q(column, op, number)
    if kind == "count":
        days = condition.get("days", 30)
        since = now - timedelta(days=days)
        rows: QuerySet[Any]
        if name == "shopper.interventions":
            rows = Intervention.objects.filter(
                shopper=OuterRef("shopper"), status__in=SENT_STATUSES, sent_at__gte=since
            )
        else:
            rows = Cart.objects.filter(shopper=OuterRef("shopper"), converted_at__gte=since)
        count = Subquery(
            rows.order_by().values("shopper").annotate(n=Count("pk")).values("n"),
            output_field=IntegerField(),
        )
        # A shopper without rows has a count of 0, not NULL.
        return _count_q(Coalesce(count, 0), op, _decimal(value))
    if kind == "bool":
        return Q(converted_at__isnull=not value)
    if kind == "text":
        column = {
            "cart.currency": "currency",
            "shopper.locale": "shopper__locale",
            "shopper.country": "shopper__country",
            "shopper.segment": "shopper__segment",
        }[name]
        return _compare_q(column, op, value)
    if name == "shopper.reachable":
        found = Q()
        for channel in value:
            found |= _reachable_q(channel)
    else:
        key = "sku" if name == "cart.skus" else "category"
        found = Q()
        for wanted in value:
            found |= Q(items__contains=[{key: wanted}])
    return found if op == "any_of" else ~found


def _count_q(expression: Any, op: str, value: Any) -> Q:
    if op == "between":
        return _count_q(expression, "gte", value[0]) & _count_q(expression, "lte", value[1])
    if op == "ne":
        return ~Q(Exact(expression, int(value)))
    return Q(COUNT_LOOKUPS[op](expression, int(value)))


def _reachable_q(channel: str) -> Q:
    not_opted_out = ~Q(shopper__opted_out_channels__contains=[channel])
    if channel == "push":
        return not_opted_out & Q(
            Exists(Device.objects.filter(shopper=OuterRef("shopper"), active=True))
        )
    column = "email" if channel == "email" else "phone"
    suppressed = Suppression.objects.filter(
        store=OuterRef("store"), channel=channel, address=OuterRef(f"shopper__{column}")
    )
    return not_opted_out & ~Q(**{f"shopper__{column}": ""}) & ~Q(Exists(suppressed))
