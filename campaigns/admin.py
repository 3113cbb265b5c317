"""The marketers' campaign pages: the same checks and lifecycle as the API (campaigns.actions).

Variants are edited as rows of form fields on the campaign's page (``VariantsWidget``):
key, weight, a template picker, channel, discount and delay, with a preview of each
variant's rendered template. They are one field of the campaign form rather than an inline
formset, because variants are a list on the campaign (what the API and the trigger path
read), and so that a POST without them (another client, an older page) leaves them as they
are instead of failing for a missing management form. The lifecycle commands, a results
refresh and undoing a promotion are buttons on the page (``campaign_command``).
"""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from campaigns import actions
from campaigns.actions.rules import MAX_VARIANTS
from campaigns.admin_panels import NONE_SHOWN, results_panel, table, variant_previews
from campaigns.admin_targeting import TargetingFormMixin, audience_panel, budget_panel, runs_panel
from campaigns.models import (
    DEFAULT_ATTRIBUTION_WINDOW_HOURS,
    DEFAULT_BANDIT_FLOOR_PERCENT,
    AllocationMode,
    Campaign,
    CampaignChannel,
)
from stores.admin_scoping import StoreScopedAdmin, store_ids_granting
from stores.models import StoreRole
from templates.models import Template

OPTIONAL_WITH_DEFAULTS: dict[str, Any] = {
    "variants": list,
    "holdout_percent": lambda: 0.0,
    "attribution_window_hours": lambda: DEFAULT_ATTRIBUTION_WINDOW_HOURS,
    "mode": lambda: AllocationMode.TEST,
    "bandit_floor_percent": lambda: DEFAULT_BANDIT_FLOOR_PERCENT,
}
VARIANT_COLUMNS = ("key", "weight", "template_key", "channel", "discount_percent", "delay_minutes")
# Blank rows under the existing variants, to add some without a script.
SPARE_VARIANT_ROWS = 2


class VariantsWidget(forms.Widget):
    """Variants as a table of rows named ``variants-<row>-<column>``.

    Still accepts ``variants`` as a JSON list (as the API takes it), and reports the value
    omitted when neither is posted, so the form keeps the campaign's variants.
    """

    template_choices: list[tuple[str, str]] = []

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        prefix = f"{name}-"
        if any(key.startswith(prefix) for key in data):
            rows = []
            for row in range(MAX_VARIANTS + SPARE_VARIANT_ROWS):
                values = {
                    c: (data.get(f"{prefix}{row}-{c}") or "").strip() for c in VARIANT_COLUMNS
                }
                if any(values.values()):
                    rows.append(values)
            return rows
        return data.get(name)

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return name not in data and not any(key.startswith(f"{name}-") for key in data)

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = []
        rows = [v for v in (value or []) if isinstance(v, dict)]
        rows += [{}] * SPARE_VARIANT_ROWS
        channels = [("", "(campaign's)"), *CampaignChannel.choices]
        templates = [("", "(campaign's)"), *self.template_choices]
        body = []
        for row, variant in enumerate(rows):
            field = f"{name}-{row}"
            cells = [
                text_input(f"{field}-key", variant.get("key"), "control" if row == 0 else "", 12),
                text_input(f"{field}-weight", number(variant.get("weight")), "", 5),
                select(f"{field}-template_key", variant.get("template_key"), templates),
                select(f"{field}-channel", variant.get("channel"), channels),
                text_input(f"{field}-discount_percent", variant.get("discount_percent"), "", 5),
                text_input(f"{field}-delay_minutes", variant.get("delay_minutes"), "", 5),
            ]
            body.append(
                format_html("<tr>{}</tr>", SafeString("".join(f"<td>{c}</td>" for c in cells)))
            )
        return format_html(
            '<table class="variants-editor"><thead><tr><th>Key</th><th>Weight %</th>'
            "<th>Template</th><th>Channel</th><th>Discount %</th><th>Delay (min)</th></tr>"
            "</thead><tbody>{}</tbody></table>"
            '<p class="help">The first variant is the control. Weights are percents of '
            "the treated shoppers and must sum to 100. Empty fields use the campaign's. "
            "Clear a row's key and weight to remove it; save to get more blank rows.</p>",
            SafeString("".join(body)),
        )


