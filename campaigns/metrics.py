"""The experiments' Prometheus metrics (exposed on /metrics)."""

from prometheus_client import Counter, Histogram

RESULTS_SECONDS = Histogram(
    "campaign_results_seconds",
    "Time to compute one campaign's results snapshot",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RESULTS_REFRESHED = Counter(
    "campaign_results_refreshed_total", "Results snapshots stored, by what asked", ["trigger"]
)
RESULTS_FAILED = Counter(
    "campaign_results_failed_total", "Results computations that raised, by what asked", ["trigger"]
)
ALLOCATION_CHANGES = Counter(
    "campaign_allocation_changes_total",
    "Changes of a live split: bandit re-weighting, promotions and their undos",
    ["reason"],
)
