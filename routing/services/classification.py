"""Classification rules: checked and saved, run at intake and on demand, previewed.

The evaluation itself is pure (``routing.rules.classify``); this module gives it a plain view of
an item, applies what it decides (queue, priorities; skills through ``services.skills``) and
records each firing on the item's history (``ActionLog``, verb ``classified``).

A rule that raises at run time is skipped, logged and counted (``omnirouter_rule_failures``);
applying the outcome runs in a savepoint, so even an unexpected failure there leaves the item as
intake made it and never fails intake.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from omnirouter import metrics
from omnirouter.configuration import save_configuration
from omnirouter.errors import Conflict, DomainError
from routing import rules as evaluator
from routing.models import (
    ActionLog,
    ClassificationRule,
    Queue,
    ServiceChannel,
    Skill,
    WorkItem,
    WorkItemStatus,
)
from routing.services import records, skills, versions
from routing.services.events import queue_changed
from routing.services.locks import lock_item
from routing.services.transitions import requeue, size_from

logger = logging.getLogger(__name__)

CLASSIFIED = "classified"

SPEC_MESSAGES = {
    "conditions_list": gettext_lazy("Conditions must be a list."),
    "condition_object": gettext_lazy("Each condition must be an object."),
    "too_deep": gettext_lazy("Conditions are nested too deep."),
    "any_shape": gettext_lazy("An “any” group holds only a non-empty list of alternatives."),
    "unknown_key": gettext_lazy("Unknown condition key “%(key)s”."),
    "no_field": gettext_lazy("A condition needs a field."),
    "unknown_field": gettext_lazy(
        "Unknown field “%(field)s”: use channel, queue, subject, language, priority, "
        "secondary_priority, payload.…, bot.… or customer.…."
    ),
    "unknown_operator": gettext_lazy(
        "Unknown operator “%(op)s”: use eq, ne, gt, gte, lt, lte, in, not_in, contains or exists."
    ),
    "needs_list": gettext_lazy("%(op)s needs a list of values."),
    "needs_number": gettext_lazy("%(op)s needs a number, not “%(value)s”."),
    "exists_bool": gettext_lazy("exists takes true or false."),
    "needs_value": gettext_lazy("%(field)s %(op)s needs a value."),
    "actions_object": gettext_lazy("Actions must be an object."),
}


def spec_message(exc: evaluator.RuleSpecError) -> str:
    return str(SPEC_MESSAGES[exc.code]) % {k: str(v) for k, v in exc.params.items()}


# --- Checking ---------------------------------------------------------------------------------


def find_queue(ref: Any, field: str = "actions") -> Queue:
    """A queue by id or name (case-insensitive), or ``DomainError`` naming what was given."""
    queue = None
    if isinstance(ref, int) and not isinstance(ref, bool):
        queue = Queue.objects.select_related("routing_config").filter(pk=ref).first()
    elif isinstance(ref, str) and ref.strip():
        queue = (
            Queue.objects.select_related("routing_config").filter(name__iexact=ref.strip()).first()
        )
    if queue is None:
        raise DomainError(_("No queue “%(queue)s”.") % {"queue": ref}, field)
    return queue


def _priority(value: Any, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
        raise DomainError(
            _("%(field)s must be a whole number from 1 (most urgent) to 10, not “%(value)s”.")
            % {"field": label, "value": value},
            "actions",
        )
    return value


def skill_specs(raw: Any) -> list[dict[str, Any]]:
    """Skill requirements as rules store them (skill ids), checked by ``services.skills``: an
    unknown skill or a level out of range is refused by name."""
    if not isinstance(raw, list) or not all(isinstance(r, Mapping) for r in raw):
        raise DomainError(
            _('Skills are a list like [{"skill": "Japanese", "min_level": 3}].'), "actions"
        )
    unknown = [
        sorted(set(r) - {"skill", "min_level", "additional", "drop_after_seconds"}) for r in raw
    ]
    for keys in unknown:
        if keys:
            raise DomainError(_("Unknown skill key “%(key)s”.") % {"key": keys[0]}, "actions")
    return [
        {
            "skill": n.skill_id,
            "min_level": str(n.min_level),
            "additional": n.additional,
            "drop_after_seconds": n.drop_after_seconds,
        }
        for n in skills.parse_needs([dict(r) for r in raw])
    ]


def _conditions(raw: Any) -> list[Any]:
    try:
        checked = evaluator.check_conditions(raw)
    except evaluator.RuleSpecError as exc:
        raise DomainError(spec_message(exc), "conditions") from None
    return [_queue_refs(c) for c in checked]


def _queue_refs(condition: Mapping[str, Any]) -> dict[str, Any]:
    """A condition on ``queue`` names queues by id once saved (a rename keeps the rule)."""
    if "any" in condition:
        return {
            "any": [
                [_queue_refs(c) for c in alt] if isinstance(alt, list) else _queue_refs(alt)
                for alt in condition["any"]
            ]
        }
    out = dict(condition)
    if out.get("field") == "queue" and out.get("op", "eq") != "exists":
        value = out.get("value")
        if isinstance(value, list):
            out["value"] = [find_queue(v, "conditions").pk for v in value]
        else:
            out["value"] = find_queue(value, "conditions").pk
    return out


def check_classification_rule(
    *,
    conditions: Any,
    actions: Any,
    scope_queue_id: int | None,
    rule_id: int | None = None,
    active: bool = True,
) -> tuple[list[Any], dict[str, Any]]:
    """The rule's conditions and actions as stored (queues and skills by id), or
    ``DomainError`` naming the problem: an unknown field, operator, queue or skill, a level or
    priority out of range, no action, a move back to the rule's own queue or a cycle of moves."""
    checked_conditions = _conditions(conditions)
    if not isinstance(actions, Mapping):
        raise DomainError(str(SPEC_MESSAGES["actions_object"]), "actions")
    unknown = sorted(set(actions) - set(evaluator.ACTION_KEYS))
    if unknown:
        raise DomainError(
            _(
                "Unknown action “%(action)s”: use queue, priority, secondary_priority, "
                "skills or stop."
            )
            % {"action": unknown[0]},
            "actions",
        )
    out: dict[str, Any] = {}
    if actions.get("queue") is not None:
        out["queue"] = find_queue(actions["queue"]).pk
    if actions.get("priority") is not None:
        out["priority"] = _priority(actions["priority"], "priority")
    if actions.get("secondary_priority") is not None:
        out["secondary_priority"] = _priority(actions["secondary_priority"], "secondary_priority")
    if actions.get("skills"):
        out["skills"] = skill_specs(actions["skills"])
    if "stop" in actions:
        if not isinstance(actions["stop"], bool):
            raise DomainError(_("stop is true or false."), "actions")
        if actions["stop"]:
            out["stop"] = True
    if not out:
        raise DomainError(
            _(
                "A rule needs at least one action (queue, priority, secondary_priority, "
                "skills, stop)."
            ),
            "actions",
        )
    if active and scope_queue_id is not None and "queue" in out:
        _refuse_move_cycle(scope_queue_id, out["queue"], rule_id)
    return checked_conditions, out


