"""Who may call what: every operation of the API schema and every staff socket, for every role.

The table below is the product's access rule written out once, by hand: for each operation, the
roles that pass authorization. Every operation in ``/api/schema/`` must be in it (a new endpoint
without a row fails the test), and for every role the answer must be what the row says: a role
that may not call it gets exactly 401 (anonymous, with a token challenge) or 403 (signed in, the
wrong role, told which role it needs); a role that may gets past authorization (any other answer:
200, 201, 400 for the empty body sent, 404 for a record outside its scope, 409). What each
allowed call then does is tested next to its endpoint.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from drf_spectacular.generators import SchemaGenerator

from omnirouter import roles
from omnirouter.asgi import application
from presence.models import DeclineReason
from routing import services
from routing.models import AgentSkill, AgentWork, Skill
from tests.api_support import client_for, make_supervisor, make_user
from tests.factories import (
    PresenceConfigurationFactory,
    QueueFactory,
    ServiceChannelFactory,
    enqueue,
    make_agent,
    make_status,
)

ROLES = ("anonymous", "agent", "intake", "supervisor", "admin")

ADMIN = {"admin"}
AGENT = {"agent"}
SIGNED_IN = {"agent", "intake", "supervisor", "admin"}
STAFF = {"agent", "supervisor", "admin"}
SUPERVISION = {"supervisor", "admin"}
CUSTOMERS = {"agent", "supervisor", "admin"}
CONFIG = (
    "agents",
    "channels",
    "classification-rules",
    "exception-rules",
    "decline-reasons",
    "presence-configs",
    "presence-statuses",
    "queues",
    "routing-configs",
    "skills",
)

ALLOWED: dict[str, set[str]] = {
    "POST /api/agent-work/{id}/accept/": AGENT,
    "POST /api/agent-work/{id}/close/": AGENT,
    "POST /api/agent-work/{id}/decline/": AGENT,
    "POST /api/agent-work/{id}/transfer/": AGENT,
    "POST /api/assist/train/": ADMIN,
    "GET /api/me/presence/": AGENT,
    "PUT /api/me/presence/": AGENT,
    "GET /api/me/statuses/": AGENT,
    "GET /api/me/work/": AGENT,
    "POST /api/cases/": {"agent", "intake", "supervisor", "admin"},
    "GET /api/conversations/{conversation_id}/": CUSTOMERS,
    "POST /api/conversations/{conversation_id}/cases/": CUSTOMERS,
    "POST /api/conversations/{conversation_id}/close/": CUSTOMERS,
    "POST /api/conversations/{conversation_id}/reply/": CUSTOMERS,
    "GET /api/customers/{customer_id}/": CUSTOMERS,
    "POST /api/customers/{customer_id}/merge/": CUSTOMERS,
    "POST /api/customers/{customer_id}/unmerge/": CUSTOMERS,
    "GET /api/customers/{customer_id}/timeline/": CUSTOMERS,
    "POST /api/customers/{customer_id}/identities/": CUSTOMERS,
    "POST /api/customers/{customer_id}/suggestions/merge/": CUSTOMERS,
    "GET /api/schema/": set(ROLES),
    "POST /api/auth/token/": set(ROLES),
    "GET /api/agent-skills/": STAFF,
    "POST /api/agent-skills/": SUPERVISION,
    "GET /api/agent-skills/{id}/": STAFF,
    "PUT /api/agent-skills/{id}/": SUPERVISION,
    "PATCH /api/agent-skills/{id}/": SUPERVISION,
    "DELETE /api/agent-skills/{id}/": SUPERVISION,
    "POST /api/supervisor/agents/{agent_id}/presence/": SUPERVISION,
    "GET /api/supervisor/history/": SUPERVISION,
    "GET /api/supervisor/items/{item_id}/eligible-agents/": SUPERVISION,
    "POST /api/supervisor/items/{item_id}/move/": SUPERVISION,
    "POST /api/supervisor/items/{item_id}/push/": SUPERVISION,
    "POST /api/supervisor/work/{work_id}/transfer/": SUPERVISION,
    "GET /api/supervisor/snapshot/": SUPERVISION,
    "GET /api/work-items/": {"intake", "supervisor", "admin"},
    "POST /api/work-items/": {"intake", "admin"},
    "GET /api/work-items/{id}/": {"intake", "supervisor", "admin"},
    "POST /api/work-items/{id}/cancel/": {"intake", "supervisor", "admin"},
    "POST /api/work-items/{id}/classify/": SUPERVISION,
    "POST /api/classification-rules/preview/": ADMIN,
    "POST /api/work-items/{item_id}/assist-feedback/": AGENT,
    "GET /api/work-items/{item_id}/prediction/": CUSTOMERS,
    "GET /api/work-items/{item_id}/suggestions/": CUSTOMERS,
}
for family in CONFIG:
    for operation in ("GET", "POST"):
        ALLOWED[f"{operation} /api/{family}/"] = ADMIN
    for operation in ("GET", "PUT", "PATCH", "DELETE"):
        ALLOWED[f"{operation} /api/{family}/{{id}}/"] = ADMIN
# Versions of rules and routing configurations, and their rollback.
for family in ("classification-rules", "exception-rules", "routing-configs"):
    ALLOWED[f"GET /api/{family}/{{id}}/versions/"] = ADMIN
    ALLOWED[f"POST /api/{family}/{{id}}/rollback/"] = ADMIN
# Agents are created and edited, never deleted (their work history refers to them).
del ALLOWED["DELETE /api/agents/{id}/"]
# Names of what every role posts to, transfers to or asks for (agents, intake clients); decline
# reasons for those who decline and watch.
for family, readers in (
    ("channels", SIGNED_IN),
    ("queues", SIGNED_IN),
    ("skills", SIGNED_IN),
    ("decline-reasons", STAFF),
):
    ALLOWED[f"GET /api/{family}/"] = readers
    ALLOWED[f"GET /api/{family}/{{id}}/"] = readers


def _operations() -> list[str]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return sorted(
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    )


def test_every_operation_of_the_schema_has_a_row():
    assert _operations() == sorted(ALLOWED)


@pytest.fixture
def center(db, settings):
    settings.ROUTING_MODE = "manual"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    chat = ServiceChannelFactory(key="chat", label="Chat")
    status = make_status("Available", [chat])
    queue = QueueFactory(name="Support")
    config = PresenceConfigurationFactory(name="api", capacity=3, console_required=False)
    agent = make_agent("alice", queues=[queue], config=config, status=status)
    skill = Skill.objects.create(name="Japanese")
    agent_skill = AgentSkill.objects.create(agent=agent, skill=skill, level=5)
    reason = DeclineReason.objects.create(label="Busy")
    item = enqueue(queue=queue, channel=chat, subject="one")
    services.route_waiting_work()
    work = AgentWork.objects.get(agent=agent)
    ids = {
        "id": {
            "agent-work": work.pk,
            "work-items": item.pk,
            "agents": agent.pk,
            "skills": skill.pk,
            "agent-skills": agent_skill.pk,
            "decline-reasons": reason.pk,
        },
        "agent_id": agent.pk,
        "item_id": item.pk,
        "work_id": work.pk,
    }
    users = {
        "anonymous": None,
        "agent": agent.user,
        "intake": make_user("crm", group=roles.INTAKE),
        "supervisor": make_supervisor("sam", queue),
        "admin": make_user("root", superuser=True),
    }
    Group.objects.get_or_create(name=roles.SUPERVISOR)
    return {"ids": ids, "users": users, "queue": queue, "chat": chat, "status": status}


def _path(template: str, center: dict[str, Any]) -> str:
    family = template.split("/")[2]
    ids = center["ids"]
    by_family = {
        "channels": center["chat"].pk,
        "queues": center["queue"].pk,
        "presence-statuses": center["status"].pk,
        "presence-configs": center["users"]["agent"].agent.presence_config_id,
        "routing-configs": center["queue"].routing_config_id,
    }
    path = template.replace("{id}", str(ids["id"].get(family, by_family.get(family, 999999))))
    for name in ("agent_id", "item_id", "work_id"):
        path = path.replace("{" + name + "}", str(ids[name]))
    # Conversations and customers: none exist here; an allowed role gets past authorization to
    # a 404, a refused one never reaches the lookup.
    return path.replace("{conversation_id}", "999999").replace("{customer_id}", "999999")


@pytest.mark.parametrize("operation", sorted(ALLOWED))
def test_each_role_gets_the_right_answer(center, operation):
    method, template = operation.split(" ", 1)
    path = _path(template, center)
    answers = {}
    for role in ROLES:
        client = client_for(center["users"][role])
        response = getattr(client, method.lower())(path, {}, format="json")
        answers[role] = response.status_code
        if role not in ALLOWED[operation]:
            if role == "anonymous":
                assert response["WWW-Authenticate"] == "Token"
            else:
                assert response.json()["detail"].startswith("Only "), response.content

    expected = {
        role: ("passes" if role in ALLOWED[operation] else 401 if role == "anonymous" else 403)
        for role in ROLES
    }
    seen = {role: ("passes" if code not in (401, 403) else code) for role, code in answers.items()}
    assert seen == expected, answers


# Sockets: accepted, or closed with the application code the pages act on.
SOCKETS = {
    "/ws/agent/": {"agent": "open", "anonymous": 4401},
    "/ws/agent/conversations/": {"agent": "open", "anonymous": 4401},
    "/ws/supervisor/": {"supervisor": "open", "admin": "open", "anonymous": 4401},
}


@pytest.mark.parametrize("path", list(SOCKETS))
def test_each_role_gets_the_right_answer_from_each_socket(center, transactional_db, client, path):
    async def attempt(headers: list[tuple[bytes, bytes]]) -> str | int:
        socket = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await socket.connect()
        assert connected
        first = await socket.receive_output(timeout=5)
        await socket.disconnect()
        return first["code"] if first["type"] == "websocket.close" else "open"

    answers = {}
    for role in ROLES:
        headers = [(b"host", b"localhost"), (b"origin", b"http://localhost")]
        user = center["users"][role]
        if user is not None:
            client.force_login(user)
            headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
        answers[role] = asyncio.run(attempt(headers))
        client.logout()

    expected = {role: SOCKETS[path].get(role, 4403) for role in ROLES}
    assert answers == expected
