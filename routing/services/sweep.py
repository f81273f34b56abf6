"""The sweep: the periodic safety net that expires offers, sets lost consoles offline, repairs
capacity drift and runs a pass.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import (
    F,
    Q,
    Sum,
    Value,
)
from django.utils import timezone

from omnirouter import metrics
from presence.models import Agent
from routing.dispatch import request_routing
from routing.models import (
    LIVE_STATES,
    AgentWork,
    AgentWorkState,
)
from routing.services.locks import (
    lock_agents,
)
from routing.services.routing_pass import route_waiting_work
from routing.services.transitions import (
    apply_status,
    capacity_in_force,
    end_work,
    return_item,
)

logger = logging.getLogger(__name__)


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Periodic safety net: expire offers, drop lost consoles, fix capacity drift, route."""
    now = now or timezone.now()
    expired = expire_offers(now=now)
    offline = expire_lost_consoles(now=now)
    drift = reconcile_capacity()
    # The pass runs at the sweep's clock: offers it makes are stamped and timed from the same
    # moment the sweep expired the old ones at, and cooldowns are measured against it.
    routed = route_waiting_work(now=now).offers
    return {"expired": expired, "offline": offline, "drift": drift, "offers": routed}


def expire_offers(*, now: datetime | None = None, limit: int = 500) -> int:
    """Time out pushed offers past their deadline; their items go back in line."""
    now = now or timezone.now()
    due = list(
        AgentWork.objects.filter(state=AgentWorkState.PUSHED, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("id", "agent_id")[:limit]
    )
    if not due:
        return 0
    count = 0
    with transaction.atomic():
        lock_agents({agent_id for _, agent_id in due})
        works = list(
            AgentWork.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(id__in=[w for w, _ in due], state=AgentWorkState.PUSHED, expires_at__lte=now)
            .select_related("agent__presence_config")
            .order_by("id")
        )
        for work in works:
            if work.expires_at is not None:  # always set on a pushed offer
                metrics.record_expiry(work.expires_at, now)
            end_work(work, AgentWorkState.TIMED_OUT, now=now)
            return_item(work.item_id)
            after = work.agent.presence_config.status_after_timeout_id
            if after:
                apply_status(work.agent_id, after, now=now)
            count += 1
        if count:
            request_routing()
    return count


def expire_lost_consoles(*, now: datetime | None = None) -> int:
    """Set offline the agents whose console has been gone longer than the grace period."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.CONSOLE_GRACE_SECONDS)
    lost = list(
        Agent.objects.filter(status__is_online=True, presence_config__console_required=True)
        .filter(Q(console_seen_at__lt=cutoff) | Q(console_seen_at__isnull=True))
        .values_list("id", flat=True)
    )
    for agent_id in lost:
        with transaction.atomic():
            lock_agents([agent_id])
            # Re-checked under the lock: a heartbeat may have come in meanwhile.
            still_lost = Agent.objects.filter(
                Q(console_seen_at__lt=cutoff) | Q(console_seen_at__isnull=True),
                id=agent_id,
                status__is_online=True,
            ).exists()
            if still_lost:
                apply_status(agent_id, None, now=now)
    return len(lost)


def reconcile_capacity() -> int:
    """Check each agent's used capacity and open count against their live work; fix drift.

    Used capacity is never trusted blindly: a crash between writes cannot happen inside one
    transaction, but a hand edit or a bug could, and routing must not stall on a phantom load.
    """
    live = {
        row["agent_id"]: (row["units"] or 0, row["n"])
        for row in AgentWork.objects.filter(state__in=LIVE_STATES)
        .values("agent_id")
        .annotate(units=Sum("units"), n=models.Count("id"))
    }
    suspects = [
        a["id"]
        for a in Agent.objects.filter(Q(used_capacity__gt=0) | Q(id__in=list(live))).values(
            "id", "used_capacity", "open_count"
        )
        if (a["used_capacity"], a["open_count"]) != live.get(a["id"], (0, 0))
    ]
    fixed = 0
    for agent_id in suspects:
        with transaction.atomic():
            lock_agents([agent_id])
            agg = AgentWork.objects.filter(agent_id=agent_id, state__in=LIVE_STATES).aggregate(
                units=Sum("units"), n=models.Count("id")
            )
            units, count = agg["units"] or 0, agg["n"]
            agent = Agent.objects.get(pk=agent_id)
            if (agent.used_capacity, agent.open_count) != (units, count):
                logger.warning(
                    "capacity drift on agent %s: stored %s units/%s items, live %s/%s; fixed",
                    agent_id,
                    agent.used_capacity,
                    agent.open_count,
                    units,
                    count,
                )
                Agent.objects.filter(pk=agent_id).update(
                    used_capacity=units,
                    open_count=count,
                    capacity=capacity_in_force(F("configured_capacity"), Value(units)),
                )
                fixed += 1
    if fixed:
        request_routing()
    return fixed
