"""The pure core of campaign A/B tests: who sees which arm, and what the numbers say.

No models, no database, no clock: callers pass plain data in and persist what comes out.
How the statistics work is written up in docs/campaigns.md.
"""
