"""The embedded routing loop: one thread in the web process does what Celery does in production.

Events wake it at once (``wake``); otherwise it runs the sweep every
``ROUTING_SWEEP_INTERVAL_SECONDS``. Same services, same rules: only the transport differs.

Other apps add their own periodic jobs (what Celery beat runs for them in production) with
``register_periodic`` from their ``AppConfig.ready``, so this module never imports them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

_wakeup = threading.Event()
_started = threading.Lock()
_thread: threading.Thread | None = None
_stop = threading.Event()
# name -> [interval in seconds, job, monotonic time it is next due]
_periodic: dict[str, list] = {}


def register_periodic(name: str, interval_seconds: float, job: Callable[[], object]) -> None:
    """Run ``job`` about every ``interval_seconds`` in the loop, first on the loop's next sweep
    (re-registering replaces it)."""
    _periodic[name] = [float(interval_seconds), job, time.monotonic()]


def _run_due_periodic() -> None:
    now = time.monotonic()
    for name, entry in list(_periodic.items()):
        interval, job, due = entry
        if now < due:
            continue
        entry[2] = now + interval
        try:
            job()
        except Exception:
            logger.exception("routing loop: periodic job %s failed", name)


def wake() -> None:
    _wakeup.set()


def start() -> None:
    """Start the loop once per process (idempotent)."""
    global _thread
    with _started:
        if _thread is not None and _thread.is_alive():
            return
        _stop.clear()
        _thread = threading.Thread(target=_loop, name="omnirouter-routing", daemon=True)
        _thread.start()


def stop() -> None:
    _stop.set()
    _wakeup.set()


def _loop() -> None:
    from routing import services

    interval = settings.ROUTING_SWEEP_INTERVAL_SECONDS
    next_sweep = 0.0
    while not _stop.is_set():
        woke = _wakeup.wait(timeout=max(0.0, next_sweep - time.monotonic()))
        _wakeup.clear()
        close_old_connections()
        try:
            if time.monotonic() >= next_sweep:
                services.sweep()
                next_sweep = time.monotonic() + interval
                _run_due_periodic()
            elif woke:
                services.route_waiting_work()
        except Exception:
            logger.exception("routing loop: pass failed; retrying on the next tick")
            time.sleep(interval)
        finally:
            close_old_connections()
