"""Who may do what on the messaging API and the agent's conversation socket, cell by cell.

Roles around one conversation (customer A's, in the holder's queue): an admin, the queue's
supervisor, another queue's supervisor, the agent holding the work, a colleague of the same
queue, an agent of another queue, an intake client, and nobody. Out-of-scope ids answer 404 (as
unknown ids do); a role that may never use an endpoint gets 403; anonymous callers 401.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from messaging import services
from messaging.models import Case, MergeRecord, Message
from omnirouter.asgi import application

ROLES = [
    "admin", "supervisor", "other_supervisor", "holder", "colleague", "other", "intake",
    "anonymous",
]  # fmt: skip


def _merge_first(center: Any) -> None:
    services.merge_customers(
        survivor=center.customer_a, other=center.customer_b, actor=center.admin
    )


# endpoint: (method, path, body, prepare)
ENDPOINTS: dict[str, tuple[str, str, dict[str, Any], Any]] = {
    "customer": ("get", "/api/customers/{a}/", {}, None),
    "conversation": ("get", "/api/conversations/{ca}/", {}, None),
    "reply": ("post", "/api/conversations/{ca}/reply/", {"text": "Hello"}, None),
    "close": ("post", "/api/conversations/{ca}/close/", {}, None),
    "merge": ("post", "/api/customers/{a}/merge/", {"other": "{b}"}, None),
    "unmerge": ("post", "/api/customers/{a}/unmerge/", {}, _merge_first),
    "conversation_case": ("post", "/api/conversations/{ca}/cases/", {"subject": "Later"}, None),
    "case_by_customer": ("post", "/api/cases/", {"subject": "Call", "customer": "{a}"}, None),
    "case_by_address": ("post", "/api/cases/", {"subject": "Call", "email": "a@example.com"}, None),
}

# Expected status per endpoint, in ROLES order.
MATRIX = {
    #                     admin sup  sup2 hold coll oth  intk anon
    "customer":          [200,  200, 404, 200, 200, 404, 403, 401],
    "conversation":      [200,  200, 404, 200, 200, 404, 403, 401],
    "reply":             [403,  403, 404, 201, 403, 404, 403, 401],
    "close":             [403,  403, 404, 200, 403, 404, 403, 401],
    "merge":             [200,  200, 404, 200, 403, 404, 403, 401],
    "unmerge":           [200,  200, 404, 200, 403, 404, 403, 401],
    "conversation_case": [403,  403, 404, 201, 403, 404, 403, 401],
    "case_by_customer":  [201,  201, 404, 201, 201, 404, 400, 401],
    "case_by_address":   [201,  201, 201, 201, 201, 201, 201, 401],
}  # fmt: skip

CELLS = [
    pytest.param(endpoint, role, status, id=f"{endpoint}-{role}")
    for endpoint, statuses in MATRIX.items()
    for role, status in zip(ROLES, statuses, strict=True)
]


def _fill(value: Any, center: Any) -> Any:
    if not isinstance(value, str):
        return value
    ids = {
        "a": center.customer_a.pk,
        "b": center.customer_b.pk,
        "ca": center.conversation_a.pk,
    }
    filled = value.format(**ids)
    return int(filled) if value.startswith("{") and filled.isdigit() else filled


@pytest.mark.parametrize(("endpoint", "role", "expected"), CELLS)
def test_messaging_api_authorization(center, client, endpoint, role, expected):
    method, path, body, prepare = ENDPOINTS[endpoint]
    if prepare is not None:
        prepare(center)
    merges_before = list(MergeRecord.objects.values_list("pk", "undone_at"))
    cases_before, messages_before = Case.objects.count(), Message.objects.count()
    user = center.user(role)
    if user is not None:
        client.force_login(user)

    data = {key: _fill(value, center) for key, value in body.items()}
    call = getattr(client, method)
    if method == "get":
        response = call(_fill(path, center))
    else:
        response = call(_fill(path, center), data, content_type="application/json")

    assert response.status_code == expected, response.content
    if expected >= 400:
        # a refusal writes nothing
        assert list(MergeRecord.objects.values_list("pk", "undone_at")) == merges_before
        assert (Case.objects.count(), Message.objects.count()) == (cases_before, messages_before)
    if expected == 404:
        assert response.json()["code"] == "not_found"


# The agent's conversation socket: who may connect, and what each frame on conversation A
# answers ("ack", or the error code).
SOCKET = {
    "admin": 4403,
    "supervisor": 4403,
    "other_supervisor": 4403,
    "intake": 4403,
    "anonymous": 4401,
    "holder": {"reply": "ack", "close": "ack"},
    "colleague": {"reply": "not_yours", "close": "not_yours"},
    "other": {"reply": "not_found", "close": "not_found"},
}


@pytest.mark.parametrize(("role", "expected"), list(SOCKET.items()), ids=list(SOCKET))
def test_agent_conversation_socket_authorization(center, transactional_db, client, role, expected):
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost")]
    user = center.user(role)
    if user is not None:
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    conversation_id = center.conversation_a.pk

    async def scenario() -> Any:
        socket = WebsocketCommunicator(application, "/ws/agent/conversations/", headers=headers)
        connected, _ = await socket.connect()
        assert connected
        first = await socket.receive_output(timeout=5)
        if first["type"] == "websocket.close":
            # Let the application finish before the loop closes (a refused socket's consumer
            # still waits for the disconnect).
            await socket.disconnect()
            return first["code"]
        answers = {}
        for ref, frame in enumerate(["reply", "close"]):
            await socket.send_json_to(
                {"type": frame, "conversation_id": conversation_id, "text": "Hi", "ref": ref}
            )
            while True:
                answer = await socket.receive_json_from(timeout=5)
                if answer.get("ref") == ref and answer["type"] in ("ack", "error"):
                    break
            answers[frame] = "ack" if answer["type"] == "ack" else answer["code"]
        await socket.disconnect()
        return answers

    assert asyncio.run(scenario()) == expected
    center.conversation_a.refresh_from_db()
    assert center.conversation_a.status == ("ended" if role == "holder" else "active")
