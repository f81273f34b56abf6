"""Metric correctness on a scripted day with a frozen clock, queue scoping, and query counts.

The day, in Asia/Tokyo (the configured TIME_ZONE), times hh:mm:ss local on 2026-03-10 unless
marked "yesterday". Queues: Chat (target 20 s), Cases (target 60 s). Agents: ann (Chat, Cases),
ben (Chat), cid (Other).

yesterday 23:00:00  ann goes Available
yesterday 23:40:00  Z enters Chat; 23:40:00 offered to ann; 23:40:10 ann declines; 23:45 canceled
yesterday 23:50:00  Y enters Chat; 23:59:40 offered to ann; 23:59:50 ann accepts
          00:10:00  ann closes Y                 -> handled today, handle time 610 s
          08:00:00  A enters Chat; 08:00:05 offered to ann; 08:00:15 ann declines
          08:00:16  ben goes Available; A offered to ben; 08:00:20 ben accepts -> answer 20 s
          08:01:00  B enters Chat; offered to ann; 08:03:01 ann's offer times out
          08:03:01  B offered to ben; 08:03:11 ben accepts       -> answer 131 s (late)
          08:04:00  ben closes A (handle 220 s); 08:05:00 ben closes B (handle 109 s)
          08:05:30  C enters Cases; offered to ann; 08:06:00 ann accepts -> answer 30 s
          08:06:30  D enters Chat; 08:06:40 canceled  (abandoned after 10 s: within target)
          08:07:00  E enters Chat; 08:07:50 canceled  (abandoned after 50 s: after target)
          08:08:30  I enters Chat; offered to ben (still pushed at the end)
          08:09:00  F enters Chat; 08:09:30 G enters Chat; 08:09:45 H enters Cases
          08:10:00  now
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from presence.models import Agent
from routing import services
from routing.models import AgentWork, WorkItem
from routing.selectors import explain_item
from supervisor.selectors import day_start, snapshot
from tests.factories import PresenceConfigurationFactory, make_agent
from tests.supervisor.conftest import make_supervisor

TOKYO = ZoneInfo("Asia/Tokyo")


def at(hms: str, *, yesterday: bool = False) -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    day = 9 if yesterday else 10
    return datetime(2026, 3, day, h, m, s, tzinfo=TOKYO)


NOW = at("08:10:00")


@pytest.fixture(autouse=True)
def _tokyo(settings):
    settings.TIME_ZONE = "Asia/Tokyo"


def _work(item: WorkItem) -> AgentWork:
    return AgentWork.objects.filter(item=item).order_by("-id").first()


def _route(when: datetime) -> None:
    services.route_waiting_work(now=when)


@pytest.fixture
def day(center):
    """Plays the scripted day; returns the items and agents by name."""
    c = center
    ann = make_agent("ann", queues=[c.chat_queue, c.cases_queue], config=c.api_agents)
    ben = make_agent("ben", queues=[c.chat_queue], config=c.api_agents)
    cid = make_agent("cid", queues=[c.other_queue], config=c.api_agents)

    def enqueue(queue, subject, when):
        return services.enqueue_work(queue=queue, channel=c.chat, subject=subject, now=when)

    services.set_presence(agent=ann, status=c.available, now=at("23:00:00", yesterday=True))

    z = enqueue(c.chat_queue, "Z", at("23:40:00", yesterday=True))
    _route(at("23:40:00", yesterday=True))
    services.decline_work(work_id=_work(z).pk, agent=ann, now=at("23:40:10", yesterday=True))
    services.cancel_work_item(item_id=z.pk, now=at("23:45:00", yesterday=True))

    y = enqueue(c.chat_queue, "Y", at("23:50:00", yesterday=True))
    _route(at("23:59:40", yesterday=True))
    services.accept_work(work_id=_work(y).pk, agent=ann, now=at("23:59:50", yesterday=True))
    services.close_work(work_id=_work(y).pk, agent=ann, now=at("00:10:00"))

    a = enqueue(c.chat_queue, "A", at("08:00:00"))
    _route(at("08:00:05"))
    assert _work(a).agent_id == ann.pk
    services.decline_work(work_id=_work(a).pk, agent=ann, now=at("08:00:15"))
    services.set_presence(agent=ben, status=c.available, now=at("08:00:16"))
    _route(at("08:00:16"))
    assert _work(a).agent_id == ben.pk
    services.accept_work(work_id=_work(a).pk, agent=ben, now=at("08:00:20"))

    b = enqueue(c.chat_queue, "B", at("08:01:00"))
    _route(at("08:01:00"))
    assert _work(b).agent_id == ann.pk
    assert services.expire_offers(now=at("08:03:01")) == 1
    _route(at("08:03:01"))
    assert _work(b).agent_id == ben.pk
    services.accept_work(work_id=_work(b).pk, agent=ben, now=at("08:03:11"))
    services.close_work(work_id=_work(a).pk, agent=ben, now=at("08:04:00"))
    services.close_work(work_id=_work(b).pk, agent=ben, now=at("08:05:00"))

    cc = enqueue(c.cases_queue, "C", at("08:05:30"))
    _route(at("08:05:30"))
    services.accept_work(work_id=_work(cc).pk, agent=ann, now=at("08:06:00"))

    d = enqueue(c.chat_queue, "D", at("08:06:30"))
    services.cancel_work_item(item_id=d.pk, now=at("08:06:40"))
    e = enqueue(c.chat_queue, "E", at("08:07:00"))
    services.cancel_work_item(item_id=e.pk, now=at("08:07:50"))

    i = enqueue(c.chat_queue, "I", at("08:08:30"))
    _route(at("08:08:30"))
    assert _work(i).agent_id == ben.pk

    f = enqueue(c.chat_queue, "F", at("08:09:00"))
    g = enqueue(c.chat_queue, "G", at("08:09:30"))
    h = enqueue(c.cases_queue, "H", at("08:09:45"))
    x = enqueue(c.other_queue, "X", at("08:00:00"))
    return {
        "ann": ann,
        "ben": ben,
        "cid": cid,
        **{
            n: it
            for n, it in zip("ABCDEFGHIXYZ", [a, b, cc, d, e, f, g, h, i, x, y, z], strict=True)
        },
    }


def _by_name(rows):
    return {row["name"]: row for row in rows}


def test_day_starts_at_local_midnight(settings):
    # given Tokyo time, when it is 08:10 there, then the day began at 00:00 Tokyo (15:00 UTC)
    assert day_start(NOW) == datetime(2026, 3, 9, 15, 0, tzinfo=ZoneInfo("UTC"))


def test_queue_figures_of_the_scripted_day(day, supervisor):
    # when the supervisor of Chat and Cases looks at 08:10:00
    snap = snapshot(supervisor, NOW)

    # then each figure matches the hand count in the module docstring
    queues = _by_name(snap["queues"])
    assert list(queues) == ["Cases", "Chat"]
    chat, cases = queues["Chat"], queues["Cases"]
    assert chat["waiting"] == 2  # F, G
    assert chat["longest_wait_seconds"] == 60  # F since 08:09:00
    assert chat["average_wait_seconds"] == 45  # (60 + 30) / 2
    assert chat["offered"] == 1  # I
    assert chat["assigned"] == 0
    assert chat["answered_today"] == 2  # A, B (Y was accepted yesterday)
    assert chat["answered_within_target_today"] == 1  # A in exactly 20 s
    assert chat["average_speed_to_answer_seconds"] == 75  # (20 + 131) / 2 = 75.5
    assert chat["handled_today"] == 3  # Y, A, B
    assert chat["average_handle_seconds"] == 313  # (610 + 220 + 109) / 3
    assert chat["abandoned_today"] == 2  # D, E (Z was yesterday)
    assert chat["abandoned_after_target_today"] == 1  # E after 50 s
    assert chat["service_level_percent"] == 33.3  # 1 / (2 answered + 1 late abandon)
    assert chat["service_level_goal_percent"] == 80
    assert chat["service_level_met"] is False

    assert cases["waiting"] == 1  # H
    assert cases["longest_wait_seconds"] == 15
    assert cases["average_wait_seconds"] == 15
    assert cases["offered"] == 0
    assert cases["assigned"] == 1  # C
    assert cases["answered_today"] == 1
    assert cases["average_speed_to_answer_seconds"] == 30
    assert cases["handled_today"] == 0
    assert cases["average_handle_seconds"] is None
    assert cases["abandoned_today"] == 0
    assert cases["service_level_percent"] == 100.0
    assert cases["service_level_met"] is True

    assert snap["totals"]["waiting"] == 3
    assert snap["totals"]["longest_wait_seconds"] == 60
    assert snap["totals"]["service_level_percent"] == 50.0  # 2 within / (3 answered + 1 late)


def test_agent_figures_of_the_scripted_day(day, supervisor):
    snap = snapshot(supervisor, NOW)

    agents = {a["username"]: a for a in snap["agents"]}
    assert list(agents) == ["ann", "ben"]  # cid is only in Other
    ann, ben = agents["ann"], agents["ben"]
    assert ann["status"] == "Available"
    assert ann["seconds_in_status"] == 9 * 3600 + 10 * 60  # since 23:00 yesterday
    assert (ann["used_capacity"], ann["capacity"], ann["open_count"]) == (1, 10, 1)
    assert [(i["subject"], i["state"], i["seconds_in_state"]) for i in ann["open_items"]] == [
        ("C", "opened", 240)
    ]
    assert ann["declined_today"] == 1  # A (Z was declined yesterday)
    assert ann["timed_out_today"] == 1  # B
    assert ann["handled_today"] == 1  # Y
    assert ann["average_handle_seconds"] == 610
    assert ann["has_room"] is True
    assert ann["queue_ids"] == sorted([day["C"].queue_id, day["A"].queue_id])

    assert ben["seconds_in_status"] == 584  # since 08:00:16
    assert [(i["subject"], i["state"], i["seconds_in_state"]) for i in ben["open_items"]] == [
        ("I", "pushed", 90)
    ]
    assert (ben["declined_today"], ben["timed_out_today"], ben["handled_today"]) == (0, 0, 2)
    assert ben["average_handle_seconds"] == 164  # (220 + 109) / 2 = 164.5


def test_assigned_work_lists_live_offers_and_assignments_with_why(day, supervisor):
    snap = snapshot(supervisor, NOW)

    assert snap["work_total"] == 2
    rows = [
        (
            w["subject"],
            w["agent"],
            w["queue"],
            w["channel_label"],
            w["state"],
            w["seconds_in_state"],
        )
        for w in snap["work"]
    ]
    assert rows == [
        ("C", "ann", "Cases", "Chat", "opened", 240),
        ("I", "ben", "Chat", "Chat", "pushed", 90),
    ]
    why = {w["subject"]: w["why"] for w in snap["work"]}
    assert why["C"] == _work(day["C"]).routing_reason["text"]
    assert why["C"].startswith("Least active: 0 open items")
    assert why["I"].startswith("Least active: 0 open items")


def test_next_in_line_is_routing_order(day, supervisor):
    snap = snapshot(supervisor, NOW)

    assert [(i["subject"], i["wait_seconds"]) for i in snap["next_in_line"]] == [
        ("F", 60),
        ("G", 30),
        ("H", 15),
    ]


def test_supervisor_sees_only_their_queues_and_those_members(day, center):
    # given a supervisor of Cases only
    casey = make_supervisor("casey", center.cases_queue)

    snap = snapshot(casey, NOW)

    # then only Cases, its one member, and the work in Cases
    assert [q["name"] for q in snap["queues"]] == ["Cases"]
    assert [a["username"] for a in snap["agents"]] == ["ann"]
    assert [w["subject"] for w in snap["work"]] == ["C"]
    assert [i["subject"] for i in snap["next_in_line"]] == ["H"]
    # ann's used capacity is hers in full, but only Cases work is listed
    assert snap["agents"][0]["open_items"][0]["subject"] == "C"


def test_admin_sees_every_queue_and_agent(day, admin_user):
    snap = snapshot(admin_user, NOW)

    assert [q["name"] for q in snap["queues"]] == ["Cases", "Chat", "Other"]
    assert [a["username"] for a in snap["agents"]] == ["ann", "ben", "cid"]
    other = _by_name(snap["queues"])["Other"]
    assert (other["waiting"], other["longest_wait_seconds"]) == (1, 600)


def test_user_without_role_sees_nothing(day):
    nobody = get_user_model().objects.create_user(username="nobody", password="x" * 12)

    snap = snapshot(nobody, NOW)

    assert (snap["queues"], snap["agents"], snap["work"]) == ([], [], [])


def test_empty_queue_has_zeros_and_no_service_level(center, supervisor):
    snap = snapshot(supervisor, NOW)

    chat = _by_name(snap["queues"])["Chat"]
    assert (chat["waiting"], chat["longest_wait_seconds"], chat["average_wait_seconds"]) == (
        0,
        0,
        0,
    )
    assert chat["service_level_percent"] is None
    assert chat["service_level_met"] is None
    assert chat["average_speed_to_answer_seconds"] is None


def _count_snapshot_queries(username: str) -> int:
    user = get_user_model().objects.get(username=username)  # fresh: no cached roles
    with CaptureQueriesContext(connection) as queries:
        snapshot(user, NOW)
    return len(queries.captured_queries)


def test_query_count_does_not_grow_with_items_agents_or_history(
    day, center, supervisor, django_assert_num_queries
):
    # given the scripted day, counted once
    baseline = _count_snapshot_queries("sue")

    # when many more agents, waiting items and closed work are added
    for n in range(15):
        agent = make_agent(f"extra{n:02}", queues=[center.chat_queue], config=center.api_agents)
        services.set_presence(agent=agent, status=center.available, now=at("08:00:00"))
    for n in range(40):
        services.enqueue_work(
            queue=center.chat_queue, channel=center.chat, subject=f"more {n}", now=at("07:00:00")
        )
    _route(at("07:00:01"))
    for work in AgentWork.objects.filter(state="pushed", pushed_at=at("07:00:01")):
        services.accept_work(work_id=work.pk, agent=work.agent, now=at("07:00:02"))
        services.close_work(work_id=work.pk, agent=work.agent, now=at("07:01:00"))
    for n in range(30):
        services.enqueue_work(
            queue=center.cases_queue, channel=center.chat, subject=f"wait {n}", now=at("08:09:50")
        )

    # then the snapshot takes exactly as many queries as before
    user = get_user_model().objects.get(username="sue")
    with django_assert_num_queries(baseline):
        snap = snapshot(user, NOW)
    assert len(snap["agents"]) == 17
    assert (
        _by_name(snap["queues"])["Cases"]["waiting"]
        == WorkItem.objects.filter(queue=center.cases_queue, status="waiting").count()
    )
    assert snap["totals"]["handled_today"] > 40
    # Agents are read twice: names for the page, and the router's view of them (load, status
    # channels, queues) through routing.selectors.agent_views (three queries); their skills
    # once; the skills backlog is one query when no waiting item needs a skill (two otherwise).
    assert baseline == 16


def test_only_agents_online_for_a_channel_with_spare_capacity_have_room(center, supervisor):
    # given one agent Available, one Busy (online for no channel), one offline
    for name, status in (("ann", center.available), ("ben", center.busy), ("cid", None)):
        agent = make_agent(name, queues=[center.chat_queue], config=center.api_agents)
        services.set_presence(agent=agent, status=status, now=at("08:00:00"))

    snap = snapshot(supervisor, NOW)

    room = {a["username"]: (a["online"], a["has_room"]) for a in snap["agents"]}
    assert room == {"ann": (True, True), "ben": (True, False), "cid": (False, False)}
    assert (snap["totals"]["agents_online"], snap["totals"]["agents_with_room"]) == (2, 1)


def test_room_for_more_agrees_with_who_the_router_may_offer_a_one_unit_chat_to(
    center, supervisor, settings
):
    # given agents in every state the router cares about
    settings.CONSOLE_GRACE_SECONDS = 30
    console = PresenceConfigurationFactory(name="console", console_required=True)
    for name, status, config in (
        ("ann", center.available, center.api_agents),
        ("ben", center.busy, center.api_agents),
        ("cid", None, center.api_agents),
        ("dot", center.available, console),  # no live console
        ("eve", center.available, center.api_agents),  # full
    ):
        agent = make_agent(name, queues=[center.chat_queue], config=config)
        services.set_presence(agent=agent, status=status, now=at("08:00:00"))
    Agent.objects.filter(user__username="eve").update(used_capacity=10)
    item = services.enqueue_work(
        queue=center.chat_queue, channel=center.chat, subject="one unit", now=at("08:09:00")
    )

    snap = snapshot(supervisor, NOW)

    room = {a["username"] for a in snap["agents"] if a["has_room"]}
    may_take = {agent.user.username for agent, why in explain_item(item, now=NOW) if why is None}
    assert room == may_take == {"ann"}