def number(value: Any) -> str:
    if value is None or value == "":
        return ""
    return f"{float(value):g}"


def text_input(name: str, value: Any, placeholder: str, size: int) -> SafeString:
    return format_html(
        '<input type="text" name="{}" id="id_{}" value="{}" placeholder="{}" size="{}">',
        name,
        name,
        "" if value is None else value,
        placeholder,
        size,
    )


def select(name: str, value: Any, choices: list[tuple[str, str]]) -> SafeString:
    known = {key for key, _ in choices}
    if value and value not in known:
        choices = [*choices, (value, f"{value} (unknown)")]
    options = "".join(
        format_html(
            '<option value="{}"{}>{}</option>',
            key,
            " selected" if key == (value or "") else "",
            label,
        )
        for key, label in choices
    )
    return format_html('<select name="{}" id="id_{}">{}</select>', name, name, SafeString(options))


class VariantsField(forms.Field):
    widget = VariantsWidget

    def to_python(self, value: Any) -> Any:
        """Rows of text as the API's variant objects (check_campaign validates them)."""
        if value in (None, ""):
            return []
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError as exc:
                raise ValidationError("Enter a valid JSON list of variants.") from exc
            if not isinstance(parsed, list):
                raise ValidationError("Enter a list of variants.")
            return parsed
        variants = []
        for row, values in enumerate(value):
            variant: dict[str, Any] = {"key": values["key"]}
            variant["weight"] = parse_number(values["weight"], f"row {row + 1} weight", float)
            for column in ("template_key", "channel"):
                if values[column]:
                    variant[column] = values[column]
            if values["discount_percent"]:
                variant["discount_percent"] = parse_number(
                    values["discount_percent"], f"row {row + 1} discount", float
                )
            if values["delay_minutes"]:
                variant["delay_minutes"] = parse_number(
                    values["delay_minutes"], f"row {row + 1} delay", int
                )
            variants.append(variant)
        return variants


def parse_number(text: str, label: str, kind: type) -> Any:
    try:
        return kind(text) if text else None
    except ValueError as exc:
        raise ValidationError(f"The {label} must be a number, not {text!r}.") from exc


class CampaignAdminForm(TargetingFormMixin, forms.ModelForm):
    variants = VariantsField(required=False, label="Variants")
    template_key = forms.ChoiceField(required=False, label="Template")

    class Meta:
        model = Campaign
        fields = [
            "store",
            "name",
            "priority",
            "starts_at",
            "ends_at",
            "kind",
            "schedule_cron",
            "schedule_at",
            "audience",
            "budget_sends_per_day",
            "budget_sends_total",
            "budget_discount",
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
            "mode",
            "auto_promote",
            "bandit_floor_percent",
            "attribution_model",
        ]

    # Set per request by CampaignAdmin.get_form: the published templates the user may use.
    template_choices: list[tuple[str, str]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in OPTIONAL_WITH_DEFAULTS:
            if name in self.fields:
                self.fields[name].required = False
        if "variants" in self.fields:
            widget = self.fields["variants"].widget
            widget.template_choices = self.template_choices
        if "template_key" in self.fields:
            current = self.instance.template_key if self.instance.pk else ""
            choices = [("", "(none: the shopper gets the default content)"), *self.template_choices]
            if current and current not in {key for key, _ in choices}:
                choices.append((current, f"{current} (unknown)"))
            self.fields["template_key"].choices = choices  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if "variants" in self.fields and self.fields["variants"].widget.value_omitted_from_data(
            self.data, self.files, self.add_prefix("variants")
        ):
            # Not on this POST: keep what the campaign has.
            cleaned["variants"] = list(self.instance.variants) if self.instance.pk else []
        for name, default in OPTIONAL_WITH_DEFAULTS.items():
            if name in self.fields and cleaned.get(name) in (None, ""):
                if name != "variants" and self.instance.pk and name not in self.data:
                    cleaned[name] = getattr(self.instance, name)
                else:
                    cleaned[name] = default()
        self.clean_targeting(cleaned)
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
        # Model fields only: the cost caps are composed into budget_channel_costs.
        names = {f.name for f in Campaign._meta.concrete_fields} - {"store"}
        return {name: cleaned[name] for name in [*self.fields, "budget_channel_costs"]
                if name in cleaned and name in names}  # fmt: skip


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


@admin.action(description="Undo the promotion of the selected campaigns' winners")
def undo_promotion(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Campaign]
) -> None:
    for campaign in queryset:
        try:
            actions.do_undo_promotion(campaign, request.user.get_username())
            model_admin.message_user(request, f"{campaign.name}: the split before is restored.")
        except actions.CampaignConflict as exc:
            model_admin.message_user(request, str(exc), messages.WARNING)


