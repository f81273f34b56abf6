"""The agent console's WebSocket (``/ws/agent/``): a thin adapter over the routing services.

On connect: authenticate, join the agent's own group, mark the console alive, send the full
state. Then: forward the agent's realtime events, and turn each client message into one service
call answered by ``ack`` or ``error``. The protocol is written down in docs/websocket-protocol.md.

Nothing here decides anything: the services hold the rules, so the socket and the REST API obey
the same ones. Losing the connection does not set the agent offline: the sweep does that once the
console has been silent for ``CONSOLE_GRACE_SECONDS``, so a page reload costs nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from omnirouter import metrics, realtime, roles
from omnirouter.errors import DomainError
from omnirouter.ws_frames import CheckedJsonConsumer
from omnirouter.ws_groups import GroupMembership
from omnirouter.ws_locale import language_of
from presence.models import Agent, PresenceStatus
from presence.selectors import console_state
from routing import services
from routing.models import Queue, Skill
from routing.selectors import presence_payloads, with_item_skills, work_payload
from routing.services.skills import need

logger = logging.getLogger(__name__)

# Close codes (4000-4999 are the application's): the console stops reconnecting on these.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_AN_AGENT = 4403

# Mirrors of the model fields' limits, so over-long input is refused with a message instead of
# failing in the database.
MAX_REASON_CHARS = 200
MAX_NOTE_CHARS = 5000
MAX_REF_CHARS = 64


class BadMessage(Exception):
    """A client message the protocol does not allow (not a routing rule: a malformed request)."""

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class AgentConsumer(CheckedJsonConsumer):
    agent_id: int | None = None
    membership: GroupMembership | None = None
    language: str = settings.LANGUAGE_CODE

    async def connect(self) -> None:
        user = self.scope.get("user")
        # Accept, then close with a code: a refusal before accept reaches the browser as a bare
        # 1006, and the console could not tell "log in again" from "network trouble".
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        agent_id = await database_sync_to_async(_agent_id_of)(user)
        if agent_id is None:
            await self.accept()
            await self.close(code=CLOSE_NOT_AN_AGENT)
            return
        self.agent_id = agent_id
        self.language = language_of(self.scope)
        self.membership = GroupMembership(self.channel_layer, self.channel_name)
        # Join before reading the state: an event published in between is then delivered after
        # the state frame (the console merges it) instead of being lost.
        await self.membership.join(realtime.agent_group(agent_id))
        await self.accept()
        metrics.socket_opened(self)
        await database_sync_to_async(_touch)(agent_id)
        await self._send_state()

    async def disconnect(self, code: int) -> None:
        metrics.socket_closed(self)
        if self.membership is not None:
            await self.membership.leave()
        # Deliberately no status change: see the module docstring.

    # --- Server -> client -------------------------------------------------------------------

    async def realtime_event(self, message: dict[str, Any]) -> None:
        """A service published something for this agent: pass it on as it is."""
        await self.send_json({"type": message["event"], "payload": message["payload"]})

    async def _send_state(self) -> None:
        assert self.agent_id is not None
        with translation.override(self.language):
            state = await database_sync_to_async(_state)(self.agent_id)
        await self.send_json({"type": "state", **state})

    # --- Client -> server -------------------------------------------------------------------

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.agent_id is None:
            return
        ref = _ref_of(content)
        try:
            if not isinstance(content, dict):
                raise BadMessage(_("A message must be a JSON object with a type."))
            kind = content.get("type")
            handler = self._handlers().get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise BadMessage(
                    _("Unknown message type %(type)s.") % {"type": json.dumps(kind)},
                    "unknown_type",
                )
            reply = await handler(content)
        except BadMessage as exc:
            await self._error(ref, exc.code, exc.message)
        except DomainError as exc:
            await self._error(ref, exc.code, exc.message)
        else:
            if reply is not None:
                await self.send_json({"type": "ack", "ref": ref, "action": kind, **reply})

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]]:
        return {
            "accept": self._on_accept,
            "decline": self._on_decline,
            "close": self._on_close,
            "transfer": self._on_transfer,
            "status": self._on_status,
            "heartbeat": self._on_heartbeat,
            "sync": self._on_sync,
        }

    async def _on_accept(self, content: dict[str, Any]) -> dict[str, Any]:
        work_id = _int_field(content, "work_id")
        return {"work": await database_sync_to_async(_accept)(self.agent_id, work_id)}

    async def _on_decline(self, content: dict[str, Any]) -> dict[str, Any]:
        work_id = _int_field(content, "work_id")
        reason = _text_field(content, "reason", MAX_REASON_CHARS)
        return {"work": await database_sync_to_async(_decline)(self.agent_id, work_id, reason)}

    async def _on_close(self, content: dict[str, Any]) -> dict[str, Any]:
        work_id = _int_field(content, "work_id")
        note = _text_field(content, "note", MAX_NOTE_CHARS)
        return {"work": await database_sync_to_async(_close)(self.agent_id, work_id, note)}

    async def _on_transfer(self, content: dict[str, Any]) -> dict[str, Any]:
        work_id = _int_field(content, "work_id")
        note = _text_field(content, "note", MAX_NOTE_CHARS)
        if content.get("agent") is not None:
            to_agent = _int_field(content, "agent")
            work = await database_sync_to_async(_transfer_to_agent)(
                self.agent_id, work_id, to_agent, note
            )
        elif content.get("skill") is not None:
            skill_id = _int_field(content, "skill")
            level = _level_field(content, "min_level")
            queue_id = None if content.get("queue") is None else _int_field(content, "queue")
            work = await database_sync_to_async(_transfer_to_skill)(
                self.agent_id, work_id, skill_id, level, queue_id, note
            )
        else:
            queue_id = _int_field(content, "queue")
            work = await database_sync_to_async(_transfer)(self.agent_id, work_id, queue_id, note)
        return {"work": work}

    async def _on_status(self, content: dict[str, Any]) -> dict[str, Any]:
        if "status" not in content:
            raise BadMessage(_("Field %(field)s is required.") % {"field": "status"})
        status_id = None if content["status"] is None else _int_field(content, "status")
        return {"presence": await database_sync_to_async(_set_status)(self.agent_id, status_id)}

    async def _on_heartbeat(self, content: dict[str, Any]) -> dict[str, Any]:
        await database_sync_to_async(_touch)(self.agent_id)
        return {"now": timezone.now().isoformat()}

    async def _on_sync(self, content: dict[str, Any]) -> dict[str, Any]:
        # The console resyncs on a timer because events may have been lost: one cause is a layer
        # that forgot this member (flushed, restarted), so re-join before reading the state.
        assert self.membership is not None
        await self.membership.rejoin()
        await self._send_state()
        return {}

    async def _error(self, ref: Any, code: str, message: str) -> None:
        await self.send_json({"type": "error", "ref": ref, "code": code, "message": message})


# --- Input checks ------------------------------------------------------------------------------


def _ref_of(content: Any) -> str | int | None:
    """The client's reference, echoed in the answer; anything but a short string/int is dropped."""
    if not isinstance(content, dict):
        return None
    ref = content.get("ref")
    if isinstance(ref, bool):
        return None
    if isinstance(ref, int) or (isinstance(ref, str) and len(ref) <= MAX_REF_CHARS):
        return ref
    return None


