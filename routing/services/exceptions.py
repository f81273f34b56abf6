"""Exception rules: what happens to items that wait too long, sit in a queue that is too long, or
have nobody online to take them. Checked and saved here; run by ``run_exception_rules`` every
``ROUTING_EXCEPTION_RULES_INTERVAL_SECONDS`` (Celery beat, or the embedded loop).

A run is set-based: per active rule, one query finds the items it is due for, one inserts their
firings (``ExceptionFiring``: a rule fires once per item, ever), one statement per action
changes them all, one inserts their history entries (``ActionLog``, verb ``exception_rule``).
Its cost grows with the number of rules, not of items. Rules are locked ``SKIP LOCKED`` for the
run, so two overlapping runs (a slow beat, two beats) never fire one rule twice for an item.
Supervisors of the queues involved are told after commit (``queue.alert`` on the queue's group);
a failed push is counted and never fails the run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Greatest, Least
from django.utils import timezone
from django.utils.translation import gettext as _

from omnirouter import metrics, realtime
from omnirouter.configuration import save_configuration
from omnirouter.errors import DomainError
from presence.models import Agent
from routing.dispatch import request_routing
from routing.models import (
    ActionLog,
    ExceptionFiring,
    ExceptionRule,
    ExceptionTrigger,
    Queue,
    ServiceChannel,
    Skill,
    WorkItem,
    WorkItemStatus,
)
from routing.services import skills, versions
from routing.services.classification import find_queue, skill_specs
from routing.services.events import queue_changed

logger = logging.getLogger(__name__)

FIRED = "exception_rule"
ACTIONS = ("priority_by", "priority_to", "queue", "add_skills", "drop_skills", "notify")


# --- Checking ---------------------------------------------------------------------------------


def check_exception_actions(actions: Any) -> dict[str, Any]:
    """The actions as stored (queues and skills by id), or ``DomainError`` naming the problem."""
    if not isinstance(actions, Mapping):
        raise DomainError(_("Actions must be an object."), "actions")
    unknown = sorted(set(actions) - set(ACTIONS))
    if unknown:
        raise DomainError(
            _(
                "Unknown action “%(action)s”: use priority_by, priority_to, queue, add_skills, "
                "drop_skills or notify."
            )
            % {"action": unknown[0]},
            "actions",
        )
    out: dict[str, Any] = {}
    if actions.get("priority_by") is not None and actions.get("priority_to") is not None:
        raise DomainError(_("Raise priority by a step or to a level, not both."), "actions")
    by = actions.get("priority_by")
    if by is not None:
        if isinstance(by, bool) or not isinstance(by, int) or not 1 <= by <= 9:
            raise DomainError(
                _("priority_by is a whole number of steps from 1 to 9, not “%(value)s”.")
                % {"value": by},
                "actions",
            )
        out["priority_by"] = by
    to = actions.get("priority_to")
    if to is not None:
        if isinstance(to, bool) or not isinstance(to, int) or not 1 <= to <= 10:
            raise DomainError(
                _("priority_to is a priority from 1 (most urgent) to 10, not “%(value)s”.")
                % {"value": to},
                "actions",
            )
        out["priority_to"] = to
    if actions.get("queue") is not None:
        out["queue"] = find_queue(actions["queue"]).pk
    if actions.get("add_skills"):
        out["add_skills"] = skill_specs(actions["add_skills"])
    if actions.get("drop_skills"):
        out["drop_skills"] = _skill_ids(actions["drop_skills"])
    if "notify" in actions:
        if not isinstance(actions["notify"], bool):
            raise DomainError(_("notify is true or false."), "actions")
        if actions["notify"]:
            out["notify"] = True
    if not out:
        raise DomainError(
            _(
                "An exception rule needs at least one action (priority_by, priority_to, queue, "
                "add_skills, drop_skills, notify)."
            ),
            "actions",
        )
    return out


def _skill_ids(raw: Any) -> list[int]:
    if not isinstance(raw, list):
        raise DomainError(_("drop_skills is a list of skill names or ids."), "actions")
    ids = []
    for ref in raw:
        if isinstance(ref, int) and not isinstance(ref, bool):
            found = Skill.objects.filter(pk=ref).values_list("pk", flat=True).first()
        else:
            found = Skill.objects.filter(name__iexact=str(ref)).values_list("pk", flat=True).first()
        if found is None:
            raise DomainError(_("No skill named “%(name)s”.") % {"name": ref}, "skills")
        ids.append(found)
    return ids


def save_exception_rule(
    *,
    rule: ExceptionRule,
    changes: Mapping[str, Any],
    actor: User | None = None,
    reason: str = "",
) -> ExceptionRule:
    """Create or edit an exception rule, checked; a new version is kept in its history."""
    actions = check_exception_actions(changes.get("actions", rule.actions))
    trigger = changes.get("trigger", rule.trigger)
    threshold = changes.get("threshold", rule.threshold)
    if trigger in (ExceptionTrigger.WAITED, ExceptionTrigger.NO_AGENT) and not threshold:
        raise DomainError(_("N is a number of seconds, at least 1."), "threshold")
    versions.stamp(rule, actor, reason)
    return save_configuration(instance=rule, changes={**changes, "actions": actions})


# --- Running ----------------------------------------------------------------------------------


def due_items(rule: ExceptionRule, *, now: datetime) -> QuerySet[WorkItem]:
    """Waiting items the rule is due to fire for (and has not fired for yet)."""
    items = WorkItem.objects.filter(status=WorkItemStatus.WAITING).exclude(
        Exists(ExceptionFiring.objects.filter(rule_id=rule.pk, item_id=OuterRef("pk")))
    )
    if rule.queue_id is not None:
        items = items.filter(queue_id=rule.queue_id)
    since = now - timedelta(seconds=rule.threshold)
    if rule.trigger == ExceptionTrigger.WAITED:
        return items.filter(enqueued_at__lte=since)
    if rule.trigger == ExceptionTrigger.QUEUE_LENGTH:
        long_queues = (
            WorkItem.objects.filter(status=WorkItemStatus.WAITING)
            .order_by()
            .values("queue_id")
            .annotate(n=Count("id"))
            .filter(n__gt=rule.threshold)
            .values("queue_id")
        )
        return items.filter(queue_id__in=long_queues)
    # No agent: no member of the item's queue is online for its channel now, and none has
    # changed status within N seconds (so none was online then either), and it waited N s.
    members = Agent.objects.filter(memberships__queue_id=OuterRef("queue_id"))
    online = members.filter(status__is_online=True, status__channels=OuterRef("channel_id"))
    changed = members.filter(status_changed_at__gt=since)
    return items.filter(enqueued_at__lte=since).exclude(Exists(online)).exclude(Exists(changed))


def run_exception_rules(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Fire every active exception rule for the items it is due for (at most ``limit`` items
    per rule per run; the next run takes the rest). Returns rule name -> items fired for."""
    now = now or timezone.now()
    fired: dict[str, int] = {}
    with transaction.atomic():
        # Locked for the run: an overlapping run skips the rules this one holds.
        rules = list(
            ExceptionRule.objects.select_for_update(skip_locked=True)
            .filter(active=True)
            .order_by("position", "id")
        )
        for rule in rules:
            try:
                with transaction.atomic():
                    count = _fire(rule, now=now, limit=limit)
            except Exception:
                logger.exception("exception rule %s (%s) skipped this run", rule.pk, rule.name)
                metrics.RULE_FAILURES.labels("exception").inc()
                continue
            if count:
                fired[rule.name] = count
                metrics.RULE_FIRINGS.labels("exception").inc(count)
    return fired


