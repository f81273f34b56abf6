"""How a routing pass gets requested after an event, in each run mode.

- ``celery``: one ``routing.route`` task is queued after commit. Requests coalesce on a Redis key
  so a burst of events queues one pass, not thousands; the task clears the key before it reads
  anything, so an event that commits while a pass runs always gets a pass of its own.
- ``embedded``: the in-process routing thread is woken after commit.
- ``manual``: nothing happens (tests that drive passes themselves).
The sweep re-drives anything a crash between commit and enqueue left behind.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import redis
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

PENDING_KEY = "omnirouter:routing:pass-pending"
PENDING_TTL_SECONDS = 5


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def request_routing() -> None:
    """Ask for a routing pass once the current transaction commits."""
    mode = settings.ROUTING_MODE
    if mode == "celery":
        transaction.on_commit(_queue_pass)
    elif mode == "embedded":
        from routing import runner

        transaction.on_commit(runner.wake)


def _queue_pass() -> None:
    from routing.tasks import route

    try:
        if not _redis().set(PENDING_KEY, "1", nx=True, ex=PENDING_TTL_SECONDS):
            return
    except redis.RedisError:
        logger.warning("routing: could not coalesce; queueing a pass anyway", exc_info=True)
    route.delay()


def clear_pending() -> None:
    """Called by the task before it reads state: later events then queue a new pass."""
    try:
        _redis().delete(PENDING_KEY)
    except redis.RedisError:
        logger.warning("routing: could not clear the pending flag", exc_info=True)
