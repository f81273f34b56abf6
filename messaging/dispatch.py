"""How an outbound send gets run after commit, in each run mode (as ``routing.dispatch``).

- ``celery``: the ``messaging.send_outbound`` task is sent (by name) after commit.
- ``embedded``: the in-process loop (``omnirouter.embedded``) is woken and sends every message
  that is due (``Message.next_attempt_at``), retries included, at once.
- ``manual``: nothing happens (tests call the task or the service themselves).
Sends lost between commit and enqueue (a crash, a lost retry) are re-driven by the periodic
``messaging.maintenance`` task from ``Message.next_attempt_at``; so are sends whose enqueue failed
because the broker was down (logged and counted, never raised: see ``omnirouter.nudges``).
"""

from __future__ import annotations

from celery import current_app
from django.conf import settings

from omnirouter import nudges, wakeup

SEND_TASK = "messaging.send_outbound"


def queue_send(message_id: int) -> None:
    """Send the outbound message once the current transaction commits."""
    mode = settings.ROUTING_MODE
    if mode == "celery":
        nudges.on_commit(
            nudges.OUTBOUND_SEND,
            lambda: current_app.send_task(
                SEND_TASK, args=[message_id], retry_policy=nudges.PUBLISH_RETRY_POLICY
            ),
        )
    elif mode == "embedded":
        nudges.on_commit(nudges.OUTBOUND_SEND, lambda: wakeup.wake(wakeup.SENDS))
