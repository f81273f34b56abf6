"""Celery tasks: idempotent nudges that only call services."""

from __future__ import annotations

from celery import shared_task

from messaging import services


@shared_task(
    name="messaging.send_outbound", bind=True, acks_late=True, ignore_result=True, max_retries=None
)
def send_outbound(self, message_id: int) -> str:
    """Send one outbound message. Already sent, failed or being sent elsewhere: nothing happens.
    Transient provider failures retry with exponential backoff; the attempt count and the
    give-up point live on the message (``MESSAGING_SEND_MAX_ATTEMPTS``)."""
    outcome = services.deliver_outbound(message_id=message_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


@shared_task(name="messaging.maintenance", acks_late=True, ignore_result=True)
def maintenance() -> dict[str, int]:
    """End idle conversations, bring conversations in step with routing, re-drive lost sends."""
    return services.run_maintenance()
