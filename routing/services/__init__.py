"""Routing services: every write to work items and agent work goes through these functions.

One module per concern; this package re-exports their public verbs, so callers write
``from routing import services`` and ``services.accept_work(...)``.

- ``intake``: enqueue and cancel items.
- ``idempotency``: enqueue once per ``Idempotency-Key``.
- ``routing_pass`` and ``offers``: match waiting items to agents and write the offers.
- ``work``: an agent's accept, decline, close, transfer (to a queue, a person, a skill).
- ``skills``: item requirements and agents' skills.
- ``presence``: status changes, console liveness, capacity from the presence configuration.
- ``supervision``: a supervisor's move and push.
- ``sweep``: the periodic safety net.
- ``configuration``: edits that change how live work routes.
- ``classification``: classification rules (checked, run at intake and on demand, previewed).
- ``exceptions``: exception rules (checked, run periodically).
- ``versions``: versions of rules and routing configurations, and rollback.
- ``locks``, ``transitions``, ``events``: what the others share (lock order, state changes,
  after-commit events).

Lock order, everywhere, so no two transactions wait on each other in a cycle:
    routing pass lock -> agent rows (by id) -> agent work rows -> work item rows.
Item claims use ``SKIP LOCKED``: a pass never waits on an item another transaction holds.
Side effects (pushes to consoles, routing requests) leave only after commit.
"""

from omnirouter.configuration import delete_configuration, save_configuration
from routing.rules import describe as describe_condition
from routing.services.classification import (
    classify_item,
    preview_classification,
    save_classification_rule,
)
from routing.services.classification import (
    explain as explain_classification,
)
from routing.services.configuration import (
    release_uncovered_offers,
    save_queue,
    sync_queue_items,
    update_presence_status,
    update_routing_config,
)
from routing.services.exceptions import run_exception_rules, save_exception_rule
from routing.services.idempotency import (
    IdempotencyKeyReused,
    IntakeAnswer,
    enqueue_work_once,
    purge_intake_requests,
)
from routing.services.intake import cancel_work_item, enqueue_work
from routing.services.presence import apply_presence_config, set_presence, touch_console
from routing.services.routing_pass import PassResult, route_waiting_work
from routing.services.skills import remove_agent_skill, set_agent_skill
from routing.services.supervision import move_item, push_item_to_agent
from routing.services.sweep import expire_lost_consoles, expire_offers, reconcile_capacity, sweep
from routing.services.versions import roll_back, versions
from routing.services.versions import stamp as stamp_version
from routing.services.work import (
    accept_work,
    close_work,
    decline_work,
    transfer_work,
    transfer_work_to_agent,
    transfer_work_to_skill,
)

__all__ = [
    "describe_condition",
    "explain_classification",
    "stamp_version",
    "versions",
    "roll_back",
    "save_exception_rule",
    "run_exception_rules",
    "save_classification_rule",
    "preview_classification",
    "classify_item",
    "IdempotencyKeyReused",
    "IntakeAnswer",
    "PassResult",
    "accept_work",
    "apply_presence_config",
    "cancel_work_item",
    "close_work",
    "decline_work",
    "delete_configuration",
    "enqueue_work",
    "enqueue_work_once",
    "expire_lost_consoles",
    "expire_offers",
    "move_item",
    "purge_intake_requests",
    "push_item_to_agent",
    "reconcile_capacity",
    "release_uncovered_offers",
    "remove_agent_skill",
    "route_waiting_work",
    "save_configuration",
    "save_queue",
    "set_agent_skill",
    "set_presence",
    "sweep",
    "sync_queue_items",
    "touch_console",
    "transfer_work",
    "transfer_work_to_agent",
    "transfer_work_to_skill",
    "update_presence_status",
    "update_routing_config",
]
