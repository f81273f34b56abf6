"""Skills: the one place an item's required skills are written, and agents' skills.

Intake, classification rules, exception rules, transfers to "anyone with skill X" and the API all
call ``require_skills`` (add or raise requirements) or ``drop_skills``; nothing else writes
``ItemSkill`` rows. A change asks for a routing pass after commit: the item may now fit someone.

An agent's skills change through ``set_agent_skill`` and ``remove_agent_skill`` (the API, the
supervisor dashboard; the admin's inline edits the rows as a form), logged in ``ActionLog`` with
who did it; a change may let the agent take waiting work, so it asks for a pass too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from omnirouter.errors import DomainError
from presence.models import Agent
from routing.dispatch import request_routing
from routing.models import ActionLog, AgentSkill, ItemSkill, Skill, WorkItem

MAX_LEVEL = Decimal("99.99")


@dataclass(frozen=True)
class SkillNeed:
    """What an item needs of one skill (``drop_after_seconds`` only for an additional one)."""

    skill_id: int
    min_level: Decimal = Decimal("0")
    additional: bool = False
    drop_after_seconds: int | None = None


def parse_needs(raw: Sequence[dict[str, Any]]) -> list[SkillNeed]:
    """Turn ``[{"skill": <id or name>, "min_level": 5, "additional": true,
    "drop_after_seconds": 60}]`` into needs, refusing unknown skills and bad levels by name."""
    names = {str(r.get("skill")).casefold() for r in raw if not isinstance(r.get("skill"), int)}
    ids = {r["skill"] for r in raw if isinstance(r.get("skill"), int)}
    known = {
        name.casefold(): pk
        for pk, name in Skill.objects.values_list("pk", "name")
        if name.casefold() in names
    }
    known_ids = set(Skill.objects.filter(pk__in=ids).values_list("pk", flat=True))
    needs = []
    for entry in raw:
        ref = entry.get("skill")
        if isinstance(ref, int) and not isinstance(ref, bool):
            if ref not in known_ids:
                raise DomainError(_("No skill with id %(id)s.") % {"id": ref}, "skills")
            skill_id = ref
        else:
            named = known.get(str(ref).casefold())
            if named is None:
                raise DomainError(_("No skill named “%(name)s”.") % {"name": ref}, "skills")
            skill_id = named
        needs.append(
            need(
                skill_id,
                entry.get("min_level", 0),
                additional=bool(entry.get("additional", False)),
                drop_after_seconds=entry.get("drop_after_seconds"),
            )
        )
    return needs


def need(
    skill_id: int,
    min_level: Any = 0,
    *,
    additional: bool = False,
    drop_after_seconds: int | None = None,
) -> SkillNeed:
    """A checked ``SkillNeed``: level 0-99.99 (two decimals), and an additional requirement
    names when it drops (a required one never does)."""
    try:
        level = Decimal(str(min_level)).quantize(Decimal("0.01"))
        if level.is_nan():  # "NaN" quantizes to itself and cannot be compared
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        raise DomainError(
            _("A skill level is a number from 0 to 99.99, not “%(value)s”.") % {"value": min_level},
            "skills",
        ) from None
    if not Decimal("0") <= level <= MAX_LEVEL:
        raise DomainError(
            _("A skill level is from 0 to 99.99; %(value)s is out of range.") % {"value": level},
            "skills",
        )
    if additional:
        if not isinstance(drop_after_seconds, int) or drop_after_seconds < 0:
            raise DomainError(
                _("An additional skill says after how many seconds it is dropped."), "skills"
            )
    elif drop_after_seconds is not None:
        raise DomainError(_("Only an additional skill is dropped after a wait."), "skills")
    return SkillNeed(skill_id, level, additional, drop_after_seconds if additional else None)


def require_skills(item: WorkItem, needs: Iterable[SkillNeed]) -> None:
    """Add ``needs`` to the item's requirements; a skill it already needs is replaced."""
    needs = list(needs)
    if not needs:
        return
    with transaction.atomic():
        ItemSkill.objects.bulk_create(
            [
                ItemSkill(
                    item=item,
                    skill_id=n.skill_id,
                    min_level=n.min_level,
                    additional=n.additional,
                    drop_after_seconds=n.drop_after_seconds,
                )
                for n in needs
            ],
            update_conflicts=True,
            unique_fields=["item", "skill"],
            update_fields=["min_level", "additional", "drop_after_seconds"],
        )
        request_routing()


