"""Configuration records that have no effect on live work by themselves (a service channel, a new
queue or presence status, a decline reason): validated save and guarded delete, for every app.

Edits that move live work (a routing configuration's priority, a queue's configuration, a status's
channels) have their own services, which call these for the record itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import ForeignObjectRel, ProtectedError, RestrictedError
from django.utils.translation import gettext as _

from omnirouter.errors import Conflict, DomainError

_Config = TypeVar("_Config", bound=models.Model)


def save_configuration(
    *,
    instance: _Config,
    changes: Mapping[str, Any],
    m2m: Mapping[str, Iterable[Any]] | None = None,
) -> _Config:
    """Create or edit a configuration record.

    Fields are checked as a form checks them (model validators, unique fields, constraints); a
    refusal raises ``DomainError`` and writes nothing.
    """
    with transaction.atomic():
        for name, value in changes.items():
            setattr(instance, name, value)
        try:
            instance.full_clean()
        except ValidationError as exc:
            raise DomainError(" ".join(exc.messages), "invalid") from None
        instance.save()
        for name, values in (m2m or {}).items():
            getattr(instance, name).set(list(values))
    return instance


def delete_configuration(*, instance: models.Model) -> None:
    """Delete a configuration record nothing depends on.

    A record in use (a queue or channel with work items, a routing configuration with queues, a
    presence configuration with agents, a status agents are in) is refused with ``Conflict``
    saying what uses it. Uses are counted first, so a queue with a long history is not loaded
    into memory just to be refused.
    """
    uses = _uses_of(instance)
    if uses:
        raise Conflict(
            _("%(record)s cannot be deleted: it is used by %(uses)s.")
            % {"record": instance, "uses": ", ".join(uses)},
            "in_use",
        )
    try:
        with transaction.atomic():
            instance.delete()
    except (ProtectedError, RestrictedError) as exc:
        # Something began using it between the count and the delete.
        raise Conflict(
            _("%(record)s cannot be deleted: it is in use.") % {"record": instance}, "in_use"
        ) from exc


def _uses_of(instance: models.Model) -> list[str]:
    uses = []
    for rel in instance._meta.get_fields(include_hidden=True):
        if not (
            isinstance(rel, ForeignObjectRel)
            and rel.auto_created
            and not rel.concrete
            and (rel.one_to_many or rel.one_to_one)
        ):
            continue
        if rel.on_delete not in (models.PROTECT, models.RESTRICT):
            continue
        related = rel.related_model
        count = related._base_manager.filter(**{rel.field.name: instance}).count()
        if count:
            meta = related._meta
            uses.append(f"{count} {meta.verbose_name if count == 1 else meta.verbose_name_plural}")
    # Uses that no PROTECT relation shows (a SET_NULL the model must not lose silently).
    extra = getattr(instance, "delete_blockers", None)
    if extra is not None:
        uses.extend(extra())
    return uses
