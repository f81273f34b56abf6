"""Prometheus series, and the ``/metrics`` page that exposes them.

What a process exposes is what it saw itself, plus what the database tells at scrape time:

- Computed from the database at scrape time (true whichever process did the work): waiting items
  per queue, and how far the oldest pushed offer is past its deadline.
- Counted by the process that did the work: routing pass durations, offers made, sweep lag
  (deadline to expiry), after-commit nudge failures, open WebSocket connections. The web process
  counts its own requests and sockets; routing passes and the sweep run in Celery workers in
  production, so there these series stay at zero on the web's ``/metrics`` (the embedded run
  does everything in one process, so it exposes all of them). We do not use prometheus_client's
  multiprocess mode: web and worker containers do not share a directory, and pids collide
  across containers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
)

ROUTING_PASS_SECONDS = Histogram(
    "omnirouter_routing_pass_seconds",
    "Duration of one routing pass (all its batches).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OFFERS_MADE = Counter("omnirouter_offers", "Offers (and auto-accepted assignments) made.")
SWEEP_LAG_SECONDS = Histogram(
    "omnirouter_sweep_lag_seconds",
    "Seconds between an offer's deadline and the sweep expiring it.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
NUDGE_FAILURES = Counter(
    "omnirouter_nudge_failures",
    "After-commit nudges (routing pass request, outbound send, realtime push) that failed; "
    "the write had committed, the sweep re-drives the work.",
    ["hook"],
)
LIMIT_CHECKS_SKIPPED = Counter(
    "omnirouter_rate_limit_checks_skipped",
    "Rate-limit checks that let a request through because the cache (Redis) was unreachable.",
)
RULE_FIRINGS = Counter(
    "omnirouter_rule_firings",
    "Classification rules that matched an item, and exception rules that fired for one.",
    ["kind"],
)
RULE_FAILURES = Counter(
    "omnirouter_rule_failures",
    "Rules skipped because they raised at run time (intake and the exception run went on).",
    ["kind"],
)
WEBSOCKETS_OPEN = Gauge(
    "omnirouter_websocket_connections", "WebSocket connections open now.", ["consumer"]
)


def record_pass(seconds: float, offers: int) -> None:
    ROUTING_PASS_SECONDS.observe(seconds)
    if offers:
        OFFERS_MADE.inc(offers)


def record_expiry(deadline: datetime, expired_at: datetime) -> None:
    SWEEP_LAG_SECONDS.observe(max(0.0, (expired_at - deadline).total_seconds()))


def socket_opened(consumer: Any) -> None:
    """Call after ``accept()`` of a connection that stays open; pairs with ``socket_closed``."""
    consumer._metrics_kind = type(consumer).__name__
    WEBSOCKETS_OPEN.labels(consumer._metrics_kind).inc()


def socket_closed(consumer: Any) -> None:
    """Call from ``disconnect``; counts only connections ``socket_opened`` counted."""
    kind = getattr(consumer, "_metrics_kind", None)
    if kind is not None:
        consumer._metrics_kind = None
        WEBSOCKETS_OPEN.labels(kind).dec()
