"""What the campaign page shows: the results panel with its cumulative-lift chart (an SVG
drawn here, server-side, so the admin needs no script or CDN), and the rendered preview of
each variant's template on its channel."""

from datetime import datetime
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from campaigns.models import Campaign
from templates.actions import preview_version
from templates.models import Template
from templates.rendering import CHANNEL_FIELDS, RenderError

# Colour-blind-safe (Okabe-Ito), one per treatment arm.
ARM_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442"]
CHART_WIDTH, CHART_HEIGHT = 640, 240
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 16, 36
NONE_SHOWN = "\u2013"  # an en dash, as the admin shows an empty value
VERDICTS = {
    "collecting": "Collecting data",
    "significant": "Significant",
    "no_difference": "No difference that matters",
    "srm_failed": "Sample ratio mismatch: the split is broken, no verdict",
}


def percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return NONE_SHOWN
    return f"{value * 100:+.1f}%" if signed else f"{value * 100:.2f}%"


def table(headers: list[str], rows: list[list[Any]], css_class: str = "") -> SafeString:
    return format_html(
        '<table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        css_class,
        format_html_join("", "<th>{}</th>", ((h,) for h in headers)),
        format_html_join(
            "",
            "<tr>{}</tr>",
            ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
        ),
    )


def arm_rows(document: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for variant in document["variants"]:
        lift = variant["lift"]
        sequential = variant.get("sequential")
        rows.append(
            [
                variant["key"],
                variant["exposures"],
                variant["conversions"],
                percent(variant["conversion_rate"]),
                variant["revenue"],
                "control"
                if lift is None and variant["key"] == document.get("control")
                else (
                    NONE_SHOWN
                    if lift is None
                    else f"{percent(lift['estimate'], True)} "
                    f"[{percent(lift['ci_low'], True)}, {percent(lift['ci_high'], True)}]"
                ),
                percent(variant["chance_to_win"]),
                NONE_SHOWN if variant["p_value"] is None else f"{variant['p_value']:.4f}",
                NONE_SHOWN
                if not sequential
                else f"[{percent(sequential['ci_low'], True)}, {percent(sequential['ci_high'], True)}]"
                + (" conclusive" if sequential["conclusive"] else ""),
            ]
        )
    holdout = document.get("holdout")
    if holdout is not None:
        lift = holdout["lift"]
        rows.append(
            [
                "holdout",
                holdout["exposures"],
                holdout["conversions"],
                percent(holdout["conversions"] / holdout["exposures"])
                if holdout["exposures"]
                else NONE_SHOWN,
                holdout["revenue"],
                NONE_SHOWN
                if lift is None
                else f"treated {percent(lift['estimate'], True)} "
                f"[{percent(lift['ci_low'], True)}, {percent(lift['ci_high'], True)}]",
                "",
                "",
                f"incremental: {holdout['incremental_conversions']} conversions, "
                f"{holdout['incremental_revenue']} revenue"
                if holdout["incremental_conversions"] is not None
                else "",
            ]
        )
    return rows


def results_panel(
    campaign: Campaign,
    document: dict[str, Any],
    series: list[dict[str, Any]],
    promotion: Any,
) -> SafeString:
    decision = document["decision"]
    srm = document["srm"]
    verdict = VERDICTS.get(decision["status"], decision["status"])
    if decision["winner"]:
        verdict += f": {decision['winner']} wins"
    promoted = (
        format_html(
            '<p class="promotion">Promoted <strong>{}</strong> on {}: every new shopper gets '
            "it. Use “Undo promotion” to restore the split.</p>",
            promotion.winner,
            promotion.decided_at.strftime("%Y-%m-%d %H:%M"),
        )
        if promotion is not None
        else ""
    )
    return format_html(
        '<div class="results-panel">'
        '<p class="verdict"><strong>Verdict: {}</strong> <small>({})</small></p>'
        '<p class="srm">Sample ratio check: <strong>{}</strong> (p = {})</p>{}{}'
        "<h4>Cumulative lift over control</h4>{}"
        "<p><small>Computed {}{}. Goal: {}. Lift with its 95% interval; the sequential "
        "interval stays valid however often you look.</small></p></div>",
        verdict,
        decision["method"],
        "ok" if srm["ok"] else "FAILED",
        srm["p_value"],
        table(
            [
                "Arm",
                "Exposures",
                "Conversions",
                "Rate",
                "Revenue",
                "Lift [95% CI]",
                "Chance to win",
                "p-value",
                "Sequential interval",
            ],
            arm_rows(document),
            "results-table",
        ),
        promoted,
        lift_chart(series),
        (document.get("computed_at") or "")[:16].replace("T", " ") + " UTC",
        "; frozen at completion" if campaign.results is not None else "",
        document["goal"],
    )


def lift_chart(series: list[dict[str, Any]]) -> SafeString:
    """Each arm's lift estimate over time as a line inside its 95% interval band."""
    points = [(datetime.fromisoformat(p["at"]), p["arms"]) for p in series if p["arms"]]
    if len(points) < 2:
        return format_html(
            "<p>{}</p>", "The chart appears after two computations with a lift to show."
        )
    keys = list(dict.fromkeys(key for _, arms in points for key in arms))
    values = [
        bound
        for _, arms in points
        for lift in arms.values()
        for bound in (lift["ci_low"], lift["ci_high"], lift["estimate"])
        if bound is not None
    ]
    low, high = min([*values, 0.0]), max([*values, 0.0])
    if high - low < 1e-9:
        high = low + 0.01
    start, end = points[0][0], points[-1][0]
    span = max((end - start).total_seconds(), 1.0)
    inner_w = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    inner_h = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def x(at: datetime) -> float:
        return MARGIN_LEFT + inner_w * (at - start).total_seconds() / span

    def y(value: float) -> float:
        return MARGIN_TOP + inner_h * (high - value) / (high - low)

    shapes = []
    legend = []
    for index, key in enumerate(keys):
        colour = ARM_COLOURS[index % len(ARM_COLOURS)]
        arm_points = [(at, arms[key]) for at, arms in points if key in arms]
        band_points = [
            (at, lift) for at, lift in arm_points if None not in (lift["ci_low"], lift["ci_high"])
        ]
        upper = [f"{x(at):.1f},{y(lift['ci_high']):.1f}" for at, lift in band_points]
        lower = [f"{x(at):.1f},{y(lift['ci_low']):.1f}" for at, lift in reversed(band_points)]
        line = [
            f"{x(at):.1f},{y(lift['estimate']):.1f}"
            for at, lift in arm_points
            if lift["estimate"] is not None
        ]
        shapes.append(
            format_html(
                '<polygon points="{}" fill="{}" fill-opacity="0.15" stroke="none"/>'
                '<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>',
                " ".join(upper + lower),
                colour,
                " ".join(line),
                colour,
            )
        )
        legend.append(
            format_html(
                '<rect x="{}" y="{}" width="10" height="10" fill="{}"/>'
                '<text x="{}" y="{}" font-size="11">{}</text>',
                MARGIN_LEFT + 8 + index * 110,
                MARGIN_TOP + 2,
                colour,
                MARGIN_LEFT + 22 + index * 110,
                MARGIN_TOP + 11,
                key,
            )
        )
    zero = y(0.0)
    return format_html(
        '<svg class="lift-chart" role="img" aria-label="Cumulative lift over time" '
        'xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
        '<rect x="0" y="0" width="{w}" height="{h}" fill="#fff"/>'
        '<line x1="{left}" x2="{right}" y1="{zero}" y2="{zero}" stroke="#888" '
        'stroke-dasharray="4 3"/>'
        '<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#444"/>'
        '<text x="{label_x}" y="{top_label}" font-size="11" text-anchor="end">{high}</text>'
        '<text x="{label_x}" y="{zero_label}" font-size="11" text-anchor="end">0%</text>'
        '<text x="{label_x}" y="{bottom}" font-size="11" text-anchor="end">{low}</text>'
        '<text x="{left}" y="{date_y}" font-size="11">{start}</text>'
        '<text x="{right}" y="{date_y}" font-size="11" text-anchor="end">{end}</text>'
        "{shapes}{legend}</svg>",
        w=CHART_WIDTH,
        h=CHART_HEIGHT,
        left=MARGIN_LEFT,
        right=CHART_WIDTH - MARGIN_RIGHT,
        top=MARGIN_TOP,
        bottom=CHART_HEIGHT - MARGIN_BOTTOM,
        zero=f"{zero:.1f}",
        label_x=MARGIN_LEFT - 6,
        top_label=MARGIN_TOP + 10,
        zero_label=f"{zero + 4:.1f}",
        high=percent(high, True),
        low=percent(low, True),
        date_y=CHART_HEIGHT - MARGIN_BOTTOM + 18,
        start=start.strftime("%Y-%m-%d %H:%M"),
        end=end.strftime("%Y-%m-%d %H:%M"),
        shapes=format_html_join("", "{}", ((s,) for s in shapes)),
        legend=format_html_join("", "{}", ((s,) for s in legend)),
    )


def variant_previews(campaign: Campaign) -> SafeString:
    """Each variant's template rendered on its channel (every channel for "all")."""
    templates = {
        t.key: t
        for t in Template.objects.filter(store=campaign.store).select_related("published_version")
    }
    blocks = []
    for variant in campaign.variants or [{"key": "(no variants)"}]:
        key = variant.get("template_key") or campaign.template_key
        channel = variant.get("channel") or campaign.channel
        channels = [c for c in CHANNEL_FIELDS if c != "all"] if channel == "all" else [channel]
        template = templates.get(key) if key else None
        if template is None or template.published_version is None:
            blocks.append(
                format_html(
                    '<div class="variant-preview"><h4>{}</h4><p>{}</p></div>',
                    variant["key"],
                    "No template: the shopper gets the default content."
                    if not key
                    else f"Template {key!r} has no published version.",
                )
            )
            continue
        rendered = []
        for name in channels:
            try:
                content = preview_version(template, template.published_version, channel=name)
            except RenderError as error:
                rendered.append(format_html("<h5>{}</h5><p>Render error: {}</p>", name, error))
                continue
            rendered.append(channel_preview(name, content))
        blocks.append(
            format_html(
                '<div class="variant-preview"><h4>{} — {} v{}</h4>{}</div>',
                variant["key"],
                key,
                template.published_version.number,
                format_html_join("", "{}", ((r,) for r in rendered)),
            )
        )
    return format_html_join("", "{}", ((b,) for b in blocks))


def channel_preview(channel: str, content: dict[str, Any]) -> SafeString:
    """An HTML body in a sandboxed frame (no scripts, no same origin); the rest as text."""
    parts = []
    for field, value in content.items():
        if field == "html":
            parts.append(
                format_html(
                    '<iframe sandbox="" srcdoc="{}" title="{} html" '
                    'style="width:100%;max-width:40rem;height:14rem;border:1px solid #ccc">'
                    "</iframe>",
                    value,
                    channel,
                )
            )
        else:
            parts.append(format_html("<div><strong>{}:</strong> {}</div>", field, value))
    return format_html(
        '<div class="channel-preview"><h5>{}</h5>{}</div>',
        channel,
        format_html_join("", "{}", ((p,) for p in parts)),
    )
