"""Reads for supervisors: aggregate queries over queues, items and agents.

Every function here is a fixed number of aggregate queries, whatever the number of items or
agents: real-time statistics must keep working with hundreds of agents and deep backlogs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Min, Q, Value

from presence.models import Agent
from routing.models import QueueMembership, WorkItem, WorkItemStatus
from routing.roles import is_admin, supervised_queues


def _seconds(delta: timedelta | None) -> int:
    """Whole seconds of a wait, never negative (clocks of writers may differ slightly)."""
    if delta is None:
        return 0
    return max(0, int(delta.total_seconds()))


def queue_stats(queue_ids: list[int], now: datetime) -> dict[int, dict[str, Any]]:
    """Per queue: items waiting, offered and assigned; longest and average wait of waiting items.

    One grouped query on the (queue, status) index; queues with no live items are absent.
    """
    waiting = Q(status=WorkItemStatus.WAITING)
    wait = ExpressionWrapper(Value(now) - F("enqueued_at"), output_field=DurationField())
    rows = (
        WorkItem.objects.filter(
            queue_id__in=queue_ids,
            status__in=[WorkItemStatus.WAITING, WorkItemStatus.OFFERED, WorkItemStatus.ASSIGNED],
        )
        .values("queue_id")
        .annotate(
            waiting=Count("id", filter=waiting),
            offered=Count("id", filter=Q(status=WorkItemStatus.OFFERED)),
            assigned=Count("id", filter=Q(status=WorkItemStatus.ASSIGNED)),
            oldest=Min("enqueued_at", filter=waiting),
            average_wait=Avg(wait, filter=waiting),
        )
        .order_by()
    )
    return {row["queue_id"]: row for row in rows}


def snapshot(user: Any, now: datetime) -> dict[str, Any]:
    """The center right now, as far as ``user`` may see it: their queues and those queues' agents.

    Admins see every queue and every agent. Waits are in whole seconds at ``now``.
    """
    queues = list(supervised_queues(user).order_by("name").values("id", "name"))
    queue_ids = [q["id"] for q in queues]
    stats = queue_stats(queue_ids, now)
    queue_rows = []
    for queue in queues:
        row = stats.get(queue["id"], {})
        oldest = row.get("oldest")
        queue_rows.append(
            {
                "id": queue["id"],
                "name": queue["name"],
                "waiting": row.get("waiting", 0),
                "offered": row.get("offered", 0),
                "assigned": row.get("assigned", 0),
                "longest_wait_seconds": _seconds(now - oldest if oldest else None),
                "average_wait_seconds": _seconds(row.get("average_wait")),
            }
        )

    agents = Agent.objects.all()
    if not is_admin(user):
        agents = agents.filter(
            id__in=QueueMembership.objects.filter(queue_id__in=queue_ids).values("agent_id")
        )
    agent_rows = [
        {
            "id": a["id"],
            "username": a["user__username"],
            "name": f"{a['user__first_name']} {a['user__last_name']}".strip()
            or a["user__username"],
            "status_id": a["status_id"],
            "status": a["status__name"],
            "online": bool(a["status__is_online"]),
            "capacity": a["capacity"],
            "used_capacity": a["used_capacity"],
            "open_count": a["open_count"],
        }
        for a in agents.order_by("user__username").values(
            "id",
            "user__username",
            "user__first_name",
            "user__last_name",
            "status_id",
            "status__name",
            "status__is_online",
            "capacity",
            "used_capacity",
            "open_count",
        )
    ]
    return {"at": now, "queues": queue_rows, "agents": agent_rows}
