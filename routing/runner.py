"""The embedded routing loop: one thread in the web process does what Celery does in production.

Events wake it at once (``wake``); otherwise it runs the sweep every
``ROUTING_SWEEP_INTERVAL_SECONDS``. Same services, same rules: only the transport differs.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

_wakeup = threading.Event()
_started = threading.Lock()
_thread: threading.Thread | None = None
_stop = threading.Event()


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
            elif woke:
                services.route_waiting_work()
        except Exception:
            logger.exception("routing loop: pass failed; retrying on the next tick")
            time.sleep(interval)
        finally:
            close_old_connections()
