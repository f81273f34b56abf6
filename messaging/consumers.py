"""WebSockets of messaging: the customer's web-chat widget, and the agent's conversation tabs.

``/ws/webchat/<account key>/``: anonymous visitors, recognised by a visitor token the widget
keeps in localStorage (sent as ``?visitor=``). Tokens are issued by this server only (signed, in
the ``hello`` frame of a connection without one); a token we did not issue gets an error frame
``visitor_unknown`` and close code 4401, and the widget forgets it and connects without one.
Frames are rate-limited per connection (a token bucket): past the limit an error frame
``rate_limited`` answers, nothing is stored, and the socket stays open.
The page embedding the widget must be on the account's allowed-origins list (or be this
server). This route sits outside the staff origin validator on purpose: customers' own sites
embed it.

``/ws/agent/conversations/``: a logged-in agent's conversation tabs (``static/js/conversation.js``):
replies, typing, closing, opening a case; messaging events from the agent's group are forwarded.

Both are thin: validate, call one service, forward events. Client frames and answers:
``{"type": "message", "text", "client_id"}`` -> ``{"type": "ack", ...}``; failures ->
``{"type": "error", "code", "message"}``; events -> ``{"type": <event>, "payload": {...}}``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _

from messaging import selectors, services
from messaging.models import AccountKind, ChannelAccount, Conversation, IdentityKind
from omnirouter import metrics, realtime, roles
from omnirouter.errors import DomainError
from omnirouter.origins import origin_allowed
from omnirouter.ratelimit import TokenBucket
from omnirouter.ws_frames import CheckedJsonConsumer
from omnirouter.ws_groups import GroupMembership

logger = logging.getLogger(__name__)

CLOSE_UNKNOWN_ACCOUNT = 4404
CLOSE_ORIGIN_REFUSED = 4403
CLOSE_UNAUTHENTICATED = 4401
CLOSE_VISITOR_UNKNOWN = 4401  # the widget forgets its token and connects without one
# Events a widget may see; agent-side events (offers, presence) never reach customers anyway.
_WIDGET_EVENTS = {realtime.MESSAGE_NEW, realtime.TYPING, realtime.CONVERSATION_CHANGED}
_AGENT_EVENTS = {
    realtime.MESSAGE_NEW,
    realtime.MESSAGE_STATUS,
    realtime.TYPING,
    realtime.CONVERSATION_CHANGED,
}


def _webchat_account(key: str) -> ChannelAccount | None:
    return ChannelAccount.objects.filter(
        public_key=key, kind=AccountKind.WEBCHAT, active=True
    ).first()


def _widget_state(account: ChannelAccount, visitor: str) -> dict[str, Any]:
    identity = selectors.identity_for(IdentityKind.WEBCHAT, visitor)
    if identity is None:
        return {"conversation": None, "messages": []}
    return selectors.webchat_history(identity, account.pk)


def _open_conversation_id(account: ChannelAccount, visitor: str) -> int | None:
    return (
        Conversation.objects.filter(
            account=account, identity__kind=IdentityKind.WEBCHAT, identity__value=visitor
        )
        .exclude(status="ended")
        .values_list("pk", flat=True)
        .first()
    )


class WebchatConsumer(CheckedJsonConsumer):
    account: ChannelAccount | None = None
    visitor: str = ""
    membership: GroupMembership | None = None
    frames: TokenBucket

    async def connect(self) -> None:
        key = self.scope["url_route"]["kwargs"]["account_key"]
        account = await database_sync_to_async(_webchat_account)(key)
        if account is None:
            await self.accept()
            await self.close(code=CLOSE_UNKNOWN_ACCOUNT)
            return
        if not origin_allowed(self.scope, account.origin_list()):
            await self.accept()
            await self.close(code=CLOSE_ORIGIN_REFUSED)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        token = (query.get("visitor") or [""])[0]
        if not token:
            token = services.issue_visitor_token()
        elif not services.visitor_token_valid(token):
            await self.accept()
            await self._error("visitor_unknown", _("This chat session is unknown; starting anew."))
            await self.close(code=CLOSE_VISITOR_UNKNOWN)
            return
        self.account = account
        self.frames = TokenBucket(
            capacity=settings.WEBCHAT_BURST_FRAMES,
            rate_per_second=settings.WEBCHAT_FRAMES_PER_SECOND,
        )
        self.visitor = services.visitor_key(token)
        self.membership = GroupMembership(self.channel_layer, self.channel_name)
        await self.membership.join(realtime.webchat_group(self.visitor))
        await self.accept()
        metrics.socket_opened(self)
        state = await database_sync_to_async(_widget_state)(account, self.visitor)
        await self.send_json(
            {
                "type": "hello",
                "visitor": token,
                "account": {"name": account.name, "language": account.language},
                **state,
            }
        )

    async def disconnect(self, code: int) -> None:
        metrics.socket_closed(self)
        if self.membership is not None:
            await self.membership.leave()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.account is None:
            return
        wait = self.frames.take()
        if wait:
            # Checked before any database work: a flood costs us no transactions.
            await self.send_json(
                {
                    "type": "error",
                    "code": "rate_limited",
                    "message": _("You are sending too fast. Wait a moment and try again."),
                    "retry_after_seconds": round(min(wait, 3600), 1),
                }
            )
            return
        if not isinstance(content, dict):
            await self._error("bad_request", _("Each frame must be a JSON object."))
            return
        kind = content.get("type")
        try:
            if kind == "message":
                await self._message(content)
            elif kind == "typing":
                await database_sync_to_async(self._typing)()
            elif kind == "seen":
                ids = content.get("ids")
                if isinstance(ids, list):
                    await database_sync_to_async(services.mark_webchat_delivered)(
                        account=self.account, visitor=self.visitor, message_ids=ids
                    )
            elif kind == "end":
                await database_sync_to_async(services.close_webchat_by_customer)(
                    account=self.account, visitor=self.visitor
                )
                await self.send_json({"type": "ack", "of": "end"})
            else:
                await self._error("bad_request", _("Unknown frame type."))
        except DomainError as exc:
            await self._error(exc.code, exc.message)

    async def _message(self, content: dict[str, Any]) -> None:
        text, client_id = content.get("text"), content.get("client_id", "")
        if not isinstance(text, str) or not isinstance(client_id, str):
            await self._error("bad_request", _("A message needs text."))
            return
        result = await database_sync_to_async(services.receive_webchat)(
            account=self.account, visitor=self.visitor, text=text, client_id=client_id
        )
        payload = await database_sync_to_async(selectors.widget_message)(result.message)
        await self.send_json({"type": "ack", "client_id": client_id, "message": payload})

    def _typing(self) -> None:
        assert self.account is not None
        conversation_id = _open_conversation_id(self.account, self.visitor)
        if conversation_id is not None:
            services.signal_typing(conversation_id=conversation_id, visitor=self.visitor)

    async def _error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})

    async def realtime_event(self, message: dict[str, Any]) -> None:
        if message.get("event") in _WIDGET_EVENTS:
            await self.send_json({"type": message["event"], "payload": message.get("payload")})


def _agent_of(user: Any) -> Any:
    return roles.agent_of(user)


class AgentConversationConsumer(CheckedJsonConsumer):
    """The agent's conversation tabs: one socket per console page, however many tabs."""

    agent: Any = None
    language: str = "en"
    membership: GroupMembership | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.agent = await database_sync_to_async(_agent_of)(user)
        if self.agent is None:
            await self.accept()
            await self.close(code=CLOSE_ORIGIN_REFUSED)
            return
        self.language = translation.get_supported_language_variant(
            _cookie_language(self.scope) or "en"
        )
        self.membership = GroupMembership(self.channel_layer, self.channel_name)
        await self.membership.join(realtime.agent_group(self.agent.pk))
        await self.accept()
        metrics.socket_opened(self)
        await self.send_json({"type": "hello", "agent_id": self.agent.pk})

    async def disconnect(self, code: int) -> None:
        metrics.socket_closed(self)
        if self.membership is not None:
            await self.membership.leave()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.agent is None:
            return
        with translation.override(self.language):
            await self._handle(content)

    async def _handle(self, content: Any) -> None:
        if not isinstance(content, dict):
            await self._error("bad_request", _("Each frame must be a JSON object."), None)
            return
        kind, ref = content.get("type"), content.get("ref")
        conversation_id = content.get("conversation_id")
        if not isinstance(conversation_id, int):
            await self._error("bad_request", _("conversation_id must be a number."), ref)
            return
        try:
            # Out of the agent's scope answers like an unknown id: existence is not disclosed.
            await database_sync_to_async(selectors.visible_conversation)(
                self.scope["user"], conversation_id
            )
            if kind == "reply":
                text = content.get("text")
                if not isinstance(text, str):
                    await self._error("bad_request", _("A reply needs text."), ref)
                    return
                message = await database_sync_to_async(services.send_reply)(
                    conversation_id=conversation_id, agent=self.agent, text=text
                )
                await self.send_json(
                    {"type": "ack", "of": "reply", "ref": ref, "message_id": message.pk}
                )
            elif kind == "typing":
                await database_sync_to_async(services.signal_typing)(
                    conversation_id=conversation_id, agent=self.agent
                )
            elif kind == "close":
                await database_sync_to_async(services.close_conversation)(
                    conversation_id=conversation_id, by="agent", agent=self.agent
                )
                await self.send_json({"type": "ack", "of": "close", "ref": ref})
            else:
                await self._error("bad_request", _("Unknown frame type."), ref)
        except DomainError as exc:
            await self._error(exc.code, exc.message, ref)

    async def _error(self, code: str, message: str, ref: Any) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, "ref": ref})

    async def realtime_event(self, message: dict[str, Any]) -> None:
        if message.get("event") in _AGENT_EVENTS:
            await self.send_json({"type": message["event"], "payload": message.get("payload")})


def _cookie_language(scope: dict[str, Any]) -> str:
    cookies = scope.get("cookies") or {}
    return str(cookies.get("django_language") or "")
