"""The embedded run's wake-up call: what a service asks for after commit (a routing pass, an
outbound send) when there is no Celery to send a task to. ``routing.dispatch`` and
``messaging.dispatch`` call ``wake``; the loop in ``omnirouter.embedded`` waits on it. Nothing
here imports an app, so both can use it without depending on the loop.
"""

from __future__ import annotations

import threading

ROUTING = "routing"  # a routing pass is wanted
SENDS = "sends"  # an outbound message is due

_lock = threading.Lock()
_event = threading.Event()
_pending: set[str] = set()


def wake(what: str) -> None:
    """Ask the loop for ``what`` (``ROUTING``, ``SENDS``) now."""
    with _lock:
        _pending.add(what)
        _event.set()


def wait(timeout: float | None) -> frozenset[str]:
    """Wait until woken or ``timeout`` seconds pass; return (and forget) what was asked for."""
    _event.wait(timeout)
    with _lock:
        asked = frozenset(_pending)
        _pending.clear()
        _event.clear()
    return asked