def _refuse_move_cycle(scope: int, target: int, rule_id: int | None) -> None:
    if scope == target:
        raise DomainError(_("The rule moves items to the queue it is limited to."), "actions")
    moves: dict[int, set[int]] = {scope: {target}}
    rules = ClassificationRule.objects.filter(active=True, queue__isnull=False)
    if rule_id is not None:
        rules = rules.exclude(pk=rule_id)
    others = rules.values_list("queue_id", "actions")
    for queue_id, actions in others:
        to = actions.get("queue") if isinstance(actions, Mapping) else None
        if isinstance(to, int) and queue_id is not None:
            moves.setdefault(queue_id, set()).add(to)
    cycle = evaluator.move_cycle(moves)
    if cycle:
        names = dict(Queue.objects.filter(pk__in=cycle).values_list("pk", "name"))
        raise DomainError(
            _("Rules would move items round in a circle: %(cycle)s.")
            % {"cycle": " → ".join(names.get(q, str(q)) for q in cycle)},
            "actions",
        )


def save_classification_rule(
    *,
    rule: ClassificationRule,
    changes: Mapping[str, Any],
    actor: User | None = None,
    reason: str = "",
) -> ClassificationRule:
    """Create or edit a rule, checked as ``check_classification_rule`` checks it; a new version
    is kept in its history (who, when, ``reason``)."""
    merged = {
        "conditions": changes.get("conditions", rule.conditions),
        "actions": changes.get("actions", rule.actions),
        "queue": changes.get("queue", rule.queue if rule.queue_id else None),
        "active": changes.get("active", rule.active),
    }
    conditions, actions = check_classification_rule(
        conditions=merged["conditions"],
        actions=merged["actions"],
        scope_queue_id=merged["queue"].pk if merged["queue"] is not None else None,
        rule_id=rule.pk,
        active=bool(merged["active"]),
    )
    versions.stamp(rule, actor, reason)
    return save_configuration(
        instance=rule, changes={**changes, "conditions": conditions, "actions": actions}
    )


