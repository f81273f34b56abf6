"""How a routing pass gets requested after an event, in each run mode.

- ``celery``: one ``routing.route`` task is sent (by name) after commit. Requests coalesce on a
  Redis key so a burst of events queues one pass, not thousands; the task clears the key before
  it reads anything, so an event that commits while a pass runs always gets a pass of its own.
- ``embedded``: the in-process loop (``omnirouter.embedded``) is woken after commit.
- ``manual``: nothing happens (tests that drive passes themselves).
The sweep runs a pass every time, so anything a crash between commit and enqueue left behind,
or a nudge that failed because the broker was down (logged and counted, never raised: see
``omnirouter.nudges``), is routed within one sweep interval of the broker coming back.

This module imports neither the tasks nor the loop: the task is sent by name, the loop is woken
through ``omnirouter.wakeup``, so services -> dispatch is the end of the line.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import redis
from celery import current_app
from django.conf import settings

from omnirouter import nudges, wakeup

logger = logging.getLogger(__name__)

PENDING_KEY = "omnirouter:routing:pass-pending"
PENDING_TTL_SECONDS = 5
ROUTE_TASK = "routing.route"


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    # Short timeouts: this runs inside a request, after commit; an unreachable Redis must not
    # hold the answer for long (the nudge is best effort).
    return redis.Redis.from_url(
        settings.CELERY_BROKER_URL, socket_connect_timeout=1, socket_timeout=1
    )


def request_routing() -> None:
    """Ask for a routing pass once the current transaction commits."""
    mode = settings.ROUTING_MODE
    if mode == "celery":
        nudges.on_commit(nudges.ROUTING_REQUEST, _queue_pass)
    elif mode == "embedded":
        nudges.on_commit(nudges.ROUTING_REQUEST, _wake_loop)


def _wake_loop() -> None:
    wakeup.wake(wakeup.ROUTING)


def _queue_pass() -> None:
    try:
        if not _redis().set(PENDING_KEY, "1", nx=True, ex=PENDING_TTL_SECONDS):
            return
    except redis.RedisError:
        logger.warning("routing: could not coalesce; queueing a pass anyway", exc_info=True)
    current_app.send_task(ROUTE_TASK, retry_policy=nudges.PUBLISH_RETRY_POLICY)


def clear_pending() -> None:
    """Called by the task before it reads state: later events then queue a new pass."""
    try:
        _redis().delete(PENDING_KEY)
    except redis.RedisError:
        logger.warning("routing: could not clear the pending flag", exc_info=True)
