"""Realtime fan-out: group names, event types and ``publish()``.

Every push is a hint; the database is the truth. Channel layers deliver at most once and drop
silently when full, so consoles and dashboards re-read full state on (re)connect. Only services
call ``publish()``, and it always sends after the surrounding transaction commits.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.layers import get_channel_layer

from omnirouter import fanout, nudges

logger = logging.getLogger(__name__)

# Event types sent to agent consoles.
OFFER = "offer"  # a new offer (pushed agent work)
WORK_CHANGED = "work.changed"  # an agent work changed state (accepted, closed, expired, ...)
PRESENCE_CHANGED = "presence.changed"  # the agent's status or capacity changed
# Messaging events, sent to the agent holding the conversation and to the customer's web chat.
MESSAGE_NEW = "message.new"  # a message was added to a conversation (any author)
MESSAGE_STATUS = "message.status"  # an outbound message's delivery status changed
TYPING = "typing"  # someone is typing in a conversation
CONVERSATION_CHANGED = "conversation.changed"  # a conversation's status or agent changed
# Event types sent to supervisor groups.
QUEUE_CHANGED = "queue.changed"  # something in the queue moved; dashboards refresh (throttled)
QUEUE_ALERT = "queue.alert"  # an exception rule fired for items of the queue; supervisors are told


def agent_group(agent_id: int) -> str:
    return f"agent.{agent_id}"


def queue_group(queue_id: int) -> str:
    return f"queue.{queue_id}"


def webchat_group(visitor_key: str) -> str:
    """The customer side of web chat: every widget tab of one visitor."""
    return f"webchat.{visitor_key}"


def publish(group: str, event_type: str, payload: dict[str, Any]) -> None:
    """Send ``payload`` to ``group`` once the current transaction commits."""
    message = {"type": "realtime.event", "event": event_type, "payload": payload}
    nudges.on_commit(nudges.REALTIME, lambda: _send(group, message))


def publish_many(messages: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Like ``publish`` for many groups, sent together after commit."""
    if not messages:
        return
    prepared = [
        (group, {"type": "realtime.event", "event": event, "payload": payload})
        for group, event, payload in messages
    ]

    nudges.on_commit(nudges.REALTIME, lambda: _send_all(prepared))


def _send(group: str, message: dict[str, Any]) -> None:
    _send_all([(group, message)])


def _send_all(messages: list[tuple[str, dict[str, Any]]]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        # Handed to fanout, which sends in order, in bulk, and never raises: a push is a hint.
        fanout.send(layer, messages)
