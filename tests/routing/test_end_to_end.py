"""End to end through the production parts: HTTP (daphne), Redis, a real Celery worker, PostgreSQL.

Intake posts an item over HTTP; the worker's routing pass offers it to the agent; the agent
accepts and closes over HTTP; capacity comes back.
"""

from __future__ import annotations

import pytest
import requests
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token

from tests.factories import (
    PresenceConfigurationFactory,
    QueueFactory,
    ServiceChannelFactory,
    make_agent,
    make_status,
)
from tests.harness import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.postgres_only]


@pytest.fixture
def stack(live_asgi_server, settings):
    settings.ROUTING_MODE = "manual"  # setup must not race the worker; the server routes
    chat = ServiceChannelFactory(key="chat", label="Chat")
    queue = QueueFactory(name="Support")
    status = make_status("Available", [chat])
    config = PresenceConfigurationFactory(name="api agents", capacity=4, console_required=False)
    agent = make_agent("ann", queues=[queue], config=config)
    intake = User.objects.create_user("crm", password="crm-pass-123")
    intake.groups.add(Group.objects.get_or_create(name="intake")[0])
    return {
        "url": live_asgi_server,
        "queue": queue,
        "chat": chat,
        "status": status,
        "agent": agent,
        "agent_auth": {"Authorization": f"Token {Token.objects.create(user=agent.user).key}"},
        "intake_auth": {"Authorization": f"Token {Token.objects.create(user=intake).key}"},
    }


def test_intake_to_offer_to_accept_to_close_through_the_worker(stack):
    url, agent_auth = stack["url"], stack["agent_auth"]
    http = requests.Session()

    # The agent goes available over the API: routable at once.
    r = http.put(
        f"{url}/api/me/presence/",
        json={"status": stack["status"].pk},
        headers=agent_auth,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json()["used_capacity"] == 0

    # Intake creates a work item over HTTP.
    r = http.post(
        f"{url}/api/work-items/",
        json={
            "queue": stack["queue"].pk,
            "channel": stack["chat"].pk,
            "subject": "Refund please",
            "priority": 3,
            "payload": {"order": "A-1001"},
        },
        headers=stack["intake_auth"],
        timeout=10,
    )
    assert r.status_code == 201, r.text
    item_id = r.json()["id"]

    # The worker routes it: the offer appears in the agent's work.
    def my_offers():
        work = http.get(f"{url}/api/me/work/", headers=agent_auth, timeout=10).json()
        rows = work["results"] if isinstance(work, dict) else work
        return [w for w in rows if w["item_id"] == item_id and w["state"] == "pushed"]

    offer = wait_for(my_offers, what="the offer to reach the agent")[0]
    assert offer["subject"] == "Refund please"
    assert offer["why"].startswith("Least active")

    r = http.post(f"{url}/api/agent-work/{offer['id']}/accept/", headers=agent_auth, timeout=10)
    assert r.status_code == 200, r.text
    r = http.post(f"{url}/api/agent-work/{offer['id']}/accept/", headers=agent_auth, timeout=10)
    assert r.status_code == 409  # a duplicate accept changes nothing and says why

    presence = http.get(f"{url}/api/me/presence/", headers=agent_auth, timeout=10).json()
    assert (presence["used_capacity"], presence["open_count"]) == (1, 1)

    r = http.post(
        f"{url}/api/agent-work/{offer['id']}/close/",
        json={"note": "Refunded"},
        headers=agent_auth,
        timeout=10,
    )
    assert r.status_code == 200, r.text

    presence = http.get(f"{url}/api/me/presence/", headers=agent_auth, timeout=10).json()
    assert (presence["used_capacity"], presence["open_count"]) == (0, 0)
    item = http.get(
        f"{url}/api/work-items/{item_id}/", headers=stack["intake_auth"], timeout=10
    ).json()
    assert item["status"] == "closed"


def test_unaccepted_offer_times_out_through_beat_and_goes_to_the_next_agent(
    stack, celery_beat_process
):
    from routing.models import RoutingConfiguration

    RoutingConfiguration.objects.filter(pk=stack["queue"].routing_config_id).update(
        push_timeout_seconds=5
    )
    bob = make_agent("bob", queues=[stack["queue"]], config=stack["agent"].presence_config)
    url, http = stack["url"], requests.Session()
    bob_auth = {"Authorization": f"Token {Token.objects.create(user=bob.user).key}"}
    r = http.put(
        f"{url}/api/me/presence/",
        json={"status": stack["status"].pk},
        headers=stack["agent_auth"],
        timeout=10,
    )
    assert r.status_code == 200, r.text
    r = http.post(
        f"{url}/api/work-items/",
        json={"queue": stack["queue"].pk, "channel": stack["chat"].pk, "subject": "Anyone?"},
        headers=stack["intake_auth"],
        timeout=10,
    )
    item_id = r.json()["id"]

    def offers(auth):
        work = http.get(f"{url}/api/me/work/", headers=auth, timeout=10).json()
        rows = work["results"] if isinstance(work, dict) else work
        return [w for w in rows if w["item_id"] == item_id and w["state"] == "pushed"]

    wait_for(lambda: offers(stack["agent_auth"]), what="the first offer")
    r = http.put(
        f"{url}/api/me/presence/", json={"status": stack["status"].pk}, headers=bob_auth, timeout=10
    )
    assert r.status_code == 200

    # Nobody accepts: the sweep (beat, every second) expires it and routes it to bob.
    wait_for(lambda: offers(bob_auth), timeout=30, what="the offer to move to bob")
    assert offers(stack["agent_auth"]) == []
    history = http.get(
        f"{url}/api/work-items/{item_id}/", headers=stack["intake_auth"], timeout=10
    ).json()
    states = sorted(w["state"] for w in history["history"])
    assert states == ["pushed", "timed_out"]
