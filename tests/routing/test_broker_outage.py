"""Redis goes down under a running system: committed writes still answer success.

A real daphne and a real Celery worker run on a Redis of the test's own (broker db 0, channel
layer db 1); the test kills that Redis (SIGKILL, data lost), takes in an item, closes work and
changes presence over HTTP, reads the nudge-failure counter on ``/metrics`` and readiness on
``/readyz``, brings Redis back, and shows routing resumes through the sweep.
"""

from __future__ import annotations

import re

import pytest
import requests
from rest_framework.authtoken.models import Token

from omnirouter import roles
from routing import services, tasks
from routing.models import AgentWork, AgentWorkState, WorkItem, WorkItemStatus
from tests.api_support import make_user
from tests.factories import enqueue, make_agent
from tests.harness import RedisServer, free_port, start_celery_worker, start_daphne

METRICS_TOKEN = "scrape-token-for-tests"

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(port=free_port(), workdir=tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stack(redis_server, service_env, tmp_path):
    """daphne and a Celery worker on ``redis_server``; yields daphne's base URL once ready."""
    env = {
        k: v
        for k, v in service_env.items()
        if k not in ("CELERY_BROKER_URL", "CHANNEL_LAYER_REDIS_URL")
    }
    env.update(REDIS_URL=redis_server.url, METRICS_BEARER_TOKEN=METRICS_TOKEN)
    worker = start_celery_worker(env, tmp_path / "worker.log")
    web, base = start_daphne(env, tmp_path / "daphne.log")
    try:
        web.wait_until(lambda: _ready(base)[0] == 200, timeout=60, what="readiness 200")
        yield base
    finally:
        web.stop()
        worker.stop()


def _ready(base: str) -> tuple[int, str]:
    response = requests.get(f"{base}/readyz", headers={"Accept": "text/plain"}, timeout=10)
    return response.status_code, response.text


def _nudge_failures(base: str, hook: str) -> float:
    text = requests.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    ).text
    found = re.search(rf'^omnirouter_nudge_failures_total{{hook="{hook}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _token(user) -> dict[str, str]:
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


def test_writes_answer_success_while_redis_is_down_and_routing_resumes(
    world, api_config, redis_server, stack
):
    base = stack
    crm = _token(make_user("crm", group=roles.INTAKE))
    alice = make_agent("alice", queues=[world.support], config=api_config, status=world.available)
    as_alice = _token(alice.user)
    enqueue(world.support, world.chat, "Held by Alice")
    services.route_waiting_work()
    held = services.accept_work(work_id=alice.works.get().pk, agent=alice)
    # Given Redis dies under the running system
    failures_before = _nudge_failures(base, "routing_pass")
    redis_server.stop()

    # When the CRM sends an item, Alice closes her work and changes status
    created = requests.post(
        f"{base}/api/work-items/",
        json={"queue": world.support.pk, "channel": world.chat.pk, "subject": "Refund"},
        headers=crm,
        timeout=30,
    )
    closed = requests.post(
        f"{base}/api/agent-work/{held.pk}/close/", json={"note": ""}, headers=as_alice, timeout=30
    )
    presence = requests.put(
        f"{base}/api/me/presence/",
        json={"status": world.chat_only.pk},
        headers=as_alice,
        timeout=30,
    )

    # Then every committed write answers success, and the writes are there
    assert (created.status_code, closed.status_code, presence.status_code) == (201, 200, 200)
    item = WorkItem.objects.get(pk=created.json()["id"])
    assert (item.subject, item.status) == ("Refund", WorkItemStatus.WAITING)
    assert AgentWork.objects.get(pk=held.pk).state == AgentWorkState.CLOSED
    alice.refresh_from_db()
    assert alice.status == world.chat_only
    # and each failed routing nudge was counted (one per write)
    assert _nudge_failures(base, "routing_pass") == failures_before + 3
    # and readiness says what is down
    status, body = _ready(base)
    assert status == 503
    assert "Redis(Celery broker, db 0): Unavailable" in body
    assert "Redis(channel layer, db 1): Unavailable" in body
    assert "Celery worker: Unavailable" in body
    assert "Database(alias='default'): OK" in body

    # When Redis comes back, the worker reconnects and readiness recovers
    redis_server.start()
    requests_ok = []

    def ready_again() -> bool:
        requests_ok.append(_ready(base))
        return requests_ok[-1][0] == 200

    _wait(ready_again, timeout=60)
    # and the next sweep (beat sends one every second; called here) routes the waiting item
    tasks.sweep()
    offer = AgentWork.objects.get(item=item)
    assert (offer.agent, offer.state) == (alice, AgentWorkState.PUSHED)


def _wait(condition, *, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"not true within {timeout:.0f}s")
