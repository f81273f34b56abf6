"""Events every service sends after commit: an agent's presence and load, a work change,
a queue change (dashboards refresh on it).
"""

from __future__ import annotations

import logging
from typing import Any

from omnirouter import realtime
from routing.models import (
    AgentWork,
)
from routing.selectors import presence_payloads, work_payload

logger = logging.getLogger(__name__)


def presence_message(agent_id: int) -> tuple[str, str, dict[str, Any]]:
    return presence_messages([agent_id])[0]


def presence_messages(agent_ids: list[int]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (realtime.agent_group(agent_id), realtime.PRESENCE_CHANGED, payload)
        for agent_id, payload in presence_payloads(agent_ids).items()
    ]


def work_changed(work: AgentWork) -> None:
    realtime.publish(realtime.agent_group(work.agent_id), realtime.WORK_CHANGED, work_payload(work))
    queue_changed(work.queue_id)


def queue_changed(queue_id: int) -> None:
    realtime.publish(realtime.queue_group(queue_id), realtime.QUEUE_CHANGED, {"queue_id": queue_id})
