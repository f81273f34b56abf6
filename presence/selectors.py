"""Reads for the agent console: the full state a console shows, in one call."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

from presence.models import Agent, PresenceConfiguration, PresenceStatus
from routing.models import Queue, QueueMembership, Skill
from routing.selectors import live_work_for_agent, presence_payloads, work_payload


def console_state(agent_id: int, *, now: datetime) -> dict[str, Any]:
    """Everything an agent console needs to draw itself from nothing.

    Sent on connect and on request, so a console that missed pushes (they are only hints) is
    right again at once. Read fresh each time: an admin may have changed the configuration.
    """
    agent = Agent.objects.select_related("presence_config").get(pk=agent_id)
    config = agent.presence_config
    return {
        "now": now.isoformat(),
        "agent": {"id": agent.pk, "name": str(agent)},
        "presence": presence_payloads([agent.pk])[agent.pk],
        "statuses": status_choices(config),
        "work": [work_payload(work) for work in live_work_for_agent(agent)],
        "decline_reasons": decline_reason_labels(config),
        "require_decline_reason": config.require_decline_reason,
        "allow_decline": config.allow_decline,
        "queues": [{"id": q.pk, "name": q.name} for q in Queue.objects.order_by("name", "id")],
        "colleagues": colleagues(agent),
        "skills": [
            {"id": pk, "name": name} for pk, name in Skill.objects.values_list("id", "name")
        ],
        "heartbeat_seconds": settings.CONSOLE_HEARTBEAT_SECONDS,
    }


def status_choices(config: PresenceConfiguration) -> list[dict[str, Any]]:
    """The statuses an agent may pick: the configuration's (empty means all), plus Offline.

    Offline (no status) is always offered: it is what the system sets when a console is lost,
    so the picker must be able to show it. An offline status row named "Offline" is the same
    thing and is not listed twice; other offline statuses ("Lunch", "Training") are.
    """
    allowed = list(config.allowed_statuses.prefetch_related("channels"))
    statuses = allowed or list(PresenceStatus.objects.prefetch_related("channels"))
    choices: list[dict[str, Any]] = [
        {"id": None, "name": _("Offline"), "online": False, "channels": []}
    ]
    for status in sorted(statuses, key=lambda s: (not s.is_online, s.name)):
        if not status.is_online and status.name.strip().lower() == "offline":
            continue
        choices.append(
            {
                "id": status.pk,
                "name": status.name,
                "online": status.is_online,
                "channels": sorted(c.label for c in status.channels.all()),
            }
        )
    return choices


def decline_reason_labels(config: PresenceConfiguration) -> list[str]:
    """Active decline reasons of the configuration, the only ones ``decline_work`` accepts."""
    return list(
        config.decline_reasons.filter(active=True).order_by("label").values_list("label", flat=True)
    )


def colleagues(agent: Agent) -> list[dict[str, Any]]:
    """Agents who share a queue with ``agent``, with the queues they share: whom the console
    offers as a transfer's "to an agent" for work in each queue (one query)."""
    mine = QueueMembership.objects.filter(agent=agent).values("queue_id")
    rows = (
        QueueMembership.objects.filter(queue_id__in=mine)
        .exclude(agent=agent)
        .values_list(
            "agent_id",
            "agent__user__first_name",
            "agent__user__last_name",
            "agent__user__username",
            "queue_id",
        )
        .order_by("agent__user__username", "agent_id", "queue_id")
    )
    by_agent: dict[int, dict[str, Any]] = {}
    for agent_id, first, last, username, queue_id in rows:
        entry = by_agent.setdefault(
            agent_id,
            {"id": agent_id, "name": f"{first} {last}".strip() or username, "queue_ids": []},
        )
        entry["queue_ids"].append(queue_id)
    return list(by_agent.values())