# --- Running ----------------------------------------------------------------------------------


def active_rules() -> list[evaluator.Rule]:
    return [
        evaluator.Rule(r.pk, r.name, r.position, r.conditions, r.actions, r.queue_id)
        for r in ClassificationRule.objects.filter(active=True).order_by("position", "id")
    ]


def _asks_for_facts(rules: Iterable[evaluator.Rule]) -> bool:
    text = repr([r.conditions for r in rules])
    return "'customer." in text or "'language'" in text


def _asks_for_model(rules: Iterable[evaluator.Rule]) -> bool:
    return "'model." in repr([r.conditions for r in rules])


def _prediction(item: WorkItem, rules: list[evaluator.Rule]) -> dict[str, Any] | None:
    """The model's guess, asked only when an active rule reads ``model.*``; a failing model
    is a rule that does not match, never a failed intake."""
    if not _asks_for_model(rules):
        return None
    try:
        return records.prediction_for(item)
    except Exception:
        logger.exception("classification: the model's guess for item %s failed", item.pk)
        metrics.RULE_FAILURES.labels("model").inc()
        return None


def item_view(
    item: WorkItem,
    *,
    channel_key: str,
    facts: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The plain dict the evaluator reads (``routing.rules``)."""
    payload = item.payload if isinstance(item.payload, dict) else {}
    facts = facts or {}
    answers = payload.get("bot_answers")
    bot: dict[str, Any] = answers if isinstance(answers, dict) else {}
    language = payload.get("language") or bot.get("language") or facts.get("language") or None
    return {
        "queue": item.queue_id,
        "channel": channel_key,
        "subject": item.subject,
        "language": language,
        "priority": item.priority,
        "secondary_priority": item.secondary_priority,
        "payload": payload,
        "customer": facts.get("customer") or {},
        "model": dict(model or {}),
    }


def _facts(item: WorkItem, rules: list[evaluator.Rule]) -> dict[str, Any]:
    if not _asks_for_facts(rules):
        return {}
    try:
        return records.facts_for(item.record_type_id, item.record_id)
    except Exception:
        # Facts are a nicety: rules on them simply do not match.
        logger.exception("classification: facts of item %s's record failed", item.pk)
        metrics.RULE_FAILURES.labels("facts").inc()
        return {}


def classify_at_intake(item: WorkItem, *, now: datetime) -> evaluator.Outcome | None:
    """Run the active rules on a just-saved item (inside intake's transaction, before its first
    routing pass) and apply what they decide. Never raises: a failure is logged, counted and
    the item stays as intake made it."""
    try:
        rules = active_rules()
        if not rules:
            return None
        model = _prediction(item, rules)
        view = item_view(item, channel_key=item.channel.key, facts=_facts(item, rules), model=model)
        outcome = evaluator.classify(rules, view)
        _record_failures(outcome)
        if outcome.matched:
            # A savepoint: a failure while applying leaves the item as intake made it.
            with transaction.atomic():
                _apply(item, outcome, actor=None, now=now, fresh=True, model=model)
        return outcome
    except Exception:
        logger.exception("classification of item %s failed; it keeps intake's values", item.pk)
        metrics.RULE_FAILURES.labels("classification").inc()
        item.refresh_from_db()
        return None


def classify_item(
    *, item_id: int, actor: User | None, now: datetime | None = None
) -> tuple[WorkItem, evaluator.Outcome]:
    """Run the rules again on a waiting item (its fields changed, or a supervisor asks) and
    apply what they decide; a move keeps the item's age. Items offered or taken are refused."""
    now = now or timezone.now()
    with transaction.atomic():
        item = lock_item(item_id)
        if item.status != WorkItemStatus.WAITING:
            raise Conflict(
                _("Only waiting items are classified again; this one is %(status)s.")
                % {"status": item.get_status_display()},
                item.status,
            )
        rules = active_rules()
        model = _prediction(item, rules)
        view = item_view(item, channel_key=item.channel.key, facts=_facts(item, rules), model=model)
        outcome = evaluator.classify(rules, view)
        _record_failures(outcome)
        if outcome.matched:
            _apply(item, outcome, actor=actor, now=now, fresh=False, model=model)
    item.refresh_from_db()
    return item, outcome


def _record_failures(outcome: evaluator.Outcome) -> None:
    for failure in outcome.failures:
        logger.warning(
            "classification rule %s (%s) skipped: %s", failure.rule_id, failure.name, failure.error
        )
        metrics.RULE_FAILURES.labels("classification").inc()
    if outcome.matched:
        metrics.RULE_FIRINGS.labels("classification").inc(len(outcome.matched))


def _apply(
    item: WorkItem,
    outcome: evaluator.Outcome,
    *,
    actor: User | None,
    now: datetime,
    fresh: bool,
    model: Mapping[str, Any] | None = None,
) -> None:
    changes: dict[str, Any] = {}
    fields: list[str] = []
    if outcome.queue_id is not None and outcome.queue_id != item.queue_id:
        queue = Queue.objects.select_related("routing_config").filter(pk=outcome.queue_id).first()
        if queue is None:
            logger.warning(
                "classification: queue %s is gone; item %s stays", outcome.queue_id, item.pk
            )
        else:
            changes["queue"] = {"from": item.queue_id, "to": queue.pk, "name": queue.name}
            if fresh:
                item.queue = queue
                item.routing_priority = queue.routing_config.routing_priority
                item.size_units, item.size_percent = size_from(queue.routing_config, item.channel)
                fields += ["queue", "routing_priority", "size_units", "size_percent"]
            else:
                requeue(item.pk, queue, now=now, keep_age=True)
                item.refresh_from_db()
    for name, value in (
        ("priority", outcome.priority),
        ("secondary_priority", outcome.secondary_priority),
    ):
        if value is not None and value != getattr(item, name):
            changes[name] = {"from": getattr(item, name), "to": value}
            setattr(item, name, value)
            fields.append(name)
    if fields:
        item.save(update_fields=fields)
    if "queue" in changes:
        queue_changed(item.queue_id)
    needs = _needs(outcome.skills)
    if needs:
        skills.require_skills(item, needs)
        changes["skills"] = [
            {"skill": n.skill_id, "min_level": str(n.min_level), "additional": n.additional}
            for n in needs
        ]
    ActionLog.objects.create(
        at=now,
        actor=actor if actor is not None and actor.is_authenticated else None,
        verb=CLASSIFIED,
        item=item,
        detail={
            "rules": [
                {
                    "id": m.rule_id,
                    "name": m.name,
                    "position": m.position,
                    "because": list(m.because),
                }
                for m in outcome.matched
            ],
            "changes": changes,
            "skipped": [
                {"id": f.rule_id, "name": f.name, "error": f.error} for f in outcome.failures
            ],
            # What the model predicted, with its confidence and the words that weighed most,
            # when a rule asked it.
            **({"model": dict(model)} if model else {}),
        },
    )


def _needs(specs: Iterable[Mapping[str, Any]]) -> list[skills.SkillNeed]:
    """The skill needs of an outcome, leaving out skills deleted since the rule was saved."""
    specs = list(specs)
    if not specs:
        return []
    known = set(
        Skill.objects.filter(pk__in=[int(s["skill"]) for s in specs])
        .order_by()
        .values_list("pk", flat=True)
    )
    needs = []
    for spec in specs:
        if int(spec["skill"]) not in known:
            logger.warning("classification: skill %s is gone; requirement skipped", spec["skill"])
            continue
        needs.append(
            skills.need(
                int(spec["skill"]),
                spec.get("min_level", 0),
                additional=bool(spec.get("additional")),
                drop_after_seconds=spec.get("drop_after_seconds"),
            )
        )
    return needs


# --- Preview ----------------------------------------------------------------------------------


def preview_classification(
    *,
    queue: Any,
    channel: Any,
    subject: str = "",
    payload: Mapping[str, Any] | None = None,
    customer: Mapping[str, Any] | None = None,
    language: str = "",
    priority: int = 5,
    secondary_priority: int = 5,
) -> dict[str, Any]:
    """What the active rules would do with a sample item, and why, without writing anything."""
    start = find_queue(queue, "queue")
    channel_row = _find_channel(channel)
    payload = dict(payload or {})
    view = {
        "queue": start.pk,
        "channel": channel_row.key,
        "subject": subject,
        "language": language or payload.get("language") or None,
        "priority": priority,
        "secondary_priority": secondary_priority,
        "payload": payload,
        "customer": dict(customer or {}),
    }
    outcome = evaluator.classify(active_rules(), view)
    return explain(
        outcome, start_queue=start, priority=priority, secondary_priority=secondary_priority
    )


def _find_channel(ref: Any) -> ServiceChannel:
    channel = None
    if isinstance(ref, int) and not isinstance(ref, bool):
        channel = ServiceChannel.objects.filter(pk=ref).first()
    elif isinstance(ref, str) and ref.strip():
        channel = ServiceChannel.objects.filter(key__iexact=ref.strip()).first()
    if channel is None:
        raise DomainError(_("No channel “%(channel)s”.") % {"channel": ref}, "channel")
    return channel


def explain(
    outcome: evaluator.Outcome,
    *,
    start_queue: Queue,
    priority: int,
    secondary_priority: int,
    applied: bool = False,
) -> dict[str, Any]:
    """An outcome as the preview shows it: the resulting values and a sentence that says why."""
    queue_ids = {start_queue.pk}
    if outcome.queue_id is not None:
        queue_ids.add(outcome.queue_id)
    names = dict(Queue.objects.filter(pk__in=queue_ids).values_list("pk", "name"))
    skill_names = dict(
        Skill.objects.filter(pk__in=[int(s["skill"]) for s in outcome.skills]).values_list(
            "pk", "name"
        )
    )
    queue_id = outcome.queue_id or start_queue.pk
    final_priority = outcome.priority or priority
    final_secondary = outcome.secondary_priority or secondary_priority
    skill_rows = [
        {
            "skill": int(s["skill"]),
            "name": skill_names.get(int(s["skill"]), "?"),
            "min_level": str(Decimal(str(s.get("min_level", 0))).quantize(Decimal("0.01"))),
            "additional": bool(s.get("additional")),
        }
        for s in outcome.skills
    ]
    matched: list[dict[str, Any]] = [
        {
            "rule": m.rule_id,
            "name": m.name,
            "position": m.position,
            "because": list(m.because),
            "changes": dict(m.changes),
        }
        for m in outcome.matched
    ]
    skills_text = ", ".join(f"{s['name']} ≥ {s['min_level']}" for s in skill_rows) or _("none")
    if applied:
        template = _(
            "The item is in queue %(queue)s, priority %(priority)s, secondary priority "
            "%(secondary)s, rules' skills [%(skills)s]"
        )
    else:
        template = _(
            "This item would go to queue %(queue)s, priority %(priority)s, secondary priority "
            "%(secondary)s, skills [%(skills)s]"
        )
    result = template % {
        "queue": names.get(queue_id, queue_id),
        "priority": final_priority,
        "secondary": final_secondary,
        "skills": skills_text,
    }
    if matched:
        reasons = "; ".join(
            _("rule %(position)s “%(name)s” (%(because)s)")
            % {
                "position": m["position"],
                "name": m["name"],
                "because": " and ".join(str(b) for b in m["because"]) or _("no conditions"),
            }
            for m in matched
        )
        text = _("%(result)s, because %(reasons)s.") % {"result": result, "reasons": reasons}
    else:
        text = _("%(result)s: no rule matched.") % {"result": result}
    return {
        "queue": {"id": queue_id, "name": names.get(queue_id, "")},
        "priority": final_priority,
        "secondary_priority": final_secondary,
        "skills": skill_rows,
        "matched": matched,
        "skipped": [
            {"rule": f.rule_id, "name": f.name, "error": f.error} for f in outcome.failures
        ],
        "stopped_by": outcome.stopped_by,
        "text": text,
    }
