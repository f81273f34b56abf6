"""Classification rules on the database: checked when saved, applied at intake and on demand,
previewed; versions and rollback of rules and routing configurations."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from omnirouter import roles
from omnirouter.errors import DomainError, NotFound
from routing import services
from routing.models import (
    ActionLog,
    ClassificationRule,
    ItemSkill,
    RoutingConfiguration,
    Skill,
    WorkItem,
)
from tests.api_support import client_for, make_supervisor, make_user
from tests.factories import QueueFactory, RoutingConfigurationFactory, enqueue
from tests.routing.scenario import at


@pytest.fixture
def billing(world):
    return QueueFactory(
        name="Billing",
        routing_config=RoutingConfigurationFactory(
            name="billing", routing_priority=3, size_units=2
        ),
    )


@pytest.fixture
def japanese(db):
    return Skill.objects.create(name="Japanese")


@pytest.fixture
def admin_user(db):
    return make_user("root", superuser=True)


def rule(name, conditions, actions, *, position=10, queue=None, actor=None):
    return services.save_classification_rule(
        rule=ClassificationRule(),
        changes={
            "name": name,
            "position": position,
            "conditions": conditions,
            "actions": actions,
            "queue": queue,
        },
        actor=actor,
    )


# --- Intake -----------------------------------------------------------------------------------


def test_intake_applies_the_rules_before_the_first_routing_pass(world, billing, japanese):
    # given a rule for gold-tier billing questions and one for Japanese speakers
    vip = rule(
        "VIP billing",
        [
            {"field": "bot.topic", "op": "eq", "value": "billing"},
            {"field": "payload.tier", "op": "eq", "value": "gold"},
        ],
        {"queue": "Billing", "priority": 2, "secondary_priority": 1},
        position=1,
    )
    ja = rule(
        "Japanese",
        [{"field": "language", "op": "eq", "value": "ja"}],
        {"skills": [{"skill": "japanese", "min_level": 3}]},
        position=2,
    )
    # when an item arrives in Support with those answers
    item = enqueue(
        world.support,
        world.chat,
        "Invoice",
        payload={"tier": "gold", "language": "ja", "bot_answers": {"topic": "billing"}},
        now=at(0),
    )
    # then it is in Billing, with Billing's routing priority and size, and needs Japanese
    item.refresh_from_db()
    assert (item.queue_id, item.routing_priority, item.size_units) == (billing.pk, 3, 2)
    assert (item.priority, item.secondary_priority, item.enqueued_at) == (2, 1, at(0))
    assert list(ItemSkill.objects.filter(item=item).values_list("skill__name", "min_level")) == [
        ("Japanese", Decimal("3.00"))
    ]
    # and the firing is on the item's history, with the rules and what changed
    entry = ActionLog.objects.get(item=item)
    assert entry.verb == "classified"
    assert entry.actor is None
    assert entry.detail["rules"] == [
        {
            "id": vip.pk,
            "name": "VIP billing",
            "position": 1,
            "because": ["bot.topic == billing", "payload.tier == gold"],
        },
        {"id": ja.pk, "name": "Japanese", "position": 2, "because": ["language == ja"]},
    ]
    assert entry.detail["changes"] == {
        "queue": {"from": world.support.pk, "to": billing.pk, "name": "Billing"},
        "priority": {"from": 5, "to": 2},
        "secondary_priority": {"from": 5, "to": 1},
        "skills": [{"skill": japanese.pk, "min_level": "3.00", "additional": False}],
    }


def test_an_item_no_rule_matches_is_left_alone_and_unlogged(world, billing):
    rule("VIP", [{"field": "payload.tier", "op": "eq", "value": "gold"}], {"priority": 1})
    item = enqueue(world.support, world.chat, "Hello", payload={"tier": "bronze"})
    item.refresh_from_db()
    assert (item.queue_id, item.priority) == (world.support.pk, 5)
    assert not ActionLog.objects.filter(item=item).exists()


def test_a_rule_that_raises_is_skipped_and_intake_still_succeeds(world, billing):
    # given a rule the store holds in a shape the evaluator cannot read (edited behind the
    # service's back), before a good rule
    broken = rule("broken", [], {"priority": 9}, position=1)
    ClassificationRule.objects.filter(pk=broken.pk).update(
        conditions=[{"field": "payload.x", "op": "like", "value": 1}]
    )
    rule("good", [], {"priority": 2}, position=2)
    # when an item arrives
    item = enqueue(world.support, world.chat, "Hello")
    # then it was created, the good rule applied, the broken one skipped and said so
    item.refresh_from_db()
    assert item.priority == 2
    entry = ActionLog.objects.get(item=item)
    assert entry.detail["skipped"] == [
        {"id": broken.pk, "name": "broken", "error": "unknown operator 'like'"}
    ]


def test_customer_facts_come_from_the_record_app(world):
    # given a rule on a customer attribute (their cases, as the messaging app counts them)
    from django.utils import timezone

    from messaging import services as messaging_services
    from messaging.models import Customer

    rule("Returning", [{"field": "customer.cases", "op": "gte", "value": 2}], {"priority": 1})
    kim = Customer.objects.create(display_name="Kim", created_at=timezone.now())

    def case(subject):
        opened = messaging_services.open_case(
            subject=subject, customer=kim, origin="api", queue=world.support
        )
        return WorkItem.objects.get(pk=opened.work_item_id)

    # when Kim opens a first case, then a second
    first, second = case("First"), case("Second")
    # then only the second item is a returning customer's
    assert (first.priority, second.priority) == (5, 1)
    assert ActionLog.objects.get(item=second).detail["rules"][0]["because"] == [
        "customer.cases >= 2"
    ]


# --- Checking ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "actions", "message"),
    [
        (
            [{"field": "agent.name", "op": "eq", "value": "x"}],
            {"priority": 1},
            "Unknown field “agent.name”: use channel, queue, subject, language, priority, "
            "secondary_priority, payload.…, bot.… or customer.….",
        ),
        (
            [{"field": "payload.total", "op": "like", "value": 1}],
            {"priority": 1},
            "Unknown operator “like”: use eq, ne, gt, gte, lt, lte, in, not_in, contains or "
            "exists.",
        ),
        ([], {"skills": [{"skill": "Klingon"}]}, "No skill named “Klingon”."),
        (
            [],
            {"skills": [{"skill": "Japanese", "min_level": 120}]},
            "A skill level is from 0 to 99.99; 120.00 is out of range.",
        ),
        ([], {"queue": "Nowhere"}, "No queue “Nowhere”."),
        (
            [{"field": "queue", "op": "eq", "value": "Nowhere"}],
            {"priority": 1},
            "No queue “Nowhere”.",
        ),
        (
            [],
            {"priority": 11},
            "priority must be a whole number from 1 (most urgent) to 10, not “11”.",
        ),
        (
            [],
            {"escalate": True},
            "Unknown action “escalate”: use queue, priority, secondary_priority, skills or stop.",
        ),
        (
            [],
            {},
            "A rule needs at least one action (queue, priority, secondary_priority, skills, stop).",
        ),
    ],
)
def test_bad_rules_are_refused_naming_the_problem(world, japanese, conditions, actions, message):
    with pytest.raises(DomainError) as refused:
        rule("bad", conditions, actions)
    assert refused.value.message == message
    assert not ClassificationRule.objects.exists()


def test_scoped_moves_that_form_a_cycle_are_refused(world, billing):
    rule("to billing", [], {"queue": "Billing"}, queue=world.support)
    with pytest.raises(DomainError) as refused:
        rule("back", [], {"queue": "Support"}, queue=billing)
    assert refused.value.message == (
        "Rules would move items round in a circle: Support → Billing → Support."
    )
    with pytest.raises(DomainError) as refused:
        rule("self", [], {"queue": "Billing"}, queue=billing)
    assert refused.value.message == "The rule moves items to the queue it is limited to."
    assert ClassificationRule.objects.count() == 1


def test_the_api_refuses_a_bad_rule_with_400_and_the_message(world):
    response = client_for(make_user("root", superuser=True)).post(
        "/api/classification-rules/",
        {"name": "bad", "conditions": [], "actions": {"queue": "Nowhere"}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "No queue “Nowhere”.", "code": "actions"}
    assert not ClassificationRule.objects.exists()


def test_the_api_stores_queues_and_skills_by_id(world, billing, japanese):
    response = client_for(make_user("root", superuser=True)).post(
        "/api/classification-rules/",
        {
            "name": "ja",
            "position": 5,
            "conditions": [{"field": "queue", "op": "in", "value": ["support"]}],
            "actions": {"queue": "billing", "skills": [{"skill": "Japanese"}], "stop": True},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["conditions"] == [{"field": "queue", "op": "in", "value": [world.support.pk]}]
    assert body["actions"] == {
        "queue": billing.pk,
        "skills": [
            {
                "skill": japanese.pk,
                "min_level": "0.00",
                "additional": False,
                "drop_after_seconds": None,
            }
        ],
        "stop": True,
    }


# --- Preview and classify ---------------------------------------------------------------------


def test_preview_says_where_an_item_would_go_and_why(world, billing, japanese):
    vip = rule(
        "VIP billing",
        [{"field": "payload.tier", "op": "eq", "value": "gold"}],
        {"queue": "Billing", "priority": 2, "skills": [{"skill": "Japanese", "min_level": 3}]},
        position=3,
    )
    response = client_for(make_user("root", superuser=True)).post(
        "/api/classification-rules/preview/",
        {"queue": "Support", "channel": "chat", "subject": "Hi", "payload": {"tier": "gold"}},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["text"] == (
        "This item would go to queue Billing, priority 2, secondary priority 5, skills "
        "[Japanese ≥ 3.00], because rule 3 “VIP billing” (payload.tier == gold)."
    )
    assert body["queue"] == {"id": billing.pk, "name": "Billing"}
    assert body["matched"] == [
        {
            "rule": vip.pk,
            "name": "VIP billing",
            "position": 3,
            "because": ["payload.tier == gold"],
            "changes": {
                "queue": billing.pk,
                "priority": 2,
                "skills": [
                    {
                        "skill": japanese.pk,
                        "min_level": "3.00",
                        "additional": False,
                        "drop_after_seconds": None,
                    }
                ],
            },
        }
    ]
    # and nothing was written
    assert not WorkItem.objects.exists()


def test_preview_of_an_unknown_queue_is_400(world):
    response = client_for(make_user("root", superuser=True)).post(
        "/api/classification-rules/preview/", {"queue": "Nowhere", "channel": "chat"}, format="json"
    )
    assert (response.status_code, response.json()["detail"]) == (400, "No queue “Nowhere”.")


def test_a_supervisor_classifies_a_waiting_item_again(world, billing):
    # given an item that arrived before the rule existed
    item = enqueue(world.support, world.chat, "Invoice", payload={"topic": "billing"}, now=at(0))
    rule(
        "billing",
        [{"field": "payload.topic", "op": "eq", "value": "billing"}],
        {"queue": "Billing"},
    )
    boss = make_supervisor("boss", world.support)
    # when its supervisor asks for classification
    response = client_for(boss).post(f"/api/work-items/{item.pk}/classify/")
    # then it moved, keeping its age, and the history says who asked
    assert response.status_code == 200, response.content
    assert response.json()["item"]["queue"] == billing.pk
    assert response.json()["classification"]["text"].startswith("The item is in queue Billing")
    item.refresh_from_db()
    assert (item.queue_id, item.routing_priority, item.enqueued_at) == (billing.pk, 3, at(0))
    entry = ActionLog.objects.get(item=item, verb="classified")
    assert entry.actor == boss
    # and the item's detail shows the entry
    detail = client_for(make_user("root", superuser=True)).get(f"/api/work-items/{item.pk}/")
    assert [a["verb"] for a in detail.json()["actions"]] == ["classified"]


def test_classify_refuses_items_that_are_not_waiting(world):
    item = enqueue(world.support, world.chat, "x")
    services.cancel_work_item(item_id=item.pk)
    response = client_for(make_user("root", superuser=True)).post(
        f"/api/work-items/{item.pk}/classify/"
    )
    assert response.status_code == 409
    assert (
        response.json()["detail"]
        == "Only waiting items are classified again; this one is Canceled."
    )


# --- Versions and rollback --------------------------------------------------------------------


def test_rule_versions_say_who_changed_what_and_roll_back(world, admin_user):
    client = client_for(admin_user)
    created = client.post(
        "/api/classification-rules/",
        {"name": "VIP", "conditions": [], "actions": {"priority": 2}},
        format="json",
    ).json()
    client.patch(
        f"/api/classification-rules/{created['id']}/", {"actions": {"priority": 1}}, format="json"
    )
    versions = client.get(f"/api/classification-rules/{created['id']}/versions/").json()
    assert [(v["kind"], v["by"], v["values"]["actions"]) for v in versions] == [
        ("changed", "root", {"priority": 1}),
        ("created", "root", {"priority": 2}),
    ]
    assert versions[0]["changed"] == ["actions"]
    # when the first version is restored
    response = client.post(
        f"/api/classification-rules/{created['id']}/rollback/",
        {"version": versions[1]["version"], "reason": "too aggressive"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["actions"] == {"priority": 2}
    latest = client.get(f"/api/classification-rules/{created['id']}/versions/").json()[0]
    assert (latest["by"], latest["reason"]) == (
        "root",
        f"Rolled back to version {versions[1]['version']}: too aggressive",
    )


def test_rollback_needs_a_known_version_and_a_reason(world, admin_user):
    target = rule("VIP", [], {"priority": 2})
    with pytest.raises(NotFound):
        services.roll_back(
            instance=target, version=999999, reason="x", actor=admin_user, save=lambda i, c: i
        )
    response = client_for(admin_user).post(
        f"/api/classification-rules/{target.pk}/rollback/",
        {"version": target.history.first().history_id, "reason": ""},
        format="json",
    )
    assert response.status_code == 400


def test_routing_configuration_rollback_reaches_waiting_items(world, admin_user):
    # given a waiting item of Support (routing priority 2), and an edit to priority 7
    item = enqueue(world.support, world.chat, "x")
    config = world.support.routing_config
    client = client_for(admin_user)
    client.patch(f"/api/routing-configs/{config.pk}/", {"routing_priority": 7}, format="json")
    item.refresh_from_db()
    assert item.routing_priority == 7
    versions = client.get(f"/api/routing-configs/{config.pk}/versions/").json()
    # when the edit is rolled back to the version before it
    first = versions[-1]
    assert first["values"]["routing_priority"] == 2
    response = client.post(
        f"/api/routing-configs/{config.pk}/rollback/",
        {"version": first["version"], "reason": "wrong queue"},
        format="json",
    )
    # then the configuration and the waiting item are back at 2
    assert response.status_code == 200, response.content
    assert RoutingConfiguration.objects.get(pk=config.pk).routing_priority == 2
    item.refresh_from_db()
    assert item.routing_priority == 2


# --- Admin ------------------------------------------------------------------------------------


def test_admin_tests_rules_against_a_sample_item(world, billing, admin_user, client):
    rule("Big orders", [{"field": "payload.total", "op": "gt", "value": 100}], {"queue": "Billing"})
    client.force_login(admin_user)
    url = reverse("admin:routing_classificationrule_test")
    assert client.get(reverse("admin:routing_classificationrule_changelist")).content.count(
        url.encode()
    )
    page = client.post(
        url,
        {
            "queue": world.support.pk,
            "channel": world.chat.pk,
            "subject": "Order",
            "language": "",
            "priority": 5,
            "secondary_priority": 5,
            "payload": '{"total": 250}',
            "customer": "{}",
        },
    )
    assert page.status_code == 200
    assert (
        "This item would go to queue Billing, priority 5, secondary priority 5, skills [none], "
        "because rule 10 “Big orders” (payload.total &gt; 100)."
    ) in page.content.decode()


def test_admin_refuses_a_bad_rule_with_a_form_error(world, admin_user, client):
    client.force_login(admin_user)
    page = client.post(
        reverse("admin:routing_classificationrule_add"),
        {
            "name": "bad",
            "position": 1,
            "active": "on",
            "conditions": "[]",
            "actions": '{"queue": "Nowhere"}',
        },
    )
    assert page.status_code == 200
    assert "No queue “Nowhere”." in page.content.decode()
    assert not ClassificationRule.objects.exists()


def test_only_staff_may_use_rules(world):
    intake = make_user("shop", group=roles.INTAKE)
    assert client_for(intake).get("/api/classification-rules/").status_code == 403


# --- Cost -------------------------------------------------------------------------------------


def _intake_queries(world, django_assert_num_queries, expected, payload):
    with django_assert_num_queries(expected):
        enqueue(world.support, world.chat, "x", payload=payload)


@pytest.mark.parametrize(
    ("rules", "payload", "postgresql", "sqlite"),
    [
        # intake alone: savepoint, insert, the rules query, release
        ("none", {}, 4, 4),
        # a rule that does not match costs nothing more than reading the rules (a payload adds
        # the question which skills its attributes call for)
        ("one", {"tier": "bronze"}, 5, 5),
        # a match that moves, raises and adds a skill: the queue, one update of the item, the
        # skill check, the skills upsert (in its own savepoint), the history entry, all in a
        # savepoint of their own (in production: 6 statements and 4 savepoint commands)
        ("one", {"tier": "gold"}, 14, 14),
    ],
)
def test_the_cost_rules_add_to_intake(
    world, billing, japanese, django_assert_num_queries, rules, payload, postgresql, sqlite
):
    from django.db import connection

    if rules == "one":
        rule(
            "VIP",
            [{"field": "payload.tier", "op": "eq", "value": "gold"}],
            {"queue": "Billing", "priority": 1, "skills": [{"skill": "Japanese"}]},
        )
    expected = {"postgresql": postgresql, "sqlite": sqlite}[connection.vendor]
    _intake_queries(world, django_assert_num_queries, expected, payload)


def test_admin_history_page_reverts_a_rule_through_the_checks(world, admin_user, client):
    # given a rule edited once
    target = rule("VIP", [], {"priority": 2}, actor=admin_user)
    services.save_classification_rule(rule=target, changes={"actions": {"priority": 1}})
    first = target.history.order_by("history_id").first()
    client.force_login(admin_user)
    history = client.get(reverse("admin:routing_classificationrule_history", args=[target.pk]))
    assert history.status_code == 200
    # when the first version is reverted from its history page
    url = reverse(
        "admin:routing_classificationrule_simple_history", args=[target.pk, first.history_id]
    )
    page = client.post(
        url,
        {
            "name": "VIP",
            "position": 10,
            "active": "on",
            "conditions": "[]",
            "actions": '{"priority": 2}',
        },
    )
    # then the rule is back, as a new version by the admin
    assert page.status_code == 302, page.content.decode()[:2000]
    target.refresh_from_db()
    assert target.actions == {"priority": 2}
    latest = target.history.order_by("-history_id").first()
    assert (latest.history_user, latest.history_type) == (admin_user, "~")
