"""Classification rules, evaluated: pure Python, no Django, no I/O.

A rule is an ordered list of conditions (all must hold; ``{"any": [...]}`` groups alternatives)
and a set of actions. ``classify`` runs the active rules in position order over a plain dict
view of an item and returns what they decide and why:

- **All-match, in order, with stop.** Every rule whose scope (queue) and conditions match fires;
  a later rule overrides what an earlier one set for the same field (queue, priority, secondary
  priority), skills accumulate (a later rule's level for the same skill wins). A rule with
  ``stop`` ends the evaluation after it fires. First-match behaviour is "stop on every rule".
- **Scope** is checked against the item's queue at that point of the run: a rule that moves
  the item to queue X makes later rules scoped to X apply. Each rule is visited once, so a run
  always ends; cycles between scoped moves are refused when rules are saved (``move_cycle``).
- **A rule that raises** (a condition the store holds but this code cannot read) is skipped and
  reported in ``Outcome.failures``; the other rules still run.

Conditions: ``{"field": "payload.order_total", "op": "gt", "value": 100}``. Fields:
``channel`` (key), ``queue`` (id), ``subject``, ``language``, ``priority``,
``secondary_priority``, ``payload.<path>``, ``bot.<key>`` (= ``payload.bot_answers.<key>``,
what the pre-chat bot asked), ``customer.<path>`` (what the record's app tells of its
customer), ``model.queue`` and ``model.confidence`` (what the assistance model predicts, present
only when it is at least as sure as the admin's threshold: below it, rules on the model do not
match and the others decide).
Operators: ``eq ne gt gte lt lte in not_in contains exists``. Strings compare case-insensitively;
numeric strings compare as numbers.

Actions: ``{"queue": <id>, "priority": 1-10, "secondary_priority": 1-10,
"skills": [{"skill": <id>, "min_level": "3", "additional": false, "drop_after_seconds": null}],
"stop": true}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists")
SYMBOLS = {
    "eq": "==",
    "ne": "!=",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "in": "in",
    "not_in": "not in",
    "contains": "contains",
    "exists": "exists",
}
PLAIN_FIELDS = ("channel", "queue", "subject", "language", "priority", "secondary_priority")
PREFIXES = ("payload.", "bot.", "customer.", "model.")
ACTION_KEYS = ("queue", "priority", "secondary_priority", "skills", "stop")
MAX_DEPTH = 4


MESSAGES = {
    "conditions_list": "conditions must be a list",
    "condition_object": "a condition must be an object",
    "too_deep": "conditions are nested too deep",
    "any_shape": "an 'any' group holds only a non-empty list of alternatives",
    "unknown_key": "unknown condition key {key!r}",
    "no_field": "a condition needs a field",
    "unknown_field": "unknown field {field!r}",
    "unknown_operator": "unknown operator {op!r}",
    "needs_list": "{op} needs a list of values",
    "needs_number": "{op} needs a number, not {value!r}",
    "exists_bool": "exists takes true or false",
    "needs_value": "{field} {op} needs a value",
    "actions_object": "actions must be an object",
}


class RuleSpecError(ValueError):
    """A rule's conditions or actions this module cannot evaluate: ``code`` and ``params`` (for
    a translated message), ``str()`` in English."""

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(MESSAGES[code].format(**params))
        self.code = code
        self.params = params


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    position: int
    conditions: Sequence[Any]
    actions: Mapping[str, Any]
    queue_id: int | None = None  # scope: applies only to items in this queue


@dataclass(frozen=True)
class Match:
    rule_id: int
    name: str
    position: int
    because: tuple[str, ...]  # the conditions that held, as text
    changes: Mapping[str, Any]  # the actions it applied


@dataclass(frozen=True)
class Failure:
    rule_id: int
    name: str
    error: str


@dataclass(frozen=True)
class Outcome:
    queue_id: int | None = None
    priority: int | None = None
    secondary_priority: int | None = None
    skills: tuple[Mapping[str, Any], ...] = ()
    matched: tuple[Match, ...] = ()
    failures: tuple[Failure, ...] = ()
    stopped_by: int | None = None

    @property
    def changes(self) -> dict[str, Any]:
        """Only what the rules set: ``{"queue": 3, "priority": 2, "skills": [...]}``."""
        out: dict[str, Any] = {}
        if self.queue_id is not None:
            out["queue"] = self.queue_id
        if self.priority is not None:
            out["priority"] = self.priority
        if self.secondary_priority is not None:
            out["secondary_priority"] = self.secondary_priority
        if self.skills:
            out["skills"] = [dict(s) for s in self.skills]
        return out


@dataclass
class _Run:
    queue_id: int | None
    priority: int | None = None
    secondary_priority: int | None = None
    skills: dict[int, Mapping[str, Any]] = field(default_factory=dict)


def classify(rules: Sequence[Rule], item: Mapping[str, Any]) -> Outcome:
    """Run ``rules`` (in position, then id, order) over ``item`` and say what they decide.

    ``item``: ``{"queue": id, "channel": key, "subject", "language", "priority",
    "secondary_priority", "payload": {...}, "customer": {...}}``. Fields a rule changes are seen
    changed by the rules after it (a moved item is in its new queue).
    """
    view = dict(item)
    run = _Run(queue_id=None)
    matched: list[Match] = []
    failures: list[Failure] = []
    stopped_by = None
    for rule in sorted(rules, key=lambda r: (r.position, r.id)):
        if rule.queue_id is not None and rule.queue_id != view.get("queue"):
            continue
        try:
            because = _holds_all(rule.conditions, view)
            if because is None:
                continue
            changes = _apply(rule.actions, run, view)
        except (RuleSpecError, TypeError, ValueError, KeyError, AttributeError) as exc:
            failures.append(Failure(rule.id, rule.name, str(exc) or type(exc).__name__))
            continue
        matched.append(Match(rule.id, rule.name, rule.position, tuple(because), changes))
        if rule.actions.get("stop"):
            stopped_by = rule.id
            break
    return Outcome(
        queue_id=run.queue_id,
        priority=run.priority,
        secondary_priority=run.secondary_priority,
        skills=tuple(run.skills.values()),
        matched=tuple(matched),
        failures=tuple(failures),
        stopped_by=stopped_by,
    )


def _apply(actions: Mapping[str, Any], run: _Run, view: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(actions, Mapping):
        raise RuleSpecError("actions_object")
    changes: dict[str, Any] = {}
    if actions.get("queue") is not None:
        run.queue_id = view["queue"] = changes["queue"] = int(actions["queue"])
    if actions.get("priority") is not None:
        run.priority = view["priority"] = changes["priority"] = int(actions["priority"])
    if actions.get("secondary_priority") is not None:
        value = int(actions["secondary_priority"])
        run.secondary_priority = view["secondary_priority"] = changes["secondary_priority"] = value
    skills = actions.get("skills") or []
    if skills:
        for need in skills:
            run.skills[int(need["skill"])] = dict(need)
        changes["skills"] = [dict(n) for n in skills]
    return changes


def _holds_all(conditions: Any, view: Mapping[str, Any], depth: int = 0) -> list[str] | None:
    """The texts of the conditions that hold, or None when one does not."""
    if not isinstance(conditions, list | tuple):
        raise RuleSpecError("conditions_list")
    because: list[str] = []
    for condition in conditions:
        text = _holds(condition, view, depth)
        if text is None:
            return None
        because.append(text)
    return because


def _holds(condition: Any, view: Mapping[str, Any], depth: int) -> str | None:
    if not isinstance(condition, Mapping):
        raise RuleSpecError("condition_object")
    if "any" in condition:
        if depth >= MAX_DEPTH:
            raise RuleSpecError("too_deep")
        for alternative in condition["any"]:
            group = alternative if isinstance(alternative, list | tuple) else [alternative]
            because = _holds_all(group, view, depth + 1)
            if because is not None:
                return " and ".join(because) if len(because) > 1 else because[0]
        return None
    name, op = condition.get("field"), condition.get("op", "eq")
    check_field(name)
    if op not in OPERATORS:
        raise RuleSpecError("unknown_operator", op=op)
    expected = condition.get("value")
    found, present = lookup(view, str(name))
    if not _compare(op, found, present, expected):
        return None
    return describe(condition)


def lookup(view: Mapping[str, Any], name: str) -> tuple[Any, bool]:
    """The value of ``name`` in the item view, and whether it is there at all."""
    if name.startswith("bot."):
        path = ["payload", "bot_answers", *name[4:].split(".")]
    else:
        path = name.split(".")
    current: Any = view
    for part in path:
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list | tuple) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None, False
    return current, current is not None


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def _same(a: Any, b: Any) -> bool:
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    return bool(a == b)


def _compare(op: str, found: Any, present: bool, expected: Any) -> bool:
    if op == "exists":
        return present == (expected is not False)
    if not present:
        return op in ("ne", "not_in")
    if op == "eq":
        return _same(found, expected)
    if op == "ne":
        return not _same(found, expected)
    if op in ("in", "not_in"):
        if not isinstance(expected, list | tuple):
            raise RuleSpecError("needs_list", op=op)
        inside = any(_same(found, e) for e in expected)
        return inside if op == "in" else not inside
    if op == "contains":
        if isinstance(found, str):
            return str(expected).casefold() in found.casefold()
        if isinstance(found, list | tuple):
            return any(_same(f, expected) for f in found)
        if isinstance(found, Mapping):
            return str(expected) in found
        return False
    a, b = _number(found), _number(expected)
    if a is None or b is None:
        return False
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


def check_field(name: Any) -> None:
    """Refuse a field name the evaluator cannot read (``RuleSpecError`` names it)."""
    if not isinstance(name, str) or not name:
        raise RuleSpecError("no_field")
    if name in PLAIN_FIELDS:
        return
    for prefix in PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            if any(not part for part in name[len(prefix) :].split(".")):
                raise RuleSpecError("unknown_field", field=name)
            return
    raise RuleSpecError("unknown_field", field=name)


def describe(condition: Mapping[str, Any], queue_names: Mapping[int, str] | None = None) -> str:
    """A condition as people read it: ``payload.tier == gold``."""
    if "any" in condition:
        parts = []
        for alternative in condition["any"]:
            group = alternative if isinstance(alternative, list | tuple) else [alternative]
            parts.append(" and ".join(describe(c, queue_names) for c in group))
        return "(" + " or ".join(parts) + ")"
    name, op = condition.get("field", "?"), condition.get("op", "eq")
    value = condition.get("value")
    if op == "exists":
        return f"{name} exists" if value is not False else f"{name} is missing"
    if name == "queue" and queue_names:
        if isinstance(value, list | tuple):
            value = [queue_names.get(v, v) if isinstance(v, int) else v for v in value]
        elif isinstance(value, int):
            value = queue_names.get(value, value)
    if isinstance(value, list | tuple):
        shown = "[" + ", ".join(str(v) for v in value) + "]"
    else:
        shown = str(value)
    return f"{name} {SYMBOLS.get(op, op)} {shown}"


def check_conditions(conditions: Any, depth: int = 0) -> list[Mapping[str, Any]]:
    """Check the shape of a rule's conditions: fields, operators, values. Returns them."""
    if not isinstance(conditions, list):
        raise RuleSpecError("conditions_list")
    for condition in conditions:
        if not isinstance(condition, Mapping):
            raise RuleSpecError("condition_object")
        if "any" in condition:
            if depth >= MAX_DEPTH:
                raise RuleSpecError("too_deep")
            if set(condition) != {"any"} or not isinstance(condition["any"], list):
                raise RuleSpecError("any_shape")
            if not condition["any"]:
                raise RuleSpecError("any_shape")
            for alternative in condition["any"]:
                group = alternative if isinstance(alternative, list) else [alternative]
                check_conditions(group, depth + 1)
            continue
        unknown = set(condition) - {"field", "op", "value"}
        if unknown:
            raise RuleSpecError("unknown_key", key=sorted(unknown)[0])
        check_field(condition.get("field"))
        op = condition.get("op", "eq")
        if op not in OPERATORS:
            raise RuleSpecError("unknown_operator", op=op)
        value = condition.get("value")
        if op in ("in", "not_in") and not isinstance(value, list):
            raise RuleSpecError("needs_list", op=op)
        if op in ("gt", "gte", "lt", "lte") and _number(value) is None:
            raise RuleSpecError("needs_number", op=op, value=value)
        if op == "exists" and value not in (None, True, False):
            raise RuleSpecError("exists_bool")
        if op not in ("exists",) and "value" not in condition:
            raise RuleSpecError("needs_value", field=condition.get("field"), op=op)
    return list(conditions)


def move_cycle(moves: Mapping[int, set[int]]) -> list[int] | None:
    """A cycle in scoped moves (queue -> queues its scoped rules move items to), as the list of
    queue ids along it, or None. A cycle would move an item back and forth on every run."""
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    path: list[int] = []

    def visit(node: int) -> list[int] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(moves.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(moves):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None
