"""How an outbound send gets run after commit, in each run mode (as ``routing.dispatch``).

- ``celery``: the ``messaging.send_outbound`` task is sent (by name) after commit.
- ``embedded``: the in-process loop (``omnirouter.embedded``) is woken and sends every message
  that is due (``Message.next_attempt_at``), retries included, at once.
- ``manual``: nothing happens (tests call the task or the service themselves).
Sends lost between commit and enqueue (a crash, a lost retry) are re-driven by the periodic
``messaging.maintenance`` task from ``Message.next_attempt_at``.
"""

from __future__ import annotations

from celery import current_app
from django.conf import settings
from django.db import transaction

from omnirouter import wakeup

SEND_TASK = "messaging.send_outbound"


def queue_send(message_id: int) -> None:
    """Send the outbound message once the current transaction commits."""
    mode = settings.ROUTING_MODE
    if mode == "celery":
        transaction.on_commit(lambda: current_app.send_task(SEND_TASK, args=[message_id]))
    elif mode == "embedded":
        transaction.on_commit(lambda: wakeup.wake(wakeup.SENDS))
