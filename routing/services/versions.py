"""Versions of classification rules, exception rules and routing configurations: who changed
what, when and why (django-simple-history keeps one row per save), and rollback to one.

A rollback is an ordinary edit made of an old version's values: it goes through the record's
own save service (checks, and for a routing configuration the copy of its priority to live
items), and is itself a new version whose reason says which version it restored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.db import models, transaction
from django.utils.translation import gettext as _

from omnirouter.errors import DomainError, NotFound

_Record = TypeVar("_Record", bound=models.Model)

REASON_MAX = 100  # simple-history's change reason column


def stamp(instance: models.Model, actor: Any, reason: str = "") -> None:
    """Name who makes the next save of ``instance`` and why, for its version."""
    if actor is not None and getattr(actor, "is_authenticated", False):
        instance._history_user = actor  # type: ignore[attr-defined]
    if reason:
        instance._change_reason = reason[:REASON_MAX]  # type: ignore[attr-defined]


def _fields(instance: models.Model) -> list[models.Field]:
    return [f for f in instance._meta.concrete_fields if not f.primary_key]


def versions(instance: models.Model) -> list[dict[str, Any]]:
    """The record's versions, newest first: number, when, by whom, why, the values, and which
    fields differ from the version before."""
    rows = list(
        instance.history.select_related("history_user").order_by("-history_date", "-history_id")  # type: ignore[attr-defined]
    )
    out = []
    for i, row in enumerate(rows):
        older = rows[i + 1] if i + 1 < len(rows) else None
        values = {f.attname: _plain(getattr(row, f.attname)) for f in _fields(instance)}
        changed = (
            sorted(
                f.attname
                for f in _fields(instance)
                if getattr(row, f.attname) != getattr(older, f.attname)
            )
            if older is not None
            else sorted(values)
        )
        out.append(
            {
                "version": row.history_id,
                "at": row.history_date,
                "by": row.history_user.get_username() if row.history_user else None,
                "kind": {"+": "created", "~": "changed", "-": "deleted"}[row.history_type],
                "reason": row.history_change_reason or "",
                "changed": changed,
                "values": values,
            }
        )
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, int | float | str | bool | list | dict) or value is None:
        return value
    return str(value)


def roll_back(
    *,
    instance: _Record,
    version: int,
    reason: str,
    actor: User | None,
    save: Callable[[_Record, dict[str, Any]], _Record],
) -> _Record:
    """Give ``instance`` the values of its ``version`` again, through ``save(instance,
    changes)`` (the record's own save service). ``reason`` is required; an unknown version
    answers ``NotFound``, values the record's checks now refuse (a skill deleted since) a
    ``DomainError`` saying why."""
    reason = (reason or "").strip()
    if not reason:
        raise DomainError(_("Say why you roll back (a reason is required)."), "reason")
    row = instance.history.filter(history_id=version).first()  # type: ignore[attr-defined]
    if row is None:
        raise NotFound(
            _("%(record)s has no version %(version)s.") % {"record": instance, "version": version},
            "version",
        )
    changes: dict[str, Any] = {}
    for field in _fields(instance):
        if field.is_relation:
            related_id = getattr(row, field.attname)
            related = None
            if related_id is not None:
                related = field.related_model._default_manager.filter(pk=related_id).first()  # type: ignore[union-attr]
                if related is None:
                    raise DomainError(
                        _("Version %(version)s refers to a %(what)s that no longer exists.")
                        % {"version": version, "what": field.verbose_name},
                        "version",
                    )
            changes[field.name] = related
        else:
            changes[field.name] = getattr(row, field.attname)
    with transaction.atomic():
        stamp(
            instance,
            actor,
            _("Rolled back to version %(version)s: %(reason)s")
            % {"version": version, "reason": reason},
        )
        return save(instance, changes)
