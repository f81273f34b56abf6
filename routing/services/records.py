"""The record behind a work item (``WorkItem.record_type`` / ``record_id``: a conversation, a case).

An app whose records are routed as work items registers, once, what happens to a record when its
item changes hands (``register``, from the app's ``AppConfig.ready``). Routing calls those hooks
inside its own transaction, right after it changed the item: the record and the item commit
together or not at all (an exception in a hook rolls the routing change back). This is the only
place routing reaches the apps built on it, and it knows nothing of them but a model label, so
dependencies still point one way (messaging imports routing, never the reverse).

The changes reported are the ones that change who holds the work:

- ``on_accepted``: an agent accepted the item (or it was auto-accepted); ``agent_id`` holds it.
- ``on_requeued``: the accepted item went back to a queue (a transfer); nobody holds it.
- ``on_closed``: the agent closed the item; ``agent_id`` held it.
- ``on_canceled``: the item was withdrawn before anyone accepted it.

Offers made, declined or timed out do not change the record: the item still waits for someone.

Lock order: routing's rows (agents -> agent work -> item) are locked when a hook runs, so a hook
locks its record after them. A caller that locks a record and then changes its item takes
routing's locks first with ``lock_item_for_record``, keeping that one order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models

from routing.models import AgentWork, WorkItem, WorkItemStatus
from routing.services.locks import LiveWorkMoved, lock_item_and_live_work


@dataclass(frozen=True)
class ItemChange:
    """What a hook is told: the item, the record's primary key (as stored on the item), the
    item's new status, the agent who holds or held it, and when."""

    item_id: int
    record_id: str
    status: str
    agent_id: int | None
    now: datetime


Hook = Callable[[ItemChange], None]


@dataclass(frozen=True)
class RecordHooks:
    on_accepted: Hook | None = None
    on_requeued: Hook | None = None
    on_closed: Hook | None = None
    on_canceled: Hook | None = None


ACCEPTED, REQUEUED, CLOSED, CANCELED = "on_accepted", "on_requeued", "on_closed", "on_canceled"

# model label ("messaging.conversation") -> its hooks. Filled at start-up, read-only afterwards.
_registry: dict[str, RecordHooks] = {}


def register(
    model: type[models.Model],
    *,
    on_accepted: Hook | None = None,
    on_requeued: Hook | None = None,
    on_closed: Hook | None = None,
    on_canceled: Hook | None = None,
) -> None:
    """Keep ``model``'s records in step with their work items (registering again replaces)."""
    _registry[model._meta.label_lower] = RecordHooks(
        on_accepted=on_accepted,
        on_requeued=on_requeued,
        on_closed=on_closed,
        on_canceled=on_canceled,
    )


def item_changed(
    change: str,
    items: Iterable[tuple[int, int | None, str, int | None]],
    *,
    now: datetime,
) -> None:
    """Run the registered ``change`` hook for each (item id, record type id, record id, agent id)
    whose record type has one. Called by routing's services inside their transaction."""
    if not _registry:
        return
    for item_id, record_type_id, record_id, agent_id in items:
        if record_type_id is None or not record_id:
            continue
        label = ContentType.objects.get_for_id(record_type_id)
        hooks = _registry.get(f"{label.app_label}.{label.model}")
        hook = getattr(hooks, change, None) if hooks is not None else None
        if hook is not None:
            hook(ItemChange(item_id, record_id, _STATUS[change], agent_id, now))


def item_changed_one(change: str, item: WorkItem, *, agent_id: int | None, now: datetime) -> None:
    item_changed(change, [(item.pk, item.record_type_id, item.record_id, agent_id)], now=now)


_STATUS = {
    ACCEPTED: WorkItemStatus.ASSIGNED,
    REQUEUED: WorkItemStatus.WAITING,
    CLOSED: WorkItemStatus.CLOSED,
    CANCELED: WorkItemStatus.CANCELED,
}


def lock_item_for_record(item_id: int) -> tuple[WorkItem, AgentWork | None]:
    """Lock an item and its live agent work in routing's order, before the caller locks the
    record behind it. Returns the item and its live work (pushed or opened), if any.

    Raises ``LiveWorkMoved`` if an offer was made or ended while the locks were taken: run the
    caller's transaction again.
    """
    return lock_item_and_live_work(item_id)


__all__ = [
    "ACCEPTED",
    "CANCELED",
    "CLOSED",
    "REQUEUED",
    "ItemChange",
    "LiveWorkMoved",
    "RecordHooks",
    "facts_for",
    "item_changed",
    "item_changed_one",
    "lock_item_for_record",
    "register",
    "register_facts",
    "register_prediction",
    "prediction_for",
]


# --- Facts for classification rules -----------------------------------------------------------
# An app may also tell classification rules what it knows of the record behind an item: its
# customer's attributes (``customer.*`` in conditions) and the language of the exchange.

Facts = Callable[[str], dict]

# model label -> fn(record_id) -> {"customer": {...}, "language": "ja"}
_facts: dict[str, Facts] = {}


def register_facts(model: type[models.Model], facts: Facts) -> None:
    """``facts(record_id)`` answers ``{"customer": {...}, "language": ...}`` (either optional)
    for a record of ``model``; called only when an active rule asks for them."""
    _facts[model._meta.label_lower] = facts


def facts_for(record_type_id: int | None, record_id: str) -> dict:
    """What the record's app tells of it, or ``{}`` (no record, no hook)."""
    if record_type_id is None or not record_id or not _facts:
        return {}
    label = ContentType.objects.get_for_id(record_type_id)
    hook = _facts.get(f"{label.app_label}.{label.model}")
    return dict(hook(record_id) or {}) if hook is not None else {}


# --- A model's guess for classification rules -------------------------------------------------
# The assistance app may tell classification rules what its model predicts for an item
# (``model.queue``, ``model.confidence`` in conditions). Routing imports nothing of it.

Prediction = Callable[[Any], dict | None]

_prediction: list[Prediction] = []


def register_prediction(predict: Prediction) -> None:
    """``predict(item)`` answers ``{"queue": label, "confidence": p, "terms": [...],
    "version": id}`` when the model is sure enough, else ``None`` (the rules decide)."""
    _prediction[:] = [predict]


def prediction_for(item: Any) -> dict | None:
    """The registered model's guess for ``item``, or ``None`` (no model app, unsure)."""
    return _prediction[0](item) if _prediction else None
