"""After-commit nudges are best effort: a committed write is never reported as failed.

A routing pass request, an outbound send enqueue or a realtime push runs after the transaction
commits; if the broker (Redis) is down it fails, and raising would turn a committed write into a
500 the client retries (a duplicate item, a re-sent webhook). The database already knows what is
due (waiting items, due sends), and the periodic sweep and maintenance re-drive it, so a failed
nudge is logged, counted (``omnirouter_nudge_failures_total{hook}``) and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction

logger = logging.getLogger(__name__)

ROUTING_REQUEST = "routing_pass"
OUTBOUND_SEND = "outbound_send"
REALTIME = "realtime"

# For Celery publishes from a nudge: one quick retry (a pooled connection gone stale after a
# Redis restart), not Celery's default of three with backoff: the caller waits for the nudge, and
# the sweep covers a failure.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}


def run(hook: str, nudge: Callable[[], object]) -> None:
    """Run ``nudge`` now; log and count any failure instead of raising it."""
    try:
        nudge()
    except Exception:
        failed(hook)


def failed(hook: str) -> None:
    """Log (with the current exception) and count one failed nudge."""
    from omnirouter.metrics import NUDGE_FAILURES

    NUDGE_FAILURES.labels(hook).inc()
    logger.warning("%s nudge failed after commit; the sweep re-drives it", hook, exc_info=True)


def on_commit(hook: str, nudge: Callable[[], object]) -> None:
    """Run ``nudge`` once the current transaction commits, best effort (see ``run``)."""
    transaction.on_commit(lambda: run(hook, nudge))