def _int_field(content: dict[str, Any], name: str) -> int:
    value = content.get(name)
    # bool is an int in Python, and "true" is no id.
    if isinstance(value, bool) or not isinstance(value, int):
        if value is None:
            raise BadMessage(_("Field %(field)s is required.") % {"field": name})
        raise BadMessage(_("Field %(field)s must be an integer id.") % {"field": name})
    if value < 1:
        raise BadMessage(_("Field %(field)s must be an integer id.") % {"field": name})
    return value


def _level_field(content: dict[str, Any], name: str) -> Any:
    """A skill level as sent (a number or a numeric string); the skills service checks its
    range and answers with the rule (0 to 99.99)."""
    value = content.get(name, 0)
    if value is None or value == "":
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float | str) or len(str(value)) > 12:
        raise BadMessage(_("Field %(field)s must be a number.") % {"field": name})
    return value


def _text_field(content: dict[str, Any], name: str, max_chars: int) -> str:
    value = content.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadMessage(_("Field %(field)s must be text.") % {"field": name})
    if len(value) > max_chars:
        raise BadMessage(
            _("Field %(field)s is too long (at most %(max)d characters).")
            % {"field": name, "max": max_chars}
        )
    return value


# --- Database work (each runs in a thread; each action is one service call) -------------------


