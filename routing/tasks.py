"""Celery tasks: idempotent nudges that only call services."""

from celery import shared_task

from routing import dispatch, services


@shared_task(name="routing.route", acks_late=True, ignore_result=True)
def route() -> int:
    """Run one routing pass; returns how many offers it made."""
    dispatch.clear_pending()
    return services.route_waiting_work().offers


@shared_task(name="routing.sweep", acks_late=True, ignore_result=True)
def sweep() -> None:
    """Expire offers, drop lost consoles, check capacity against live work, then route."""
    services.sweep()


@shared_task(name="routing.purge_idempotency_keys", acks_late=True, ignore_result=True)
def purge_idempotency_keys() -> int:
    """Forget intake idempotency keys past their retention."""
    return services.purge_intake_requests()


@shared_task(name="routing.exception_rules", acks_late=True, ignore_result=True)
def exception_rules() -> int:
    """Fire exception rules for the items they are due for (each rule once per item)."""
    return sum(services.run_exception_rules().values())
