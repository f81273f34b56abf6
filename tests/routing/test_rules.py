"""The classification evaluator (``routing.rules``), from tables of cases: no database."""

from __future__ import annotations

import pytest

from routing import rules
from routing.rules import Rule, RuleSpecError, check_conditions, classify, move_cycle

ITEM = {
    "queue": 1,
    "channel": "chat",
    "subject": "Refund for order 42",
    "language": "ja",
    "priority": 5,
    "secondary_priority": 5,
    "payload": {
        "order_total": "150.50",
        "tier": "Gold",
        "tags": ["refund", "urgent"],
        "bot_answers": {"topic": "billing"},
        "address": {"country": "JP"},
    },
    "customer": {"cases": 3, "identities": ["email", "phone"]},
}


def cond(field, op, value=None, **extra):
    c = {"field": field, "op": op, **extra}
    if value is not None or op not in ("exists",):
        c["value"] = value
    return c


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        (cond("payload.order_total", "gt", 100), True),
        (cond("payload.order_total", "gt", 150.5), False),
        (cond("payload.order_total", "gte", "150.5"), True),
        (cond("payload.order_total", "lt", 100), False),
        (cond("payload.order_total", "lte", 150.5), True),
        (cond("payload.tier", "eq", "gold"), True),  # strings compare case-insensitively
        (cond("payload.tier", "ne", "gold"), False),
        (cond("payload.tier", "in", ["silver", "GOLD"]), True),
        (cond("payload.tier", "not_in", ["silver"]), True),
        (cond("payload.tags", "contains", "refund"), True),
        (cond("payload.tags", "contains", "spam"), False),
        (cond("subject", "contains", "REFUND"), True),
        (cond("payload.address.country", "eq", "JP"), True),
        (cond("payload.missing", "exists"), False),
        (cond("payload.missing", "exists", False), True),
        (cond("payload.missing", "ne", "x"), True),  # a missing field differs from any value
        (cond("payload.missing", "eq", "x"), False),
        (cond("payload.tier", "gt", 3), False),  # not a number: no match, no error
        (cond("bot.topic", "eq", "billing"), True),  # bot.<key> = payload.bot_answers.<key>
        (cond("customer.cases", "gte", 3), True),
        (cond("customer.identities", "contains", "phone"), True),
        (cond("language", "eq", "JA"), True),
        (cond("channel", "in", ["chat", "messaging"]), True),
        (cond("queue", "eq", 1), True),
        (cond("priority", "lte", 5), True),
    ],
)
def test_a_condition_holds_or_not(condition, holds):
    rule = Rule(1, "r", 1, [condition], {"priority": 1})
    assert bool(classify([rule], ITEM).matched) is holds


def test_any_groups_alternatives_and_says_which_held():
    rule = Rule(
        1,
        "VIP",
        1,
        [{"any": [cond("payload.tier", "eq", "platinum"), [cond("payload.tier", "eq", "gold")]]}],
        {"priority": 1},
    )
    outcome = classify([rule], ITEM)
    assert outcome.matched[0].because == ("payload.tier == gold",)


def test_all_match_in_position_order_later_rules_override_and_skills_accumulate():
    first = Rule(
        2, "billing", 10, [cond("bot.topic", "eq", "billing")], {"queue": 7, "priority": 3}
    )
    second = Rule(
        1,
        "big order",
        20,
        [cond("payload.order_total", "gt", 100)],
        {"priority": 2, "skills": [{"skill": 5, "min_level": "3"}]},
    )
    third = Rule(3, "japanese", 30, [cond("language", "eq", "ja")], {"skills": [{"skill": 6}]})
    outcome = classify([third, second, first], ITEM)
    assert [m.rule_id for m in outcome.matched] == [2, 1, 3]
    assert (outcome.queue_id, outcome.priority, outcome.secondary_priority) == (7, 2, None)
    assert [s["skill"] for s in outcome.skills] == [5, 6]
    assert outcome.changes == {
        "queue": 7,
        "priority": 2,
        "skills": [{"skill": 5, "min_level": "3"}, {"skill": 6}],
    }


