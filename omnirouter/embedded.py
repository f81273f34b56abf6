"""The embedded run's one loop: in the web process, it does what Celery beat and the workers do
in production (``ROUTING_MODE=embedded``, started by ``manage.py rundemo``).

- The periodic jobs are ``CELERY_BEAT_SCHEDULE``, the one definition of what runs periodically
  and how often: the loop calls the same tasks, in-process, at the same intervals (each first
  at start-up, then every interval).
- Woken for routing (``routing.dispatch`` after an event commits), it runs a routing pass at once.
- Every turn it sends the outbound messages that are due (``Message.next_attempt_at``); a new
  send wakes it (``messaging.dispatch``), so it leaves at once, and retries go out on the first
  turn after they are due (the sweep's interval bounds the wait).

``Loop.tick`` is one turn, with the time as an argument: tested without threads or sleeps.
This module sits at the top of the dependency graph: it imports the apps; nothing imports it
but the management command.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections

from omnirouter import wakeup

logger = logging.getLogger(__name__)

ROUTE = "routing.route"  # the job name a woken pass is reported under
SENDS = "messaging.sends"  # and the due sends


@dataclass
class ScheduledJob:
    name: str  # the beat entry's name
    task: str  # the Celery task's name
    interval_seconds: float
    due: float  # the loop's clock: when it runs next


def interval_seconds(schedule: Any) -> float:
    """A beat entry's schedule in seconds: a number, a timedelta, or ``celery.schedules.schedule``.
    A crontab has no fixed interval; the embedded loop refuses it rather than guess."""
    run_every = getattr(schedule, "run_every", schedule)
    if isinstance(run_every, timedelta):
        return run_every.total_seconds()
    if isinstance(run_every, int | float) and run_every > 0:
        return float(run_every)
    raise ImproperlyConfigured(
        f"The embedded loop runs beat entries with a fixed interval only, not {schedule!r}."
    )


def celery_task(name: str) -> Callable[[], Any]:
    """The registered Celery task ``name``, to call in-process."""
    from omnirouter.celery import app

    app.loader.import_default_modules()
    try:
        return app.tasks[name]
    except KeyError:
        raise ImproperlyConfigured(
            f"CELERY_BEAT_SCHEDULE names an unknown task {name!r}."
        ) from None


def _route() -> None:
    from routing import services

    services.route_waiting_work()


def _send_due() -> None:
    from messaging import services

    services.deliver_due_outbound()


class Loop:
    """The schedule and what one turn runs. ``now`` is any monotonic clock, in seconds."""

    def __init__(self, schedule: Mapping[str, Mapping[str, Any]], *, now: float) -> None:
        self.jobs = [
            ScheduledJob(name, entry["task"], interval_seconds(entry["schedule"]), due=now)
            for name, entry in schedule.items()
        ]
        # Resolved once: an unknown task name stops the start-up, not a later turn.
        self._tasks = {job.task: celery_task(job.task) for job in self.jobs}

    def next_due(self) -> float:
        return min((job.due for job in self.jobs), default=float("inf"))

    def tick(self, now: float, woken: frozenset[str] = frozenset()) -> list[str]:
        """Run what is due at ``now``: scheduled jobs past their time, a routing pass if woken
        for one (unless the sweep just ran one), the due sends. Returns the names run, in order.
        A failing job is logged and the others still run."""
        ran = []
        for job in self.jobs:
            if now < job.due:
                continue
            # One interval after it was due, so the rhythm does not drift; runs missed while the
            # loop was busy are not made up (as beat: the next run does the same work).
            job.due += job.interval_seconds
            if job.due <= now:
                job.due = now + job.interval_seconds
            self._run(job.name, self._tasks[job.task])
            ran.append(job.name)
        swept = any(job.task == "routing.sweep" and job.name in ran for job in self.jobs)
        if wakeup.ROUTING in woken and not swept:
            self._run(ROUTE, _route)
            ran.append(ROUTE)
        self._run(SENDS, _send_due)
        ran.append(SENDS)
        return ran

    @staticmethod
    def _run(name: str, job: Callable[[], Any]) -> None:
        try:
            job()
        except Exception:
            logger.exception("embedded loop: %s failed; it runs again on its next turn", name)


_lock = threading.Lock()
_thread: threading.Thread | None = None
_stop = threading.Event()


def start() -> None:
    """Start the loop thread once per process (idempotent)."""
    global _thread
    with _lock:
        if _thread is not None and _thread.is_alive():
            return
        _stop.clear()
        _thread = threading.Thread(target=_run_forever, name="omnirouter-embedded", daemon=True)
        _thread.start()


def stop() -> None:
    _stop.set()
    wakeup.wake(wakeup.ROUTING)


def _run_forever() -> None:
    loop = Loop(settings.CELERY_BEAT_SCHEDULE, now=time.monotonic())
    woken: frozenset[str] = frozenset()
    while not _stop.is_set():
        close_old_connections()
        try:
            loop.tick(time.monotonic(), woken)
        finally:
            close_old_connections()
        woken = wakeup.wait(timeout=max(0.0, loop.next_due() - time.monotonic()))
