"""How a routing pass gets requested after an event, in each run mode.

- ``celery``: one ``routing.route`` task is sent (by name) after commit. Requests coalesce on a
  Redis key so a burst of events queues one pass, not thousands; the task clears the key before
  it reads anything, so an event that commits while a pass runs always gets a pass of its own.
- ``embedded``: the in-process loop (``omnirouter.embedded``) is woken after commit.
- ``manual``: nothing happens (tests that drive passes themselves).
The sweep re-drives anything a crash between commit and enqueue left behind.

This module imports neither the tasks nor the loop: the task is sent by name, the loop is woken
through ``omnirouter.wakeup``, so services -> dispatch is the end of the line.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import redis
from celery import current_app
from django.conf import settings
from django.db import transaction

from omnirouter import wakeup

logger = logging.getLogger(__name__)

PENDING_KEY = "omnirouter:routing:pass-pending"
PENDING_TTL_SECONDS = 5
ROUTE_TASK = "routing.route"


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def request_routing() -> None:
    """Ask for a routing pass once the current transaction commits."""
    mode = settings.ROUTING_MODE
    if mode == "celery":
        transaction.on_commit(_queue_pass)
    elif mode == "embedded":
        transaction.on_commit(_wake_loop)


def _wake_loop() -> None:
    wakeup.wake(wakeup.ROUTING)


def _queue_pass() -> None:
    try:
        if not _redis().set(PENDING_KEY, "1", nx=True, ex=PENDING_TTL_SECONDS):
            return
    except redis.RedisError:
        logger.warning("routing: could not coalesce; queueing a pass anyway", exc_info=True)
    current_app.send_task(ROUTE_TASK)


def clear_pending() -> None:
    """Called by the task before it reads state: later events then queue a new pass."""
    try:
        _redis().delete(PENDING_KEY)
    except redis.RedisError:
        logger.warning("routing: could not clear the pending flag", exc_info=True)
