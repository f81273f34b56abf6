"""How an outbound send gets run after commit, in each run mode (as ``routing.dispatch``).

- ``celery``: the ``messaging.send_outbound`` task is queued after commit.
- ``embedded``: a short-lived thread in the web process sends it, sleeping between retries.
- ``manual``: nothing happens (tests call the task themselves).
Sends lost between commit and enqueue (a crash, a lost retry) are re-driven by the periodic
``messaging.maintenance`` task from ``Message.next_attempt_at``; so are sends whose enqueue failed
because the broker was down (logged and counted, never raised: see ``omnirouter.nudges``).
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections

from omnirouter import nudges

logger = logging.getLogger(__name__)


def queue_send(message_id: int) -> None:
    """Send the outbound message once the current transaction commits."""
    mode = settings.ROUTING_MODE
    if mode == "celery":
        from messaging.tasks import send_outbound

        nudges.on_commit(
            nudges.OUTBOUND_SEND,
            lambda: send_outbound.apply_async(
                (message_id,), retry_policy=nudges.PUBLISH_RETRY_POLICY
            ),
        )
    elif mode == "embedded":
        nudges.on_commit(nudges.OUTBOUND_SEND, lambda: _start_thread(message_id))


def _start_thread(message_id: int) -> None:
    threading.Thread(
        target=_send_embedded, args=(message_id,), name=f"send-{message_id}", daemon=True
    ).start()


def _send_embedded(message_id: int) -> None:
    from messaging import services

    try:
        while True:
            close_old_connections()
            outcome = services.deliver_outbound(message_id=message_id)
            if outcome.retry_in is None:
                return
            time.sleep(outcome.retry_in)
    except Exception:
        logger.exception("messaging: sending message %s failed", message_id)
    finally:
        close_old_connections()
