"""The campaign page's audience, schedule and budget parts (docs/campaigns.md).

Marketers build an audience as rows (field, operator, value) under one "all"/"any"
choice, not as JSON; the rows become the rule that ``check_campaign`` validates for the
API too. Rows are plain inputs, not an inline formset, so a POST without them (an older
form, a script) keeps the campaign's audience instead of failing on a management form.
"""

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from campaigns import actions
from campaigns.audiences import FIELDS, MAX_CONDITIONS
from campaigns.budgets import COSTED_CHANNELS, budget_status
from campaigns.models import Campaign

AUDIENCE_ROWS = 8
LIST_OPS = ("in", "not_in", "any_of", "none_of")
OPERATORS = sorted({op for _, ops in FIELDS.values() for op in ops})
# Fields a POST may leave out: the campaign keeps what it has (see the module docstring).
TARGETING_FIELDS = (
    "kind",
    "schedule_cron",
    "schedule_at",
    "audience",
    "budget_sends_per_day",
    "budget_sends_total",
    "budget_discount",
)


def value_text(condition: Mapping[str, Any]) -> str:
    value = condition.get("value")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def value_of(field: str, op: str, text: str) -> Any:
    """A row's typed text as the rule's value (the rule's check reports what is wrong)."""
    text = text.strip()
    kind = FIELDS.get(field, ("", ()))[0]
    if op == "between" or op in LIST_OPS:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        return parts if op in LIST_OPS else parts[:3]
    if kind == "bool":
        return {"true": True, "yes": True, "false": False, "no": False}.get(text.lower(), text)
    if kind == "count":
        return int(text) if text.isdigit() else text
    return text


class AudienceRowsWidget(forms.Widget):
    """One "match" select and ``AUDIENCE_ROWS`` condition rows; blank rows are ignored."""

    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> SafeString:
        rule = value if isinstance(value, Mapping) else {}
        flat = [c for c in rule.get("conditions") or () if "conditions" not in c]
        nested = len(flat) != len(rule.get("conditions") or ())
        rows = [*flat, *[{}] * max(AUDIENCE_ROWS - len(flat), 0)]
        match = rule.get("match", "all")

        def select(field_name: str, options: list[str], chosen: str) -> SafeString:
            return format_html(
                '<select name="{}"><option value=""></option>{}</select>',
                field_name,
                format_html_join(
                    "",
                    "<option value='{}'{}>{}</option>",
                    ((o, " selected" if o == chosen else "", o) for o in options),
                ),
            )

        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td><input name='{}' value='{}' size='30'></td>"
            "<td><input name='{}' value='{}' size='4'></td></tr>",
            (
                (
                    select(f"{name}-{i}-field", list(FIELDS), row.get("field", "")),
                    select(f"{name}-{i}-op", OPERATORS, row.get("op", "")),
                    f"{name}-{i}-value",
                    value_text(row),
                    f"{name}-{i}-days",
                    row.get("days", ""),
                )
                for i, row in enumerate(rows)
            ),
        )
        return format_html(
            "<p>Shoppers whose cart matches {} of these (empty: everyone). Lists and ranges "
            "are comma-separated; days apply to past interventions and conversions.</p>"
            "<table><thead><tr><th>Field</th><th>Operator</th><th>Value</th><th>Days</th>"
            "</tr></thead><tbody>{}</tbody></table>{}",
            select(f"{name}-match", ["all", "any"], match),
            body,
            format_html(
                "<p><strong>Nested groups are set over the API; saving here keeps only the "
                "rows shown.</strong></p>"
            )
            if nested
            else "",
        )

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        if f"{name}-match" not in data:
            return None  # not on this POST: the campaign keeps its audience
        conditions = []
        for i in range(MAX_CONDITIONS):
            field = (data.get(f"{name}-{i}-field") or "").strip()
            if f"{name}-{i}-field" not in data:
                break
            if not field:
                continue
            op = (data.get(f"{name}-{i}-op") or "").strip()
            condition: dict[str, Any] = {
                "field": field,
                "op": op,
                "value": value_of(field, op, data.get(f"{name}-{i}-value") or ""),
            }
            days = (data.get(f"{name}-{i}-days") or "").strip()
            if days:
                condition["days"] = int(days) if days.isdigit() else days
            conditions.append(condition)
        if not conditions:
            return {}
        return {"match": data.get(f"{name}-match") or "all", "conditions": conditions}


