"""Supervisor REST API: snapshot, history, and actions with their permissions and action log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from rest_framework.test import APIClient

from presence.models import Agent
from routing import services
from routing.models import ActionLog, AgentWork, WorkItem
from supervisor.models import QueueSample
from supervisor.services import record_queue_samples
from tests.factories import make_agent
from tests.supervisor.conftest import make_supervisor

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def people(center, supervisor):
    """ann (Chat, Cases) and ben (Chat) online; cid (Other) online; casey supervises Cases."""
    agents = {
        "ann": make_agent(
            "ann",
            queues=[center.chat_queue, center.cases_queue],
            config=center.api_agents,
            status=center.available,
        ),
        "ben": make_agent(
            "ben", queues=[center.chat_queue], config=center.api_agents, status=center.available
        ),
        "cid": make_agent(
            "cid", queues=[center.other_queue], config=center.api_agents, status=center.available
        ),
    }
    return {**agents, "sue": supervisor, "casey": make_supervisor("casey", center.cases_queue)}


def chat_item(center, subject="Where is my order?", now=T0) -> WorkItem:
    return services.enqueue_work(
        queue=center.chat_queue, channel=center.chat, subject=subject, now=now
    )


# --- Snapshot --------------------------------------------------------------------------------


def test_snapshot_endpoint_returns_the_full_snapshot(center, people):
    chat_item(center)

    with time_machine.travel(T0 + timedelta(seconds=42), tick=False):
        body = client_for(people["sue"]).get("/api/supervisor/snapshot/").json()

    chat = next(q for q in body["queues"] if q["name"] == "Chat")
    assert (chat["waiting"], chat["longest_wait_seconds"]) == (1, 42)
    assert chat["service_level_target_seconds"] == 20
    assert [a["username"] for a in body["agents"]] == ["ann", "ben"]
    assert body["agents"][0]["has_room"] is True
    assert [i["subject"] for i in body["next_in_line"]] == ["Where is my order?"]
    assert body["work"] == []


# --- History ---------------------------------------------------------------------------------


def test_history_returns_samples_of_supervised_queues(center, people):
    # given samples at 9:00, 9:01 and 9:02 with one item waiting since 9:00
    chat_item(center)
    for minute in range(3):
        record_queue_samples(now=T0 + timedelta(minutes=minute))

    with time_machine.travel(T0 + timedelta(minutes=2, seconds=30), tick=False):
        response = client_for(people["sue"]).get(
            "/api/supervisor/history/", {"since": "2026-03-02T09:00:30Z"}
        )

    assert response.status_code == 200
    body = response.json()
    assert body["since"] == "2026-03-02T09:00:30+00:00"
    assert [q["name"] for q in body["queues"]] == ["Cases", "Chat"]  # not Other
    chat = body["queues"][1]
    assert chat["service_level_goal_percent"] == 80
    assert chat["samples"] == [
        {
            "at": "2026-03-02T09:01:00+00:00",
            "waiting": 1,
            "longest_wait_seconds": 60,
            "service_level_percent": None,
        },
        {
            "at": "2026-03-02T09:02:00+00:00",
            "waiting": 1,
            "longest_wait_seconds": 120,
            "service_level_percent": None,
        },
    ]


def test_history_of_one_queue_and_service_level_in_samples(center, people):
    item = chat_item(center)
    services.route_waiting_work(now=T0 + timedelta(seconds=5))
    work = AgentWork.objects.get(item=item)
    services.accept_work(work_id=work.pk, agent=work.agent, now=T0 + timedelta(seconds=10))
    record_queue_samples(now=T0 + timedelta(minutes=1))

    with time_machine.travel(T0 + timedelta(minutes=2), tick=False):
        body = (
            client_for(people["sue"])
            .get(
                "/api/supervisor/history/",
                {"queue": center.chat_queue.pk, "since": "2026-03-02T08:00:00Z"},
            )
            .json()
        )

    assert [q["name"] for q in body["queues"]] == ["Chat"]
    assert body["queues"][0]["samples"][0]["service_level_percent"] == 100.0


def test_history_refuses_bad_input_and_other_queues(center, people):
    sue = client_for(people["sue"])
    with time_machine.travel(T0, tick=False):
        bad = sue.get("/api/supervisor/history/", {"since": "yesterday"})
        future = sue.get("/api/supervisor/history/", {"since": "2026-03-02T10:00:00Z"})
        too_old = sue.get("/api/supervisor/history/", {"since": "2026-02-01T00:00:00Z"})
        other = sue.get("/api/supervisor/history/", {"queue": center.other_queue.pk})
        not_a_number = sue.get("/api/supervisor/history/", {"queue": "chat"})

    assert bad.status_code == 400
    assert "ISO 8601" in bad.json()["detail"]
    assert future.status_code == 400
    assert too_old.status_code == 400
    assert "within the last 48 hours" in too_old.json()["detail"]
    assert other.status_code == 404
    assert not_a_number.status_code == 400


def test_history_and_actions_are_for_supervisors_only(center, people):
    item = chat_item(center)
    agent = client_for(people["ann"].user)
    anonymous = client_for(None)

    assert agent.get("/api/supervisor/history/").status_code == 403
    assert anonymous.get("/api/supervisor/history/").status_code == 401
    refused = agent.post(
        f"/api/supervisor/items/{item.pk}/push/", {"agent": people["ann"].pk}, format="json"
    )
    assert refused.status_code == 403
    assert AgentWork.objects.count() == 0
    assert ActionLog.objects.count() == 0


def test_sampler_writes_one_row_per_queue_and_drops_old_ones(center, settings):
    settings.SUPERVISOR_SAMPLE_RETENTION_DAYS = 7
    record_queue_samples(now=T0 - timedelta(days=8))

    written = record_queue_samples(now=T0)

    assert written == 3
    assert sorted(QueueSample.objects.values_list("queue__name", "at")) == [
        ("Cases", T0),
        ("Chat", T0),
        ("Other", T0),
    ]


# --- Actions ---------------------------------------------------------------------------------


def test_supervisor_sets_an_agent_offline_and_it_is_logged(center, people):
    ann = people["ann"]

    response = client_for(people["sue"]).post(
        f"/api/supervisor/agents/{ann.pk}/presence/", {"status": None}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["online"] is False
    ann.refresh_from_db()
    assert ann.status_id is None
    log = ActionLog.objects.get()
    assert (log.verb, log.actor, log.agent, log.detail) == (
        "set_presence",
        people["sue"],
        ann,
        {"status": None},
    )


def test_supervisor_sets_a_status_the_agent_could_not_pick(center, people):
    # the agents' configuration allows only Available; a supervisor may still set Busy
    center.api_agents.allowed_statuses.set([center.available])
    ben = people["ben"]

    response = client_for(people["sue"]).post(
        f"/api/supervisor/agents/{ben.pk}/presence/", {"status": center.busy.pk}, format="json"
    )

    assert response.status_code == 200
    assert Agent.objects.get(pk=ben.pk).status == center.busy
    assert ActionLog.objects.get().detail == {"status": "Busy"}


def test_presence_of_an_agent_outside_my_queues_is_not_found(center, people):
    cid = people["cid"]

    response = client_for(people["sue"]).post(
        f"/api/supervisor/agents/{cid.pk}/presence/", {"status": None}, format="json"
    )
    unknown = client_for(people["sue"]).post(
        f"/api/supervisor/agents/{people['ann'].pk}/presence/", {"status": 999999}, format="json"
    )
    missing = client_for(people["sue"]).post(
        f"/api/supervisor/agents/{people['ann'].pk}/presence/", {}, format="json"
    )

    assert response.status_code == 404
    assert unknown.status_code == 400
    assert unknown.json()["detail"] == "No presence status 999999."
    assert missing.status_code == 400
    assert Agent.objects.get(pk=cid.pk).status == center.available
    assert ActionLog.objects.count() == 0


def test_supervisor_moves_a_waiting_item_and_it_keeps_its_age(center, people):
    item = chat_item(center)

    response = client_for(people["sue"]).post(
        f"/api/supervisor/items/{item.pk}/move/", {"queue": center.cases_queue.pk}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["queue"] == "Cases"
    item.refresh_from_db()
    assert (item.queue, item.status, item.enqueued_at) == (center.cases_queue, "waiting", T0)
    log = ActionLog.objects.get()
    assert (log.verb, log.actor, log.item) == ("move_item", people["sue"], item)
    assert log.detail == {"from_queue": center.chat_queue.pk, "to_queue": center.cases_queue.pk}


def test_move_refusals_change_nothing(center, people):
    item = chat_item(center)
    sue, casey = client_for(people["sue"]), client_for(people["casey"])

    # into a queue Sue does not supervise
    to_other = sue.post(
        f"/api/supervisor/items/{item.pk}/move/", {"queue": center.other_queue.pk}, format="json"
    )
    # an item in a queue Casey does not supervise
    not_hers = casey.post(
        f"/api/supervisor/items/{item.pk}/move/", {"queue": center.cases_queue.pk}, format="json"
    )
    same = sue.post(
        f"/api/supervisor/items/{item.pk}/move/", {"queue": center.chat_queue.pk}, format="json"
    )
    no_queue = sue.post(f"/api/supervisor/items/{item.pk}/move/", {"queue": 999999}, format="json")

    assert to_other.status_code == 403
    assert not_hers.status_code == 404
    assert same.status_code == 400
    assert no_queue.status_code == 404
    item.refresh_from_db()
    assert item.queue == center.chat_queue
    assert ActionLog.objects.count() == 0


def test_moving_an_assigned_item_is_a_conflict(center, people):
    item = chat_item(center)
    services.route_waiting_work(now=T0)
    work = AgentWork.objects.get(item=item)
    services.accept_work(work_id=work.pk, agent=work.agent, now=T0)

    response = client_for(people["sue"]).post(
        f"/api/supervisor/items/{item.pk}/move/", {"queue": center.cases_queue.pk}, format="json"
    )

    assert response.status_code == 409
    assert ActionLog.objects.count() == 0


def test_supervisor_pushes_an_item_to_a_chosen_agent(center, people):
    item = chat_item(center)
    ben = people["ben"]

    response = client_for(people["sue"]).post(
        f"/api/supervisor/items/{item.pk}/push/", {"agent": ben.pk}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["state"], body["item_id"]) == ("pushed", item.pk)
    assert body["why"] == "Pushed by supervisor sue."
    work = AgentWork.objects.get(item=item)
    assert (work.agent, work.state) == (ben, "pushed")
    log = ActionLog.objects.get()
    assert (log.verb, log.actor, log.item, log.agent) == ("push_item", people["sue"], item, ben)


def test_push_refusals_change_nothing(center, people):
    chat = chat_item(center)
    sue, casey = client_for(people["sue"]), client_for(people["casey"])

    to_outsider = sue.post(
        f"/api/supervisor/items/{chat.pk}/push/", {"agent": people["cid"].pk}, format="json"
    )
    not_her_item = casey.post(
        f"/api/supervisor/items/{chat.pk}/push/", {"agent": people["ann"].pk}, format="json"
    )
    no_item = sue.post(
        "/api/supervisor/items/999999/push/", {"agent": people["ann"].pk}, format="json"
    )
    services.set_presence(agent=people["ben"], status=None)
    offline = sue.post(
        f"/api/supervisor/items/{chat.pk}/push/", {"agent": people["ben"].pk}, format="json"
    )

    assert to_outsider.status_code == 404
    assert not_her_item.status_code == 404
    assert no_item.status_code == 404
    assert offline.status_code == 409
    assert AgentWork.objects.count() == 0
    assert ActionLog.objects.count() == 0


def test_admin_may_act_on_any_queue(center, people, admin_user):
    item = services.enqueue_work(queue=center.other_queue, channel=center.chat, subject="x")

    response = client_for(admin_user).post(
        f"/api/supervisor/items/{item.pk}/push/", {"agent": people["cid"].pk}, format="json"
    )

    assert response.status_code == 200
    assert ActionLog.objects.get().actor == admin_user


# --- Push choices --------------------------------------------------------------------------------


def test_eligible_agents_lists_the_queues_members_with_the_engines_reasons(center, people):
    # given a chat waiting in Chat: Ann full, Ben Busy, and Dan Available with room
    dan = make_agent(
        "dan", queues=[center.chat_queue], config=center.api_agents, status=center.available
    )
    Agent.objects.filter(pk=people["ann"].pk).update(used_capacity=10)
    services.set_presence(agent=people["ben"], status=center.busy)
    item = chat_item(center)

    response = client_for(people["sue"]).get(f"/api/supervisor/items/{item.pk}/eligible-agents/")

    assert response.status_code == 200
    body = response.json()
    assert (body["item_id"], body["subject"]) == (item.pk, "Where is my order?")
    assert [
        (a["name"], a["can_push"], a["routable"], a["reason"], a["text"]) for a in body["agents"]
    ] == [
        ("dan", True, True, None, ""),
        ("ann", False, False, "capacity", "at capacity (0 spare, needs 1)"),
        ("ben", False, False, "channel", "not available for Chat"),
    ]
    assert body["agents"][0]["id"] == dan.pk


def test_eligible_agents_says_a_refusal_cooling_down_does_not_stop_a_push(center, people):
    services.set_presence(agent=people["ann"], status=None)
    item = chat_item(center)
    services.route_waiting_work(now=T0 + timedelta(seconds=1))
    work = AgentWork.objects.get(item=item)
    services.decline_work(work_id=work.pk, agent=people["ben"], now=T0 + timedelta(seconds=2))

    with time_machine.travel(T0 + timedelta(seconds=5), tick=False):
        body = client_for(people["sue"]).get(f"/api/supervisor/items/{item.pk}/eligible-agents/")

    ben = next(a for a in body.json()["agents"] if a["name"] == "ben")
    assert (ben["can_push"], ben["routable"], ben["reason"]) == (True, False, "refused")
    assert ben["text"].startswith("refused it (offered again after ")


def test_eligible_agents_is_for_supervisors_of_the_items_queue_and_waiting_items(center, people):
    item = chat_item(center)
    url = f"/api/supervisor/items/{item.pk}/eligible-agents/"

    assert client_for(people["casey"]).get(url).status_code == 404
    assert client_for(people["ann"].user).get(url).status_code == 403
    assert (
        client_for(people["sue"]).get("/api/supervisor/items/999999/eligible-agents/").status_code
        == 404
    )
    services.route_waiting_work()
    offered = client_for(people["sue"]).get(url)
    assert offered.status_code == 409
    assert offered.json()["detail"] == "Only waiting items can be pushed to an agent."
