"""Assistance tasks: retraining, nightly and on demand, in a worker (never in a request)."""

from __future__ import annotations

import logging
import threading

from celery import shared_task
from django.conf import settings
from django.db import connection

from assist import services

logger = logging.getLogger(__name__)

_training = threading.Lock()


def _train(requested_by_id: int | None) -> None:
    from django.contrib.auth import get_user_model

    by = get_user_model().objects.filter(pk=requested_by_id).first() if requested_by_id else None
    if not _training.acquire(blocking=False):
        logger.info("assist: a training is already running in this process; skipped")
        return
    try:
        version = services.train_version(requested_by=by)
        logger.info("assist: trained version %s: %s", version.pk, version.decision)
    finally:
        _training.release()


def _train_in_thread(requested_by_id: int | None) -> None:
    try:
        _train(requested_by_id)
    except Exception:
        logger.exception("assist: training failed")
    finally:
        connection.close()  # this thread's own connection


@shared_task(name="assist.retrain", ignore_result=True)
def retrain(requested_by_id: int | None = None) -> None:
    """Train a new version (it becomes active only if better); nothing to do with too few
    closed items. In the embedded run the periodic jobs share one loop with routing: training
    goes to its own thread so routing never waits."""
    if not services.enough_history():
        logger.info("assist: too few closed items to train on; skipped")
        return
    if settings.ROUTING_MODE == "embedded":
        threading.Thread(
            target=_train_in_thread, args=(requested_by_id,), name="assist-training", daemon=True
        ).start()
        return
    _train(requested_by_id)


def request_training(requested_by_id: int | None) -> bool:
    """Start a training on demand, as the run mode does it: a task for the workers (celery),
    a thread beside the loop (embedded), nothing in ``manual`` (tests call the service).
    Returns whether one was started."""
    mode = settings.ROUTING_MODE
    if mode == "celery":
        retrain.delay(requested_by_id)
        return True
    if mode == "embedded":
        retrain(requested_by_id)
        return True
    return False