def _agent_id_of(user: Any) -> int | None:
    agent = roles.agent_of(user)
    return agent.pk if agent is not None else None


def _agent(agent_id: int) -> Agent:
    # Read afresh for every action: the presence configuration decides what is allowed, and an
    # admin may have changed it since the console connected.
    return Agent.objects.select_related("presence_config").get(pk=agent_id)


def _state(agent_id: int) -> dict[str, Any]:
    return console_state(agent_id, now=timezone.now())


def _touch(agent_id: int) -> None:
    services.touch_console(agent=agent_id)


def _accept(agent_id: int, work_id: int) -> dict[str, Any]:
    # The work panel shows the skills the item needed: read them for the answer, outside the
    # service's transaction.
    work = services.accept_work(work_id=work_id, agent=_agent(agent_id))
    return work_payload(with_item_skills(work))


def _decline(agent_id: int, work_id: int, reason: str) -> dict[str, Any]:
    work = services.decline_work(work_id=work_id, agent=_agent(agent_id), reason=reason)
    return work_payload(work)


def _close(agent_id: int, work_id: int, note: str) -> dict[str, Any]:
    return work_payload(services.close_work(work_id=work_id, agent=_agent(agent_id), note=note))


def _transfer(agent_id: int, work_id: int, queue_id: int, note: str) -> dict[str, Any]:
    queue = Queue.objects.select_related("routing_config").filter(pk=queue_id).first()
    if queue is None:
        raise BadMessage(_("No queue %(id)d.") % {"id": queue_id}, "not_found")
    work = services.transfer_work(work_id=work_id, agent=_agent(agent_id), queue=queue, note=note)
    return work_payload(work)


def _transfer_to_agent(agent_id: int, work_id: int, to_agent_id: int, note: str) -> dict[str, Any]:
    to_agent = Agent.objects.filter(pk=to_agent_id).first()
    if to_agent is None:
        raise BadMessage(_("No agent %(id)d.") % {"id": to_agent_id}, "not_found")
    work = services.transfer_work_to_agent(
        work_id=work_id, agent=_agent(agent_id), to_agent=to_agent, note=note
    )
    return work_payload(work)


def _transfer_to_skill(
    agent_id: int, work_id: int, skill_id: int, level: Any, queue_id: int | None, note: str
) -> dict[str, Any]:
    skill = Skill.objects.filter(pk=skill_id).first()
    if skill is None:
        raise BadMessage(_("No skill %(id)d.") % {"id": skill_id}, "not_found")
    queue = None
    if queue_id is not None:
        queue = Queue.objects.select_related("routing_config").filter(pk=queue_id).first()
        if queue is None:
            raise BadMessage(_("No queue %(id)d.") % {"id": queue_id}, "not_found")
    min_level = need(skill.pk, level).min_level
    work = services.transfer_work_to_skill(
        work_id=work_id,
        agent=_agent(agent_id),
        skill=skill,
        min_level=min_level,
        queue=queue,
        note=note,
    )
    return work_payload(work)


def _set_status(agent_id: int, status_id: int | None) -> dict[str, Any]:
    status = None
    if status_id is not None:
        status = PresenceStatus.objects.filter(pk=status_id).first()
        if status is None:
            raise BadMessage(_("No status %(id)d.") % {"id": status_id}, "not_found")
    services.set_presence(agent=_agent(agent_id), status=status)
    return presence_payloads([agent_id])[agent_id]
