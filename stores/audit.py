"""The audit log of configuration changes: store settings, API keys, templates and
campaigns, from the admin and the API (docs/operations.md#audit-log).

Entries are written explicitly by the code that makes the change, in its transaction,
not by model signals: the actor (an admin user or an API key) is known there, bulk
updates are not missed silently, and nothing is recorded for the engine's own writes
(status transitions, caches). Secrets never enter a snapshot: API key hashes are left
out, as are fields named in ``SECRET_FIELDS``.
"""

import json
from collections.abc import Mapping
from typing import Any

import structlog
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from stores.models import AuditEntry

logger = structlog.get_logger(__name__)

SECRET_FIELDS = frozenset({"hashed_key", "password"})
# Fields that change on every save and say nothing about who changed what.
NOISE_FIELDS = frozenset({"updated_at", "created_at", "created"})


def json_value(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def snapshot(instance: models.Model) -> dict[str, Any]:
    """The instance's own field values, as JSON (foreign keys as ids; the primary key is
    the entry's ``object_id``)."""
    return {
        field.attname: json_value(getattr(instance, field.attname))
        for field in instance._meta.concrete_fields
        if not field.primary_key
        and field.name not in SECRET_FIELDS
        and field.name not in NOISE_FIELDS
    }


def object_id_of(instance: models.Model) -> str:
    # An API key's primary key is "<prefix>.<hash>": the prefix names it, the hash stays out.
    return str(getattr(instance, "prefix", None) or instance.pk)


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    return {
        field: [before.get(field), value]
        for field, value in after.items()
        if before.get(field) != value
    } | {field: [value, None] for field, value in before.items() if field not in after}


def store_id_of(instance: models.Model) -> Any:
    if instance._meta.label == "stores.Store":
        return instance.pk
    if hasattr(instance, "store_id"):
        return instance.store_id
    template = getattr(instance, "template", None)  # a template version
    return getattr(template, "store_id", None)


def do_record_audit(
    instance: models.Model,
    actor: str,
    action: str,
    changes: Mapping[str, Any],
    *,
    store_id: Any = None,
) -> AuditEntry | None:
    """One entry; an update that changed nothing records nothing."""
    if action == "changed" and not changes:
        return None
    entry = AuditEntry.objects.create(
        store_id=store_id if store_id is not None else store_id_of(instance),
        actor=actor[:200],
        action=action,
        object_type=instance._meta.label_lower,
        object_id=object_id_of(instance),
        object_repr=str(instance)[:200],
        changes={field: json_value(values) for field, values in changes.items()},
    )
    logger.info(
        "audit_recorded",
        store_id=str(entry.store_id),
        object_type=entry.object_type,
        object_id=entry.object_id,
        action=action,
        actor=entry.actor,
    )
    return entry


def do_record_added(instance: models.Model, actor: str) -> AuditEntry | None:
    return do_record_audit(instance, actor, "added", diff({}, snapshot(instance)))


def do_record_changed(
    instance: models.Model, actor: str, before: Mapping[str, Any], action: str = "changed"
) -> AuditEntry | None:
    return do_record_audit(instance, actor, action, diff(before, snapshot(instance)))


def do_record_deleted(instance: models.Model, actor: str) -> AuditEntry | None:
    return do_record_audit(instance, actor, "deleted", diff(snapshot(instance), {}))
