"""The marketers' campaign pages: the same checks and lifecycle as the API (campaigns.actions).

Variants are edited as a JSON list on the campaign's page rather than in an inline: an
inline's formset makes every save of the page require its management form.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from campaigns import actions
from campaigns.models import DEFAULT_ATTRIBUTION_WINDOW_HOURS, Campaign
from stores.admin_scoping import StoreScopedAdmin

OPTIONAL_WITH_DEFAULTS: dict[str, Any] = {
    "variants": list,
    "holdout_percent": lambda: 0.0,
    "attribution_window_hours": lambda: DEFAULT_ATTRIBUTION_WINDOW_HOURS,
}


class CampaignAdminForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = [
            "store",
            "name",
            "priority",
            "starts_at",
            "ends_at",
            "trigger",
            "delay_minutes",
            "channel",
            "template_key",
            "discount_percent",
            "min_cart_value",
            "max_cart_value",
            "segments",
            "min_probability",
            "max_probability",
            "variants",
            "holdout_percent",
            "attribution_window_hours",
            "attribution_model",
        ]
        help_texts = {
            "variants": 'e.g. [{"key": "control", "weight": 50}, {"key": "ten_off", "weight": '
            '50, "discount_percent": 10}]; weights sum to 100. Optional per variant: '
            "template_key, channel, discount_percent, delay_minutes.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in OPTIONAL_WITH_DEFAULTS:
            if name in self.fields:
                self.fields[name].required = False

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        for name, default in OPTIONAL_WITH_DEFAULTS.items():
            if name in self.fields and cleaned.get(name) in (None, ""):
                cleaned[name] = default()
        store = cleaned.get("store") or (self.instance.store if self.instance.pk else None)
        if store is None:
            return cleaned
        try:
            cleaned["variants"] = actions.check_campaign(store, cleaned)
        except ValidationError as exc:
            for field, problems in exc.message_dict.items():
                base = field.split(".")[0]
                prefix = "" if field == base else f"{field}: "
                self.add_error(
                    base if base in self.fields else None, [prefix + p for p in problems]
                )
            return cleaned
        if self.instance.pk:
            try:
                actions.check_editable(self.instance, self.campaign_values(cleaned))
            except actions.CampaignConflict as exc:
                self.add_error(None, str(exc))
        return cleaned

    def campaign_values(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        """What the form would change, for the actions (the store never changes)."""
        return {name: cleaned[name] for name in self.fields if name in cleaned and name != "store"}


def table(headers: list[str], rows: list[list[Any]]) -> SafeString:
    return format_html(
        "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>",
        format_html_join("", "<th>{}</th>", ((h,) for h in headers)),
        format_html_join(
            "",
            "<tr>{}</tr>",
            ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
        ),
    )


def lifecycle_action(command: str, description: str) -> Any:
    def run(
        model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> None:
        done = 0
        for campaign in queryset:
            try:
                actions.do_transition_campaign(campaign, command, request.user.get_username())
                done += 1
            except actions.CampaignConflict as exc:
                model_admin.message_user(request, str(exc), messages.WARNING)
        if done:
            model_admin.message_user(request, f"{description}: {done} campaign(s).")

    run.__name__ = command
    return admin.action(description=f"{description} the selected campaigns")(run)


@admin.register(Campaign)
class CampaignAdmin(StoreScopedAdmin):
    form = CampaignAdminForm
    # Saves and lifecycle actions go through campaigns.actions, which record their own
    # entries; a deletion here does not.
    audited = frozenset({"deleted"})
    list_display = ["name", "store", "status", "trigger", "channel", "delay_minutes", "priority"]
    list_filter = ["store", "status", "trigger", "channel"]
    search_fields = ["name"]
    actions = [
        lifecycle_action("launch", "Launch"),
        lifecycle_action("pause", "Pause"),
        lifecycle_action("resume", "Resume"),
        lifecycle_action("complete", "Complete (freezes results)"),
        lifecycle_action("archive", "Archive"),
    ]
    readonly_fields = ["status", "launched_at", "completed_at", "results_panel", "changes_panel"]
    fieldsets = [
        (None, {"fields": ["store", "name", "status", "priority"]}),
        ("Schedule", {"fields": ["starts_at", "ends_at", "launched_at", "completed_at"]}),
        (
            "When and how",
            {"fields": ["trigger", "delay_minutes", "channel", "template_key", "discount_percent"]},
        ),
        (
            "Conditions (empty means any)",
            {
                "fields": [
                    "min_cart_value",
                    "max_cart_value",
                    "segments",
                    "min_probability",
                    "max_probability",
                ]
            },
        ),
        (
            "Experiment",
            {
                "fields": [
                    "variants",
                    "holdout_percent",
                    "attribution_window_hours",
                    "attribution_model",
                    "results_panel",
                ]
            },
        ),
        ("History", {"fields": ["changes_panel"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A campaign stays in the store it was created in.
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "store"] if obj is not None else fields

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        actor = request.user.get_username()
        if not change:
            actions.do_create_campaign(obj, actor)
            return
        actions.do_update_campaign(obj, form.campaign_values(form.cleaned_data), actor)
        obj.refresh_from_db()

    @admin.display(description="Results")
    def results_panel(self, campaign: Campaign) -> SafeString | str:
        if campaign.pk is None or not campaign.has_experiment:
            return "No variants: nothing to compare."
        document = actions.campaign_results(campaign, timezone.now())
        rows = [
            [
                variant["key"],
                variant["exposures"],
                variant["conversions"],
                variant["conversion_rate"],
                variant["revenue"],
                (variant["lift"] or {}).get("estimate"),
                variant["chance_to_win"],
            ]
            for variant in document["variants"]
        ]
        if document["holdout"] is not None:
            holdout = document["holdout"]
            rows.append(
                [
                    "holdout",
                    holdout["exposures"],
                    holdout["conversions"],
                    "",
                    holdout["revenue"],
                    "",
                    "",
                ]
            )
        decision = document["decision"]
        return format_html(
            "{}<p>Decision: {} (winner: {}; {}). Sample ratio check: {}.{}</p>",
            table(
                ["Arm", "Exposures", "Conversions", "Rate", "Revenue", "Lift", "Chance to win"],
                rows,
            ),
            decision["status"],
            decision["winner"] or "none",
            decision["method"],
            "ok" if document["srm"]["ok"] else "FAILED",
            " Frozen at completion." if campaign.results is not None else "",
        )

    @admin.display(description="Changes")
    def changes_panel(self, campaign: Campaign) -> SafeString | str:
        if campaign.pk is None:
            return ""
        return table(
            ["When", "Who", "What", "Before → after"],
            [
                [
                    change.at.strftime("%Y-%m-%d %H:%M:%S"),
                    change.actor,
                    change.action,
                    "; ".join(f"{f}: {b} → {a}" for f, (b, a) in change.changes.items()),
                ]
                for change in campaign.changes.all()
            ],
        )
