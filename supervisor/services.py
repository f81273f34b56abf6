"""Supervisor writes: trend samples, and supervisors' actions on agents and items.

The actions check the supervisor's scope (the queues they supervise; admins everything) and then
call the one routing service that does the work, which records who did it in ``ActionLog`` and
tells consoles and dashboards. Nothing here changes routing state by itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from omnirouter.errors import DomainError, Forbidden, NotFound
from omnirouter.roles import is_admin, is_supervisor
from presence.models import Agent, PresenceStatus
from routing import services as routing_services
from routing.models import AgentWork, Queue, QueueMembership, WorkItem
from routing.selectors import supervised_queues
from supervisor.models import QueueSample
from supervisor.selectors import all_queues_scope, queue_metrics

# --- Trend samples -------------------------------------------------------------------------------


def record_queue_samples(*, now: datetime | None = None) -> int:
    """Store one sample per queue (backlog, longest wait, today's service-level counts) and drop
    samples older than the retention period. Returns how many samples were written.

    Runs every ``SUPERVISOR_SAMPLE_INTERVAL_SECONDS`` (Celery beat, or the embedded loop). Two
    runs in the same minute only add a second point to the chart: harmless, so no locking.
    """
    now = now or timezone.now()
    rows = queue_metrics(all_queues_scope(), now)
    samples = [
        QueueSample(
            queue_id=row["id"],
            at=now,
            waiting=row["waiting"],
            longest_wait_seconds=row["longest_wait_seconds"],
            answered_today=row["answered_today"],
            answered_within_target_today=row["answered_within_target_today"],
            abandoned_after_target_today=row["abandoned_after_target_today"],
        )
        for row in rows
    ]
    cutoff = now - timedelta(days=settings.SUPERVISOR_SAMPLE_RETENTION_DAYS)
    with transaction.atomic():
        QueueSample.objects.bulk_create(samples)
        QueueSample.objects.filter(at__lt=cutoff).delete()
    return len(samples)


# --- Actions -------------------------------------------------------------------------------------


def _require_supervisor(actor: Any) -> None:
    if not is_supervisor(actor):
        raise Forbidden(_("Only supervisors and administrators may do this."), "forbidden")


def _item_in_scope(actor: Any, item_id: int) -> WorkItem:
    item = WorkItem.objects.filter(pk=item_id).first()
    if item is None or not supervised_queues(actor).filter(pk=item.queue_id).exists():
        # An item in someone else's queue is reported as missing, as elsewhere in the API.
        raise NotFound(
            _("No work item %(id)s in a queue you supervise.") % {"id": item_id}, "not_found"
        )
    return item


def _agent_in_scope(actor: Any, agent_id: int) -> Agent:
    agent = Agent.objects.select_related("presence_config").filter(pk=agent_id).first()
    if agent is None:
        raise NotFound(_("No agent %(id)s.") % {"id": agent_id}, "not_found")
    if is_admin(actor):
        return agent
    member_of_mine = QueueMembership.objects.filter(
        agent_id=agent_id, queue__in=supervised_queues(actor)
    ).exists()
    if not member_of_mine:
        raise NotFound(
            _("No agent %(id)s in a queue you supervise.") % {"id": agent_id}, "not_found"
        )
    return agent


def supervisor_set_presence(
    *, actor: Any, agent_id: int, status_id: int | None, now: datetime | None = None
) -> Agent:
    """Set an agent's presence status (``None``: offline) on a supervisor's behalf.

    The agent must be a member of a queue the actor supervises. A supervisor may set any status,
    also one the agent could not pick themselves (e.g. send an idle agent offline). Logged with
    the actor by ``set_presence``.
    """
    _require_supervisor(actor)
    agent = _agent_in_scope(actor, agent_id)
    status = None
    if status_id is not None:
        status = PresenceStatus.objects.filter(pk=status_id).first()
        if status is None:
            raise DomainError(_("No presence status %(id)s.") % {"id": status_id}, "status")
    return routing_services.set_presence(
        agent=agent, status=status, now=now, actor=actor, check_allowed=False
    )


def supervisor_move_item(
    *, actor: Any, item_id: int, queue_id: int, now: datetime | None = None
) -> WorkItem:
    """Move a waiting or offered item to another queue. The actor must supervise both queues."""
    _require_supervisor(actor)
    item = _item_in_scope(actor, item_id)
    target = supervised_queues(actor).select_related("routing_config").filter(pk=queue_id).first()
    if target is None:
        if Queue.objects.filter(pk=queue_id).exists():
            raise Forbidden(_("You do not supervise queue %(id)s.") % {"id": queue_id}, "forbidden")
        raise NotFound(_("No queue %(id)s.") % {"id": queue_id}, "queue")
    if target.pk == item.queue_id:
        raise DomainError(_("The item is already in that queue."), "same_queue")
    return routing_services.move_item(item_id=item.pk, queue=target, actor=actor, now=now)


def supervisor_push_item(
    *, actor: Any, item_id: int, agent_id: int, now: datetime | None = None
) -> AgentWork:
    """Offer a waiting item to a chosen agent, past the routing model (capacity still holds).

    The item must be in a queue the actor supervises, and the agent a member of one.
    """
    _require_supervisor(actor)
    item = _item_in_scope(actor, item_id)
    agent = _agent_in_scope(actor, agent_id)
    return routing_services.push_item_to_agent(item_id=item.pk, agent=agent, actor=actor, now=now)


def supervisor_transfer_work(
    *, actor: Any, work_id: int, agent_id: int, note: str = "", now: datetime | None = None
) -> AgentWork:
    """Hand an agent's accepted work to another agent (a direct offer, as the agent's own
    transfer to a person: the engine's hard rules decide whether they can take it now). The
    work must be in a queue the actor supervises and the new agent a member of one."""
    _require_supervisor(actor)
    work = (
        AgentWork.objects.select_related("agent__presence_config", "agent__user")
        .filter(pk=work_id, queue__in=supervised_queues(actor))
        .first()
    )
    if work is None:
        raise NotFound(
            _("No agent work %(id)s in a queue you supervise.") % {"id": work_id}, "not_found"
        )
    to_agent = _agent_in_scope(actor, agent_id)
    return routing_services.transfer_work_to_agent(
        work_id=work.pk, agent=work.agent, to_agent=to_agent, note=note, actor=actor, now=now
    )
