"""Exception rules: each trigger fires once per item, set-based, recorded, supervisors told."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from omnirouter import realtime
from omnirouter.errors import DomainError
from routing import services
from routing.models import (
    ActionLog,
    ExceptionFiring,
    ExceptionRule,
    ItemSkill,
    Skill,
    WorkItem,
)
from routing.tasks import exception_rules
from tests.api_support import client_for, make_user
from tests.factories import PresenceConfigurationFactory, QueueFactory, enqueue, make_agent
from tests.routing.scenario import at


def exception_rule(name, trigger, threshold, actions, *, queue=None):
    return services.save_exception_rule(
        rule=ExceptionRule(),
        changes={
            "name": name,
            "trigger": trigger,
            "threshold": threshold,
            "actions": actions,
            "queue": queue,
        },
    )


def items(world, count, *, seconds=0):
    return [enqueue(world.support, world.chat, f"item {i}", now=at(seconds)) for i in range(count)]


def test_waited_fires_once_per_item_after_n_seconds(world):
    # given a rule raising by 2 the priority of items that waited 60 s in Support
    exception_rule("Slow", "waited", 60, {"priority_by": 2}, queue=world.support)
    old, new = enqueue(world.support, world.chat, "old", now=at(0)), None
    new = enqueue(world.support, world.chat, "new", now=at(30))
    # when the rules run at 70 s, then again at 200 s
    assert services.run_exception_rules(now=at(70)) == {"Slow": 1}
    old.refresh_from_db()
    assert old.priority == 3
    assert services.run_exception_rules(now=at(200)) == {"Slow": 1}  # only "new" this time
    # then each fired once: "old" was not raised again
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.priority, new.priority) == (3, 3)
    assert services.run_exception_rules(now=at(400)) == {}
    assert ExceptionFiring.objects.count() == 2
    entry = ActionLog.objects.get(item=old, verb="exception_rule")
    assert entry.detail["rule"]["name"] == "Slow"
    assert (entry.detail["priority_before"], entry.detail["changes"]) == (5, {"priority_by": 2})


def test_queue_length_fires_for_the_items_of_a_long_queue(world):
    exception_rule("Crowded", "queue_length", 2, {"priority_to": 1, "queue": "VIP"})
    items(world, 2)
    assert services.run_exception_rules(now=at(1)) == {}  # 2 is not more than 2
    third = enqueue(world.support, world.chat, "third", now=at(2))
    assert services.run_exception_rules(now=at(3)) == {"Crowded": 3}
    third.refresh_from_db()
    # moved to VIP with VIP's routing priority, keeping its age
    assert (third.queue_id, third.routing_priority, third.priority, third.enqueued_at) == (
        world.vip.pk,
        1,
        1,
        at(2),
    )


def test_no_agent_fires_when_no_member_was_online_for_n_seconds(world, fast_passwords):
    # given Support with one member for chat, who is offline, and a rule for 120 s of that
    config = PresenceConfigurationFactory(name="p", capacity=3, console_required=False)
    alice = make_agent("alice", queues=[world.support], config=config)
    senior = Skill.objects.create(name="Senior")
    french = Skill.objects.create(name="French")
    exception_rule(
        "Nobody",
        "no_agent",
        120,
        {"add_skills": [{"skill": "Senior", "min_level": 2}], "drop_skills": ["French"]},
    )
    item = enqueue(world.support, world.chat, "x", now=at(0))
    services.skills.require_skills(item, [services.skills.need(french.pk, 1)])
    # alice's status last changed at start-up (now, in real time), long before at(0)
    alice.status_changed_at = at(-3600)
    alice.save(update_fields=["status_changed_at"])
    # when the rules run before and after 120 s
    assert services.run_exception_rules(now=at(60)) == {}
    assert services.run_exception_rules(now=at(130)) == {"Nobody": 1}
    # then the item needs Senior at 2 instead of French
    assert list(ItemSkill.objects.filter(item=item).values_list("skill_id", "min_level")) == [
        (senior.pk, 2)
    ]


def test_no_agent_does_not_fire_while_a_member_is_online_for_the_channel(world, fast_passwords):
    config = PresenceConfigurationFactory(name="p", capacity=3, console_required=False)
    make_agent("alice", queues=[world.support], config=config, status=world.available)
    exception_rule("Nobody", "no_agent", 10, {"priority_to": 1})
    enqueue(world.support, world.case, "x", now=at(0))  # alice is online for case too
    assert services.run_exception_rules(now=at(3600)) == {}


def test_supervisors_are_told_over_their_queue_group(world, published):
    exception_rule("Slow", "waited", 10, {"notify": True}, queue=world.support)
    items(world, 2)
    with published() as events:
        services.run_exception_rules(now=at(20))
    group = realtime.queue_group(world.support.pk)
    # one alert for the queue, not one per item
    assert events.count((group, realtime.QUEUE_ALERT)) == 1


def test_a_run_that_fires_nothing_publishes_nothing(world, published):
    exception_rule("Slow", "waited", 10, {"notify": True}, queue=world.support)
    items(world, 2)
    with published() as events:
        services.run_exception_rules(now=at(5))
    assert events == []


def test_the_task_runs_the_rules_and_twice_does_no_harm(world):
    exception_rule("Slow", "waited", 1, {"priority_by": 1})
    for i in range(2):
        enqueue(world.support, world.chat, f"item {i}", now=timezone.now() - timedelta(minutes=1))
    assert exception_rules() == 2
    assert exception_rules() == 0
    assert set(WorkItem.objects.values_list("priority", flat=True)) == {4}


def test_a_run_costs_the_same_whatever_the_number_of_items(world, django_assert_num_queries):
    exception_rule("Slow", "waited", 10, {"priority_by": 1, "queue": "VIP", "notify": True})
    counts = []
    for n in (1, 20):
        WorkItem.objects.all().delete()
        items(world, n)
        with django_assert_num_queries(
            {"postgresql": 11, "sqlite": 11}[connection.vendor]
        ) as captured:
            assert services.run_exception_rules(now=at(3600))["Slow"] == n
        counts.append(len(captured.captured_queries))
        ExceptionFiring.objects.all().delete()
    assert counts[0] == counts[1]


def test_bad_exception_rules_are_refused(world):
    with pytest.raises(DomainError) as refused:
        exception_rule("x", "waited", 10, {"priority_by": 2, "priority_to": 1})
    assert refused.value.message == "Raise priority by a step or to a level, not both."
    with pytest.raises(DomainError) as refused:
        exception_rule("x", "waited", 10, {"drop_skills": ["Klingon"]})
    assert refused.value.message == "No skill named “Klingon”."
    with pytest.raises(DomainError) as refused:
        exception_rule("x", "waited", 10, {"queue": "Nowhere"})
    assert refused.value.message == "No queue “Nowhere”."
    with pytest.raises(DomainError) as refused:
        exception_rule("x", "waited", 0, {"notify": True})
    assert refused.value.message == "N is a number of seconds, at least 1."
    assert not ExceptionRule.objects.exists()


def test_exception_rules_api_crud_and_versions(world):
    client = client_for(make_user("root", superuser=True))
    response = client.post(
        "/api/exception-rules/",
        {"name": "Slow", "trigger": "waited", "threshold": 300, "actions": {"queue": "vip"}},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["actions"] == {"queue": world.vip.pk}
    bad = client.post(
        "/api/exception-rules/",
        {"name": "Bad", "trigger": "waited", "threshold": 300, "actions": {"explode": 1}},
        format="json",
    )
    assert bad.status_code == 400
    assert bad.json()["detail"].startswith("Unknown action “explode”")
    rule_id = response.json()["id"]
    versions = client.get(f"/api/exception-rules/{rule_id}/versions/").json()
    assert [(v["kind"], v["by"]) for v in versions] == [("created", "root")]


def test_a_queue_of_other_rules_is_left_alone(world):
    other = QueueFactory(name="Other")
    exception_rule("Slow elsewhere", "waited", 10, {"priority_to": 1}, queue=other)
    items(world, 1)
    assert services.run_exception_rules(now=at(3600)) == {}
