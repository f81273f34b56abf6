"""The embedded messaging loop: what Celery beat's ``messaging.maintenance`` does in production
(end idle conversations, keep conversations in step with routing, re-drive lost sends), run by
one thread in the web process every ``MESSAGING_MAINTENANCE_INTERVAL_SECONDS``."""

from __future__ import annotations

import logging
import threading

from django.db import close_old_connections

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_thread: threading.Thread | None = None
_stop = threading.Event()


def start(interval_seconds: float = 10.0) -> None:
    """Start the loop once per process (idempotent)."""
    global _thread
    with _lock:
        if _thread is not None and _thread.is_alive():
            return
        _stop.clear()
        _thread = threading.Thread(
            target=_loop, args=(interval_seconds,), name="omnirouter-messaging", daemon=True
        )
        _thread.start()


def stop() -> None:
    _stop.set()


def _loop(interval_seconds: float) -> None:
    from messaging import services

    while not _stop.wait(interval_seconds):
        close_old_connections()
        try:
            services.run_maintenance()
        except Exception:
            logger.exception("messaging loop: maintenance failed; retrying on the next tick")
        finally:
            close_old_connections()
