"""Presence: status changes (which move offers), console liveness, capacity from the presence
configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import (
    F,
    Q,
    Value,
)
from django.utils import timezone
from django.utils.translation import gettext as _

from omnirouter import realtime
from omnirouter.errors import DomainError
from presence.models import Agent, PresenceStatus
from routing.dispatch import request_routing
from routing.models import (
    ActionLog,
)
from routing.services.events import presence_message
from routing.services.locks import (
    lock_agents,
)
from routing.services.transitions import apply_status, capacity_in_force

logger = logging.getLogger(__name__)


def set_presence(
    *,
    agent: Agent,
    status: PresenceStatus | None,
    now: datetime | None = None,
    actor: User | None = None,
    check_allowed: bool = True,
) -> Agent:
    """Change an agent's presence status (``None`` is offline).

    Offers for channels the new status does not cover go back to their queues (accepted work
    stays). Going online requests a routing pass. ``actor`` other than the agent is logged.
    """
    now = now or timezone.now()
    if status is not None and check_allowed:
        allowed = agent.presence_config.allowed_statuses.all()
        if allowed.exists() and not allowed.filter(pk=status.pk).exists():
            raise DomainError(
                _("Status '%(status)s' is not available to you.") % {"status": status.name},
                "status",
            )
    with transaction.atomic():
        lock_agents([agent.pk])
        apply_status(agent.pk, status.pk if status else None, now=now)
        if actor is not None and getattr(actor, "pk", None) != agent.user_id:
            ActionLog.objects.create(
                at=now,
                actor=actor,
                verb="set_presence",
                agent=agent,
                detail={"status": status.name if status else None},
            )
    agent.refresh_from_db()
    return agent


def touch_console(*, agent: Agent | int, now: datetime | None = None) -> None:
    """Record that the agent's console is alive (on connect and on each heartbeat).

    One conditional UPDATE: a heartbeat within ``CONSOLE_SEEN_WRITE_INTERVAL_SECONDS`` of the
    stored time writes nothing. A console that was stale (silent past the grace) while its
    agent is online becomes routable again: a pass is requested. ``agent``: an agent or its id
    (the console's socket knows only the id, and reads nothing else for a heartbeat).
    """
    now = now or timezone.now()
    agent_id = agent if isinstance(agent, int) else agent.pk
    write_before = now - timedelta(seconds=settings.CONSOLE_SEEN_WRITE_INTERVAL_SECONDS)
    stale_before = now - timedelta(seconds=settings.CONSOLE_GRACE_SECONDS)
    if connection.vendor == "postgresql":
        # The self-join reads the row as it was before this UPDATE: was it stale?
        with connection.cursor() as cur:
            cur.execute(
                "UPDATE presence_agent a SET console_seen_at = %(now)s"
                " FROM presence_agent b LEFT JOIN presence_presencestatus s ON s.id = b.status_id"
                " WHERE a.id = %(id)s AND b.id = a.id"
                " AND (a.console_seen_at IS NULL OR a.console_seen_at < %(write_before)s)"
                " RETURNING coalesce(s.is_online, false)"
                " AND (b.console_seen_at IS NULL OR b.console_seen_at < %(stale_before)s)",
                {
                    "now": now,
                    "id": agent_id,
                    "write_before": write_before,
                    "stale_before": stale_before,
                },
            )
            row = cur.fetchone()
        was_stale = bool(row and row[0])
    else:
        # SQLite's RETURNING sees only the new row: read first (and stop there if recent).
        before = (
            Agent.objects.filter(pk=agent_id)
            .values_list("console_seen_at", "status__is_online")
            .first()
        )
        if before is None or (before[0] is not None and before[0] >= write_before):
            return
        written = (
            Agent.objects.filter(pk=agent_id)
            .filter(Q(console_seen_at__lt=write_before) | Q(console_seen_at__isnull=True))
            .update(console_seen_at=now)
        )
        was_stale = bool(written and before[1] and (before[0] is None or before[0] < stale_before))
    if was_stale:
        request_routing()


def apply_presence_config(
    *, agent_ids: Sequence[int] | None = None, config_id: int | None = None
) -> int:
    """Bring agents' capacity in line with their presence configuration (after an admin edit).

    Capacity in force never drops below what an agent holds; it settles as work closes.
    """
    qs = Agent.objects.all()
    if agent_ids is not None:
        qs = qs.filter(id__in=agent_ids)
    if config_id is not None:
        qs = qs.filter(presence_config_id=config_id)
    with transaction.atomic():
        ids = lock_agents(list(qs.values_list("id", flat=True)))
        changed = 0
        for agent in Agent.objects.filter(id__in=ids).select_related("presence_config"):
            new = agent.presence_config.capacity
            if agent.configured_capacity != new or agent.capacity != max(new, agent.used_capacity):
                Agent.objects.filter(pk=agent.pk).update(
                    configured_capacity=new,
                    capacity=capacity_in_force(Value(new), F("used_capacity")),
                )
                realtime.publish(*presence_message(agent.pk))
                changed += 1
        if changed:
            request_routing()
    return changed