def test_stop_skips_the_later_rules():
    first = Rule(1, "first", 1, [], {"priority": 4, "stop": True})
    second = Rule(2, "second", 2, [], {"priority": 1})
    outcome = classify([first, second], ITEM)
    assert ([m.rule_id for m in outcome.matched], outcome.priority, outcome.stopped_by) == (
        [1],
        4,
        1,
    )


def test_scope_is_the_queue_at_that_point_of_the_run():
    # given a rule that moves the item to queue 7 and two rules scoped to queues 1 and 7
    move = Rule(1, "move", 1, [], {"queue": 7})
    scoped_old = Rule(2, "in 1", 2, [], {"priority": 9}, queue_id=1)
    scoped_new = Rule(3, "in 7", 3, [], {"secondary_priority": 2}, queue_id=7)
    outcome = classify([move, scoped_old, scoped_new], ITEM)
    # then the rule scoped to the old queue no longer applies; the one scoped to the new does
    assert [m.rule_id for m in outcome.matched] == [1, 3]


def test_a_rule_that_raises_is_skipped_and_the_others_run():
    broken = Rule(1, "broken", 1, [{"field": "payload.tier", "op": "like", "value": "g"}], {})
    not_a_list = Rule(2, "garbage", 2, "garbage", {"priority": 1})  # type: ignore[arg-type]
    fine = Rule(3, "fine", 3, [], {"priority": 2})
    outcome = classify([broken, not_a_list, fine], ITEM)
    assert [f.rule_id for f in outcome.failures] == [1, 2]
    assert outcome.failures[0].error == "unknown operator 'like'"
    assert (outcome.priority, [m.rule_id for m in outcome.matched]) == (2, [3])


def test_no_rules_decide_nothing():
    outcome = classify([], ITEM)
    assert (outcome.changes, outcome.matched, outcome.failures) == ({}, (), ())


@pytest.mark.parametrize(
    ("conditions", "code"),
    [
        ({"field": "x"}, "conditions_list"),
        (["x"], "condition_object"),
        ([{"field": "payload", "op": "eq", "value": 1}], "unknown_field"),
        ([{"field": "agent.name", "op": "eq", "value": 1}], "unknown_field"),
        ([{"field": "payload..x", "op": "eq", "value": 1}], "unknown_field"),
        ([{"field": "channel", "op": "like", "value": "c"}], "unknown_operator"),
        ([{"field": "channel", "op": "in", "value": "chat"}], "needs_list"),
        ([{"field": "payload.total", "op": "gt", "value": "lots"}], "needs_number"),
        ([{"field": "payload.total", "op": "exists", "value": "yes"}], "exists_bool"),
        ([{"field": "payload.total", "op": "eq"}], "needs_value"),
        ([{"field": "channel", "op": "eq", "value": "c", "extra": 1}], "unknown_key"),
        ([{"any": []}], "any_shape"),
    ],
)
def test_bad_conditions_are_refused_with_a_code(conditions, code):
    with pytest.raises(RuleSpecError) as refused:
        check_conditions(conditions)
    assert refused.value.code == code


def test_move_cycles_are_found():
    assert move_cycle({1: {2}, 2: {3}}) is None
    assert move_cycle({1: {2}, 2: {3}, 3: {1}}) == [1, 2, 3, 1]
    assert move_cycle({4: {4}}) == [4, 4]


def test_conditions_read_as_text():
    assert rules.describe({"field": "queue", "op": "in", "value": [1, 2]}, {1: "Billing"}) == (
        "queue in [Billing, 2]"
    )
    assert rules.describe({"field": "payload.x", "op": "exists", "value": False}) == (
        "payload.x is missing"
    )