# Buttons on the change page: command -> (label, what it does).
PAGE_COMMANDS: dict[str, str] = {
    "launch": "Launch",
    "pause": "Pause",
    "resume": "Resume",
    "complete": "Complete (freezes results)",
    "archive": "Archive",
    "refresh": "Refresh results",
    "undo_promotion": "Undo promotion",
}


@admin.register(Campaign)
class CampaignAdmin(StoreScopedAdmin):
    form = CampaignAdminForm
    change_form_template = "admin/campaigns/campaign/change_form.html"
    # Saves and lifecycle actions go through campaigns.actions, which record their own
    # entries; a deletion here does not.
    audited = frozenset({"deleted"})
    list_display = ["name", "store", "status", "mode", "trigger", "channel", "priority"]
    list_filter = ["store", "status", "mode", "trigger", "channel"]
    search_fields = ["name"]
    actions = [
        lifecycle_action("launch", "Launch"),
        lifecycle_action("pause", "Pause"),
        lifecycle_action("resume", "Resume"),
        lifecycle_action("complete", "Complete (freezes results)"),
        lifecycle_action("archive", "Archive"),
        undo_promotion,
    ]
    readonly_fields = [
        "status",
        "launched_at",
        "completed_at",
        "live_split",
        "previews_panel",
        "results_panel",
        "changes_panel",
        "audience_preview",
        "budget_usage",
        "runs",
    ]
    fieldsets = [
        (None, {"fields": ["store", "name", "kind", "status", "priority"]}),
        (
            "Schedule",
            {
                "fields": ["starts_at", "ends_at", "launched_at", "completed_at"],
            },
        ),
        (
            "Scheduled send (kind: scheduled; times in the store's timezone)",
            {"fields": ["schedule_cron", "schedule_at", "runs"]},
        ),
        ("Audience", {"fields": ["audience", "audience_preview"]}),
        (
            "Budget (empty means unlimited)",
            {
                "fields": [
                    "budget_sends_per_day",
                    "budget_sends_total",
                    "budget_discount",
                    "cost_cap_email",
                    "cost_cap_sms",
                    "cost_cap_push",
                    "budget_usage",
                ]
            },
        ),
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
                    "mode",
                    "auto_promote",
                    "bandit_floor_percent",
                    "live_split",
                    "previews_panel",
                    "attribution_model",
                ]
            },
        ),
        ("Results", {"fields": ["results_panel"]}),
        ("History", {"fields": ["changes_panel"]}),
    ]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        # The templates the marketer may pick: published ones of the campaign's store, or of
        # any store they manage while the store is not chosen yet.
        store_ids = (
            [obj.store_id] if obj is not None else store_ids_granting(request, StoreRole.MARKETER)
        )
        published = Template.objects.filter(published_version__isnull=False).order_by("key")
        if not request.user.is_superuser or obj is not None:
            published = published.filter(store_id__in=store_ids)
        choices = [(key, key) for key in dict.fromkeys(published.values_list("key", flat=True))]
        setattr(form, "template_choices", choices)  # noqa: B010 (a class modelform_factory made)
        return form

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A campaign stays in the store it was created in.
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "store"] if obj is not None else fields

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        actor = request.user.get_username()
        if not change:
            obj.budget_channel_costs = form.cleaned_data.get("budget_channel_costs") or {}
            actions.do_create_campaign(obj, actor)
            return
        actions.do_update_campaign(obj, form.campaign_values(form.cleaned_data), actor)
        obj.refresh_from_db()

    @admin.display(description="Audience size now")
    def audience_preview(self, campaign: Campaign) -> SafeString | str:
        return audience_panel(campaign)

    @admin.display(description="Spend")
    def budget_usage(self, campaign: Campaign) -> SafeString | str:
        return budget_panel(campaign)

    @admin.display(description="Runs")
    def runs(self, campaign: Campaign) -> SafeString | str:
        return runs_panel(campaign)

    def get_urls(self) -> list[Any]:
        command = self.admin_site.admin_view(require_POST(self.campaign_command))
        return [
            path(
                "<path:object_id>/command/<str:command>/",
                command,
                name="campaigns_campaign_command",
            ),
            *super().get_urls(),
        ]

    def campaign_command(self, request: HttpRequest, object_id: str, command: str) -> HttpResponse:
        """A button on the change page: one action, a message, back to the page."""
        campaign = self.get_object(request, object_id)
        if campaign is None or command not in PAGE_COMMANDS:
            raise Http404("No such campaign or command.")
        if not self.has_change_permission(request, campaign):
            raise PermissionDenied
        actor = request.user.get_username()
        try:
            if command == "refresh":
                actions.do_refresh_results(campaign, "refresh")
                self.message_user(request, "Results recomputed.")
            elif command == "undo_promotion":
                actions.do_undo_promotion(campaign, actor)
                self.message_user(request, "Promotion undone: the split before is restored.")
            else:
                actions.do_transition_campaign(campaign, command, actor)
                campaign.refresh_from_db()
                self.message_user(request, f"{PAGE_COMMANDS[command]}: now {campaign.status}.")
        except (actions.CampaignConflict, actions.NoExperiment) as exc:
            self.message_user(request, str(exc), messages.WARNING)
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        if obj is not None and self.has_change_permission(request, obj):
            context["campaign_commands"] = [
                (command, label)
                for command, label in PAGE_COMMANDS.items()
                if self.command_applies(obj, command)
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    @staticmethod
    def command_applies(campaign: Campaign, command: str) -> bool:
        if command == "refresh":
            return campaign.has_experiment
        if command == "undo_promotion":
            return actions.active_promotion(campaign) is not None
        sources, _ = actions.COMMANDS[command]
        return campaign.status in sources

    @admin.display(description="Live split")
    def live_split(self, campaign: Campaign) -> str:
        if campaign.pk is None or not campaign.has_experiment:
            return NONE_SHOWN
        weights = campaign.arm_weights()
        shown = ", ".join(f"{key} {weight:.1f}%" for key, weight in weights.items())
        if campaign.live_weights is None:
            return f"{shown} (the variants' weights)"
        return f"{shown} (set by {'the bandit' if campaign.mode == AllocationMode.BANDIT else 'a promotion'})"

    @admin.display(description="Preview per variant")
    def previews_panel(self, campaign: Campaign) -> SafeString | str:
        if campaign.pk is None:
            return "Save the campaign to see its variants rendered."
        return variant_previews(campaign)

    @admin.display(description="Results")
    def results_panel(self, campaign: Campaign) -> SafeString | str:
        if campaign.pk is None or not campaign.has_experiment:
            return "No variants: nothing to compare."
        document = actions.latest_results(campaign)
        return results_panel(
            campaign, document, actions.lift_series(campaign), actions.active_promotion(campaign)
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