class AudienceField(forms.Field):
    widget = AudienceRowsWidget

    def to_python(self, value: Any) -> Any:
        return value

    def prepare_value(self, value: Any) -> Any:
        # A bound form re-renders what was typed; stored JSON arrives as a string.
        return json.loads(value) if isinstance(value, str) and value else value


class TargetingFormMixin(forms.ModelForm):
    """Audience rows, cost caps per channel, and the keep-if-absent rule for them."""

    audience = AudienceField(required=False)
    cost_cap_email = forms.DecimalField(required=False, min_value=0, label="Email cost cap")
    cost_cap_sms = forms.DecimalField(required=False, min_value=0, label="SMS cost cap")
    cost_cap_push = forms.DecimalField(required=False, min_value=0, label="Push cost cap")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in TARGETING_FIELDS:
            if name in self.fields:
                self.fields[name].required = False
        costs = self.instance.budget_channel_costs or {}
        for channel in COSTED_CHANNELS:
            self.fields[f"cost_cap_{channel}"].initial = costs.get(channel)

    def clean_targeting(self, cleaned: dict[str, Any]) -> None:
        """Fill what this POST left out from the campaign; compose the cost caps."""
        for name in TARGETING_FIELDS:
            if name in self.fields and not self.posted(name):
                cleaned[name] = getattr(self.instance, name)
        if cleaned.get("audience") is None:
            cleaned["audience"] = self.instance.audience or {}
        if any(f"cost_cap_{c}" in self.data for c in COSTED_CHANNELS):
            cleaned["budget_channel_costs"] = {
                c: str(cleaned[f"cost_cap_{c}"])
                for c in COSTED_CHANNELS
                if isinstance(cleaned.get(f"cost_cap_{c}"), Decimal)
            }
        else:
            cleaned["budget_channel_costs"] = self.instance.budget_channel_costs or {}

    def posted(self, name: str) -> bool:
        if name == "audience":
            return f"{self.add_prefix(name)}-match" in self.data
        return self.add_prefix(name) in self.data or any(
            key.startswith(f"{self.add_prefix(name)}_") for key in self.data
        )


def audience_panel(campaign: Campaign) -> SafeString | str:
    if campaign.pk is None:
        return "Save the campaign to preview its audience."
    preview = actions.audience_preview(campaign, timezone.now())
    return format_html(
        "<strong>{}</strong> shopper(s) match now. For example: {}",
        preview["size"],
        ", ".join(preview["sample_shopper_ids"]) or "nobody",
    )


def budget_panel(campaign: Campaign) -> SafeString | str:
    if campaign.pk is None:
        return ""
    status = budget_status(campaign, timezone.now())
    return format_html(
        "Today: {} send(s). In total: {} send(s), {} of discount, cost {}.{}",
        status["today"]["sends"],
        status["total"]["sends"],
        status["total"]["discount"],
        ", ".join(f"{c} {v}" for c, v in status["total"]["cost"].items()),
        format_html(" <strong>Stopped: {}.</strong>", ", ".join(status["exhausted"]))
        if status["exhausted"]
        else "",
    )


def runs_panel(campaign: Campaign) -> SafeString | str:
    if campaign.pk is None:
        return ""
    runs = list(campaign.runs.order_by("-slot", "-id")[:10])
    if not runs:
        return "No runs yet."
    return format_html(
        "<table><thead><tr><th>Slot</th><th>Status</th><th>Selected</th><th>Sent</th>"
        "<th>Skipped (why)</th><th>Finished</th></tr></thead><tbody>{}</tbody></table>",
        format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td></tr>",
            (
                (
                    run.slot.strftime("%Y-%m-%d %H:%M UTC"),
                    run.status,
                    run.selected,
                    run.sent,
                    run.skipped,
                    "; ".join(f"{r}: {n}" for r, n in run.skip_reasons.items()),
                    run.finished_at.strftime("%H:%M:%S") if run.finished_at else "",
                )
                for run in runs
            ),
        ),
    )