def _fire(rule: ExceptionRule, *, now: datetime, limit: int) -> int:
    rows = list(
        due_items(rule, now=now).order_by("id").values_list("id", "queue_id", "priority")[:limit]
    )
    if not rows:
        return 0
    ids = [r[0] for r in rows]
    ExceptionFiring.objects.bulk_create(
        [ExceptionFiring(rule=rule, item_id=item_id, at=now) for item_id in ids]
    )
    actions = rule.actions or {}
    waiting = WorkItem.objects.filter(pk__in=ids, status=WorkItemStatus.WAITING)
    changes: dict[str, Any] = {}
    queues = {queue_id for _id, queue_id, _p in rows}
    if actions.get("priority_by"):
        waiting.update(priority=Greatest(F("priority") - actions["priority_by"], Value(1)))
        changes["priority_by"] = actions["priority_by"]
    elif actions.get("priority_to"):
        waiting.update(priority=Least(F("priority"), Value(actions["priority_to"])))
        changes["priority_to"] = actions["priority_to"]
    if actions.get("queue"):
        target = Queue.objects.select_related("routing_config").filter(pk=actions["queue"]).first()
        if target is not None:
            config = target.routing_config
            size: dict[str, Any] = {"size_units": None, "size_percent": None}
            if config.size_units:
                size["size_units"] = config.size_units
            elif config.size_percent:
                size["size_percent"] = config.size_percent
            else:
                size["size_units"] = Subquery(
                    ServiceChannel.objects.filter(pk=OuterRef("channel_id")).values(
                        "default_size_units"
                    )[:1]
                )
            # The item keeps its age: it has waited long enough already.
            waiting.update(queue_id=target.pk, routing_priority=config.routing_priority, **size)
            changes["queue"] = {"to": target.pk, "name": target.name}
            queues.add(target.pk)
    if actions.get("add_skills"):
        skills.require_skills_of_items(ids, _needs(actions["add_skills"]))
        changes["add_skills"] = actions["add_skills"]
    if actions.get("drop_skills"):
        skills.drop_skills_of_items(ids, actions["drop_skills"])
        changes["drop_skills"] = actions["drop_skills"]
    ActionLog.objects.bulk_create(
        [
            ActionLog(
                at=now,
                actor=None,
                verb=FIRED,
                item_id=item_id,
                detail={
                    "rule": {"id": rule.pk, "name": rule.name},
                    "trigger": rule.trigger,
                    "threshold": rule.threshold,
                    "from_queue": queue_id,
                    "priority_before": priority,
                    "changes": changes,
                },
            )
            for item_id, queue_id, priority in rows
        ]
    )
    for queue_id in sorted(queues):
        queue_changed(queue_id)
    if actions.get("notify"):
        _notify(rule, rows, now=now)
    request_routing()
    return len(rows)


def _needs(specs: list[Mapping[str, Any]]) -> list[skills.SkillNeed]:
    return [
        skills.need(
            int(s["skill"]),
            s.get("min_level", 0),
            additional=bool(s.get("additional")),
            drop_after_seconds=s.get("drop_after_seconds"),
        )
        for s in specs
    ]


def _notify(rule: ExceptionRule, rows: list[tuple[int, int, int]], *, now: datetime) -> None:
    """One alert per queue the items were in, to that queue's supervisors (after commit)."""
    by_queue: dict[int, list[int]] = {}
    for item_id, queue_id, _priority in rows:
        by_queue.setdefault(queue_id, []).append(item_id)
    messages = [
        (
            realtime.queue_group(queue_id),
            realtime.QUEUE_ALERT,
            {
                "queue_id": queue_id,
                "rule": {"id": rule.pk, "name": rule.name, "trigger": rule.trigger},
                "items": item_ids,
                "at": now.isoformat(),
            },
        )
        for queue_id, item_ids in sorted(by_queue.items())
    ]
    realtime.publish_many(messages)