def drop_skills(item: WorkItem, skill_ids: Iterable[int]) -> int:
    """Remove requirements; returns how many were dropped."""
    with transaction.atomic():
        dropped, _by_model = ItemSkill.objects.filter(
            item=item, skill_id__in=list(skill_ids)
        ).delete()
        if dropped:
            request_routing()
    return dropped


def attribute_needs(payload: dict[str, Any]) -> list[SkillNeed]:
    """Skills an item requires because of what its payload carries (``Skill.attribute`` /
    ``value``: a ``language`` of ``ja`` requires the skill matched to it)."""
    pairs = {
        (str(k), str(v)) for k, v in payload.items() if isinstance(v, str | int) and str(v).strip()
    }
    if not pairs:
        return []
    keys = {k for k, _v in pairs}
    return [
        SkillNeed(pk)
        for pk, attribute, value in Skill.objects.filter(attribute__in=keys).values_list(
            "pk", "attribute", "value"
        )
        if (attribute, value) in pairs
    ]


def require_skills_of_items(item_ids: Sequence[int], needs: Iterable[SkillNeed]) -> None:
    """``require_skills`` for many items at once, in one statement (exception rules)."""
    needs = list(needs)
    if not needs or not item_ids:
        return
    with transaction.atomic():
        ItemSkill.objects.bulk_create(
            [
                ItemSkill(
                    item_id=item_id,
                    skill_id=n.skill_id,
                    min_level=n.min_level,
                    additional=n.additional,
                    drop_after_seconds=n.drop_after_seconds,
                )
                for item_id in item_ids
                for n in needs
            ],
            update_conflicts=True,
            unique_fields=["item", "skill"],
            update_fields=["min_level", "additional", "drop_after_seconds"],
        )
        request_routing()


def drop_skills_of_items(item_ids: Sequence[int], skill_ids: Iterable[int]) -> int:
    """``drop_skills`` for many items at once, in one statement; returns how many were dropped."""
    with transaction.atomic():
        dropped, _by_model = ItemSkill.objects.filter(
            item_id__in=list(item_ids), skill_id__in=list(skill_ids)
        ).delete()
        if dropped:
            request_routing()
    return dropped


def set_agent_skill(
    *,
    agent: Agent,
    skill: Skill,
    level: object,
    actor: AbstractBaseUser,
    create_only: bool = False,
    now: datetime | None = None,
) -> AgentSkill:
    """Give ``agent`` ``skill`` at ``level`` (0-99.99), or change their level in it.

    ``create_only``: refuse (400) when the agent already has the skill (the API's POST).
    Logged as ``set_agent_skill`` with the actor, the old and the new level.
    """
    now = now or timezone.now()
    checked = need(skill.pk, level).min_level
    with transaction.atomic():
        row = AgentSkill.objects.select_for_update().filter(agent=agent, skill=skill).first()
        if row is not None and create_only:
            raise DomainError(
                _("%(agent)s already has %(skill)s (level %(level)s): change that level.")
                % {"agent": agent, "skill": skill, "level": row.level},
                "duplicate",
            )
        was = None if row is None else str(row.level)
        if row is None:
            row = AgentSkill.objects.create(agent=agent, skill=skill, level=checked)
        else:
            row.level = checked
            row.save(update_fields=["level"])
        ActionLog.objects.create(
            at=now,
            actor_id=actor.pk,
            verb="set_agent_skill",
            agent=agent,
            detail={"skill": skill.pk, "skill_name": skill.name, "was": was, "level": str(checked)},
        )
        request_routing()
    return row


def remove_agent_skill(
    *, agent_skill: AgentSkill, actor: AbstractBaseUser, now: datetime | None = None
) -> None:
    """Take a skill away from an agent; logged as ``remove_agent_skill`` with the actor."""
    now = now or timezone.now()
    with transaction.atomic():
        ActionLog.objects.create(
            at=now,
            actor_id=actor.pk,
            verb="remove_agent_skill",
            agent_id=agent_skill.agent_id,
            detail={
                "skill": agent_skill.skill_id,
                "skill_name": agent_skill.skill.name,
                "was": str(agent_skill.level),
            },
        )
        agent_skill.delete()
        request_routing()
