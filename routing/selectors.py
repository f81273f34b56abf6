"""Reads of routing state: payloads for consoles and the API, and why an item waits."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from omnirouter import roles
from presence.models import Agent
from routing.models import (
    LIVE_STATES,
    AgentWork,
    AgentWorkState,
    Queue,
    WorkItem,
    WorkItemStatus,
)


def caller_agent(user: Any) -> Agent:
    """The agent record of a caller the ``IsAgent`` permission has let through."""
    return cast(Agent, roles.agent_of(user))


def work_payload(work: AgentWork) -> dict[str, Any]:
    """What a console needs to show one offer or assignment."""
    item = work.item
    return {
        "id": work.pk,
        "item_id": work.item_id,
        "state": work.state,
        "subject": item.subject,
        "queue": work.queue.name,
        "queue_id": work.queue_id,
        "channel": work.channel.key,
        "channel_label": work.channel.label,
        "units": work.units,
        "pushed_at": work.pushed_at.isoformat(),
        "expires_at": work.expires_at.isoformat() if work.expires_at else None,
        "opened_at": work.opened_at.isoformat() if work.opened_at else None,
        "ended_at": work.ended_at.isoformat() if work.ended_at else None,
        "enqueued_at": work.enqueued_at.isoformat(),
        "why": (work.routing_reason or {}).get("text", ""),
        "payload": item.payload,
        "priority": item.priority,
    }


def live_work_for_agent(agent: Agent) -> QuerySet[AgentWork]:
    """The agent's offers and open work, oldest first."""
    return (
        AgentWork.objects.filter(agent=agent, state__in=LIVE_STATES)
        .select_related("item", "queue", "channel")
        .order_by("pushed_at", "id")
    )


# The agent fields a presence payload is made of (``presence_payload`` takes a row of them).
PRESENCE_FIELDS = (
    "id",
    "status_id",
    "status__name",
    "status__is_online",
    "status_changed_at",
    "capacity",
    "used_capacity",
    "open_count",
)


def presence_payloads(agent_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Status and load of agents, for consoles and dashboards (one query)."""
    rows = Agent.objects.filter(pk__in=agent_ids).values(*PRESENCE_FIELDS)
    return {r["id"]: presence_payload(r) for r in rows}


def presence_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """One agent's status and load from a row of ``PRESENCE_FIELDS`` (for callers that have
    just read or written those fields and need not read them again)."""
    return {
        "agent_id": row["id"],
        "status_id": row["status_id"],
        "status": row["status__name"] or "Offline",
        "online": bool(row["status__is_online"]),
        "status_since": row["status_changed_at"].isoformat() if row["status_changed_at"] else None,
        "capacity": row["capacity"],
        "used_capacity": row["used_capacity"],
        "open_count": row["open_count"],
    }


def explain_wait(item: WorkItem, *, now: datetime | None = None) -> str:
    """Why an item is still waiting, in words a supervisor can act on."""
    now = now or timezone.now()
    if item.status != WorkItemStatus.WAITING:
        return f"Not waiting: {item.get_status_display()}."
    members = Agent.objects.filter(memberships__queue_id=item.queue_id)
    if not members.exists():
        return "The queue has no members."
    online = members.filter(status__is_online=True, status__channels=item.channel_id)
    if not online.exists():
        return f"No member of {item.queue} is online for {item.channel}."
    grace = timedelta(seconds=settings.CONSOLE_GRACE_SECONDS)
    connected = online.filter(
        Q(presence_config__console_required=False) | Q(console_seen_at__gte=now - grace)
    )
    if not connected.exists():
        return "Members online for this channel have no live console."
    with_room = [a for a in connected if a.spare_capacity >= item.units_for(a.capacity)]
    if not with_room:
        return "Every member online for this channel is at capacity."
    refused = set(
        AgentWork.objects.filter(
            item=item, state__in=[AgentWorkState.DECLINED, AgentWorkState.TIMED_OUT]
        ).values_list("agent_id", flat=True)
    )
    if all(a.pk in refused for a in with_room):
        return (
            "Every agent with room has declined it or let it time out; it is offered again "
            f"after {settings.ROUTING_REOFFER_COOLDOWN_SECONDS} s."
        )
    if item.preferred_agent_id and item.preferred_until and item.preferred_until > now:
        return f"Held for its preferred agent until {item.preferred_until:%H:%M:%S}."
    return "Eligible agents have room: it will be offered on the next routing pass."


def visible_work_items(user: Any) -> QuerySet[WorkItem]:
    """Items a user may read and cancel through the API: admins all; supervisors those in the
    queues they supervise; intake clients those they created."""
    if roles.is_admin(user):
        return WorkItem.objects.all()
    visible = Q(queue__in=supervised_queues(user))
    if roles.is_intake(user):
        visible |= Q(created_by=user)
    return WorkItem.objects.filter(visible)


def supervised_queues(user: Any) -> QuerySet[Queue]:
    """Queues the user may watch and act on: all for admins, their own for supervisors."""
    if roles.is_admin(user):
        return Queue.objects.all()
    if roles.in_group(user, roles.SUPERVISOR):
        return Queue.objects.filter(supervisors=user)
    return Queue.objects.none()
