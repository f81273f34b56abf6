"""The state changes several services share: end an agent work (freeing capacity), put an item
back in line, requeue it in another queue, apply a presence status. Callers hold the locks.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db.models import (
    DecimalField,
    F,
)
from django.db.models.functions import Greatest, Round
from django.utils.translation import gettext as _

from omnirouter import realtime
from omnirouter.errors import Conflict
from presence.models import Agent, PresenceStatus
from routing import engine
from routing.dispatch import request_routing
from routing.models import (
    LIVE_STATES,
    AgentWork,
    AgentWorkState,
    Queue,
    QueueMembership,
    ServiceChannel,
    WorkItem,
    WorkItemStatus,
)
from routing.selectors import hard_refusal, work_payload
from routing.services import records
from routing.services.events import presence_message, queue_changed, work_changed

logger = logging.getLogger(__name__)

# The note on an offer returned because the agent's new status does not cover its channel.
STRANDED_NOTE = "Returned to queue: agent no longer available for this channel."


def size_from(config: Any, channel: ServiceChannel) -> tuple[int | None, int | None]:
    if config.size_units:
        return config.size_units, None
    if config.size_percent:
        return None, config.size_percent
    return channel.default_size_units, None


def exact_units(expression: Any) -> Round:
    """A load computed in SQL, to the hundredth of a unit it is counted in (``engine.Units``).
    Exact already on PostgreSQL (numeric); SQLite (embedded) adds decimals in floating point,
    where a full agent's load could come out 1e-16 over capacity and fail the CHECK."""
    return Round(expression, 2, output_field=_UNITS)


def capacity_in_force(configured: Any, held: Any) -> Greatest:
    """An agent's capacity in force: the configured one, never below what they hold."""
    return Greatest(configured, held, output_field=_UNITS)


_UNITS = DecimalField(max_digits=7, decimal_places=2)


def end_work(
    work: AgentWork, state: str, *, now: datetime, reason: str = "", note: str = ""
) -> None:
    """End a live agent work and free the agent's capacity (agent row already locked)."""
    was = work.state
    AgentWork.objects.filter(pk=work.pk).update(
        state=state, ended_at=now, decline_reason=reason, end_note=note
    )
    work.state, work.ended_at, work.decline_reason, work.end_note = state, now, reason, note
    if was in LIVE_STATES:
        Agent.objects.filter(pk=work.agent_id).update(
            used_capacity=exact_units(F("used_capacity") - work.units),
            open_count=F("open_count") - 1,
            capacity=capacity_in_force(
                F("configured_capacity"), exact_units(F("used_capacity") - work.units)
            ),
        )
        realtime.publish(*presence_message(work.agent_id))
    work_changed(work)


def return_item(item_id: int) -> None:
    """Put an item back in line: it keeps its place (its original time in queue)."""
    WorkItem.objects.filter(
        id=item_id, status__in=[WorkItemStatus.OFFERED, WorkItemStatus.ASSIGNED]
    ).update(status=WorkItemStatus.WAITING)
    queue_id = WorkItem.objects.filter(id=item_id).values_list("queue_id", flat=True).first()
    if queue_id:
        queue_changed(queue_id)


def requeue(item_id: int, queue: Queue, *, now: datetime, keep_age: bool = False) -> None:
    config = queue.routing_config
    item = WorkItem.objects.select_related("channel").get(pk=item_id)
    size_units, size_percent = size_from(config, item.channel)
    item.queue = queue
    item.status = WorkItemStatus.WAITING
    item.routing_priority = config.routing_priority
    item.size_units, item.size_percent = size_units, size_percent
    if not keep_age:
        item.enqueued_at = now
    item.save(
        update_fields=[
            "queue",
            "status",
            "routing_priority",
            "size_units",
            "size_percent",
            "enqueued_at",
        ]
    )
    queue_changed(queue.pk)


def apply_status(agent_id: int, status_id: int | None, *, now: datetime) -> None:
    """Set the status (agent row locked) and return offers the new status no longer covers."""
    Agent.objects.filter(pk=agent_id).update(status_id=status_id, status_changed_at=now)
    status = PresenceStatus.objects.filter(pk=status_id).first() if status_id else None
    keep_channels: set[int] = set()
    if status is not None and status.is_online:
        keep_channels = set(status.channels.values_list("id", flat=True))
    stranded = list(
        AgentWork.objects.select_for_update(of=("self",))
        .filter(agent_id=agent_id, state=AgentWorkState.PUSHED)
        .exclude(channel_id__in=keep_channels)
        .order_by("id")
    )
    for work in stranded:
        end_work(
            work,
            AgentWorkState.CANCELED,
            now=now,
            note=STRANDED_NOTE,
        )
        return_item(work.item_id)
    realtime.publish(*presence_message(agent_id))
    # Supervisors listen to queue groups, not to each agent: a status change shows on the
    # dashboards of every queue the agent serves (they coalesce these into one refresh).
    for queue_id in QueueMembership.objects.filter(agent_id=agent_id).values_list(
        "queue_id", flat=True
    ):
        queue_changed(queue_id)
    if stranded or (status is not None and status.is_online):
        request_routing()


def refuse_unless_able(item: WorkItem, agent: Agent, *, now: datetime) -> None:
    """``Conflict`` (the engine's reason as code: offline, channel, not_member, skill,
    no_console, capacity, pacing) unless ``agent`` could take ``item`` now
    (``selectors.hard_refusal``)."""
    refusal = hard_refusal(item, agent, now=now)
    if refusal is not None:
        code, text = refusal
        raise Conflict(
            _("%(agent)s cannot take this item: %(reason)s.") % {"agent": agent, "reason": text},
            code,
        )


def offer_directly(
    item: WorkItem, agent: Agent, *, now: datetime, reason: dict[str, Any]
) -> AgentWork:
    """Offer a waiting ``item`` to ``agent`` past the routing model (a supervisor's push, a
    transfer to a person): accepted at once for an auto-accept agent. The caller holds the
    agent's and the item's locks and has checked ``refuse_unless_able``."""
    units = engine.size_for(item, agent.capacity)
    config = item.queue.routing_config
    is_auto = agent.presence_config.auto_accept
    work = AgentWork.objects.create(
        item=item,
        agent=agent,
        queue_id=item.queue_id,
        channel_id=item.channel_id,
        state=AgentWorkState.OPENED if is_auto else AgentWorkState.PUSHED,
        units=units,
        pushed_at=now,
        enqueued_at=item.enqueued_at,
        expires_at=None if is_auto else now + timedelta(seconds=config.push_timeout_seconds),
        opened_at=now if is_auto else None,
        auto_accepted=is_auto,
        routing_reason=reason,
    )
    WorkItem.objects.filter(pk=item.pk).update(
        status=WorkItemStatus.ASSIGNED if is_auto else WorkItemStatus.OFFERED
    )
    Agent.objects.filter(pk=agent.pk).update(
        used_capacity=exact_units(F("used_capacity") + units),
        open_count=F("open_count") + 1,
        last_assigned_at=now,
    )
    if is_auto:
        records.item_changed_one(records.ACCEPTED, item, agent_id=agent.pk, now=now)
    realtime.publish(realtime.agent_group(agent.pk), realtime.OFFER, work_payload(work))
    realtime.publish(*presence_message(agent.pk))
    queue_changed(item.queue_id)
    return work
