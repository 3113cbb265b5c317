"""The analytics figures as CSV (docs/analytics.md, "Export"): one table per report, the
same numbers as the JSON, for the API (``?format=csv``) and the admin.

Spreadsheets run a cell that starts with = + - @ (or a tab / carriage return) as a
formula, so such a cell is written with a leading apostrophe (OWASP "CSV injection").
"""

import csv
import io
from collections.abc import Iterable
from typing import Any

FIGURES = (
    "sent",
    "delivered",
    "opened",
    "clicked",
    "converted",
    "credited",
    "delivery_rate",
    "open_rate",
    "click_rate",
    "conversion_rate",
)
# Per-currency figures: one column per currency, named "revenue_EUR".
PER_CURRENCY = ("revenue", "revenue_per_send", "cost", "cost_per_conversion")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _currency_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (name, currency)
        for name in PER_CURRENCY
        for currency in sorted({c for row in rows for c in (row.get(name) or {})})
    ]


def _metrics_table(
    label: str, rows: list[dict[str, Any]], totals: dict[str, Any]
) -> list[list[Any]]:
    per_currency = _currency_columns([*rows, totals])
    header = [label, *FIGURES, *(f"{name}_{currency}" for name, currency in per_currency)]

    def line(name: Any, row: dict[str, Any]) -> list[Any]:
        return [
            name,
            *(row.get(figure) for figure in FIGURES),
            *((row.get(field) or {}).get(currency) for field, currency in per_currency),
        ]

    return [header, *(line(row[label], row) for row in rows), line("total", totals)]


def _funnel_table(report: dict[str, Any]) -> list[list[Any]]:
    table: list[list[Any]] = [["step", "reason", "count"]]
    for step in report["funnel"]:
        table.append([step["step"], "", step["count"]])
        table.extend(["suppressed", r["reason"], r["count"]] for r in step.get("reasons", []))
    return table


def table_of(report: dict[str, Any]) -> list[list[Any]]:
    """The rows of a performance, channels, campaigns or funnel report."""
    if "funnel" in report:
        return _funnel_table(report)
    for key, label in (("series", "period"), ("channels", "channel"), ("campaigns", "campaign")):
        if key in report:
            return _metrics_table(label, report[key], report["totals"])
    raise ValueError("not an analytics report")


def render_csv(rows: Iterable[Iterable[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return out.getvalue()
