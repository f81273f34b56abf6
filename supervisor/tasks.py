"""Celery tasks of the supervisor app: idempotent nudges that only call services."""

from celery import shared_task

from supervisor import services


@shared_task(name="supervisor.sample_queues", acks_late=True, ignore_result=True)
def sample_queues() -> int:
    """Record one trend sample per queue (beat: every SUPERVISOR_SAMPLE_INTERVAL_SECONDS)."""
    return services.record_queue_samples()
