"""Helpers for routing scenarios: a fixed clock, a pass at a given second, what an agent holds."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from presence.models import Agent
from routing import services
from routing.models import AgentWork
from routing.services import PassResult

T0 = timezone.now().replace(microsecond=0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def route(seconds: float = 0) -> PassResult:
    return services.route_waiting_work(now=at(seconds))


def live(agent: Agent) -> list[str]:
    """Subjects of the agent's offered and accepted work, oldest offer first."""
    return list(
        AgentWork.objects.filter(agent=agent, state__in=["pushed", "opened"])
        .order_by("pushed_at", "id")
        .values_list("item__subject", flat=True)
    )


def load(agent: Agent) -> tuple[int, int]:
    """(used capacity, open count) as stored."""
    agent.refresh_from_db()
    return agent.used_capacity, agent.open_count
