"""Conventions every REST endpoint shares."""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from rest_framework import serializers


class StrictFieldsMixin:
    """Reject fields the serializer does not declare: a typo must be a 400, not silently ignored."""

    fields: Any
    initial_data: Any

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictSerializer(StrictFieldsMixin, serializers.Serializer):
    pass


class StrictModelSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    pass


# Real UTC offsets run from -12:00 to +14:00; PostgreSQL refuses beyond ±15:59, and
# years outside its range fail too. Both must be a 400 naming the field, not a 500.
MAX_UTC_OFFSET = timedelta(hours=14)


def check_datetime(value: datetime) -> datetime:
    offset = value.utcoffset()
    if offset is not None and abs(offset) > MAX_UTC_OFFSET:
        raise DjangoValidationError("The UTC offset must be between -14:00 and +14:00.")
    if not 1970 <= value.year <= 9999:
        raise DjangoValidationError("The year must be between 1970 and 9999.")
    return value.astimezone(UTC) if offset is not None else value


class DateTimeField(serializers.DateTimeField):
    """A DRF DateTimeField that refuses offsets and years the database cannot store."""

    def to_internal_value(self, value: Any) -> datetime:
        parsed = super().to_internal_value(value)
        try:
            return check_datetime(parsed)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


def reported_time_problem(at: datetime, *, kept: str) -> str | None:
    """Why a time a client reports cannot be true, or None. Clocks drift by seconds to
    minutes (TRACKING_CLOCK_SKEW_SECONDS of slack); a time hours ahead, or older than
    retention keeps its rows (``RETENTION_DAYS[kept]``), is a bug or a forgery that would
    land in a day beat never recounts."""
    now = timezone.now()
    skew = settings.TRACKING_CLOCK_SKEW_SECONDS
    kept_days = settings.RETENTION_DAYS[kept]
    if at > now + timedelta(seconds=skew):
        return f"Is in the future: more than {skew} s after the server's clock."
    if kept_days and at < now - timedelta(days=kept_days):
        return f"Is older than the {kept_days} days {kept.replace('_', ' ')} are kept."
    return None


class ReportedAtField(DateTimeField):
    """When something happened, as the client reports it: bounded by
    :func:`reported_time_problem`."""

    def __init__(self, *, kept: str, **kwargs: Any) -> None:
        self.kept = kept
        super().__init__(**kwargs)

    def to_internal_value(self, value: Any) -> datetime:
        at = super().to_internal_value(value)
        if problem := reported_time_problem(at, kept=self.kept):
            raise serializers.ValidationError(problem)
        return at


# E.164 (+33612345678) is the form SMS providers take and the one stored on the shopper;
# every endpoint that accepts a phone number validates it with this one field.
E164_PATTERN = r"^\+[1-9]\d{6,14}$"


class PhoneNumberField(serializers.RegexField):
    default_error_messages = {
        "invalid": "Enter the number in E.164 form: + and 7 to 15 digits, e.g. +33612345678."
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "E.164, e.g. +33612345678")
        super().__init__(E164_PATTERN, **kwargs)
