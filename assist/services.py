"""Assistance writes: training a version (and activating it only if it beats the active one),
activating and rolling back by hand, predictions shown, agents' feedback, exclusions.

Training reads closed items with plain queries (no locks on routing's rows) and fits outside any
transaction; only the resulting version row is written, in one short transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from sklearn.metrics import f1_score

from assist import blob, predict, selectors, training
from assist.models import (
    ExcludedCustomer,
    Feedback,
    FeedbackKind,
    ModelVersion,
    Prediction,
    VersionStatus,
)
from omnirouter.errors import DomainError, NotFound
from routing.models import ActionLog, WorkItem, WorkItemStatus

logger = logging.getLogger(__name__)


def _window(now: datetime) -> datetime | None:
    days = settings.ASSIST_TRAINING_WINDOW_DAYS
    return now - timedelta(days=days) if days else None


def _active_on(holdout: list[Any], fitted_new: dict[str, Any]) -> float | None:
    """The active version's queue macro-F1 on the new hold-out, or None (none, or unreadable)."""
    active = ModelVersion.objects.filter(is_active=True).first()
    if active is None or not holdout:
        return None
    try:
        fitted = blob.load(active.blob, active.blob_hmac)
    except blob.BlobRefused as exc:
        logger.warning("assist: active version %s unreadable: %s", active.pk, exc)
        return None
    model = fitted["models"].get("queue")
    if model is None:
        return None
    x_hold = fitted["vectorizer"].transform([d.text for d in holdout])
    guess = [str(g) for g in model.predict(x_hold)]
    truth = [d.queue for d in holdout]
    return round(float(f1_score(truth, guess, average="macro", zero_division=0)), 4)


def enough_history() -> bool:
    """Whether there are enough closed items for a training to be worth starting."""
    closed = WorkItem.objects.filter(status=WorkItemStatus.CLOSED)
    return closed[: training.MIN_DOCS].count() >= training.MIN_DOCS


def train_version(*, now: datetime | None = None, requested_by: Any = None) -> ModelVersion:
    """Fit a new version on the closed items of the training window, measure it on the newest
    20 %, and record it. It becomes active only if its queue macro-F1 on that hold-out beats the
    active version's on the same items (recorded either way, with the decision). Too little
    data records a failed version with the reason."""
    now = now or timezone.now()
    since = _window(now)
    docs = selectors.training_docs(since=since, until=now, limit=settings.ASSIST_TRAINING_MAX_ITEMS)
    threshold = float(selectors.configuration().confidence_threshold)
    version = ModelVersion(created_at=now, window_start=since, window_end=now)
    try:
        result = training.fit(
            docs, threshold=threshold, rule_keywords=settings.ASSIST_RULE_KEYWORDS
        )
    except training.NotEnoughData as exc:
        version.status = VersionStatus.FAILED
        version.decision = str(exc)
        version.save()
        return version
    version.targets = result.targets
    version.train_size, version.holdout_size = len(result.train), len(result.holdout)
    if result.train:
        version.window_start = result.train[0].created_at
    version.metrics = result.metrics
    version.blob, version.blob_hmac = blob.dump(result.fitted)
    version.blob_bytes = len(version.blob)
    new_f1 = result.metrics["targets"]["queue"]["model"]["macro_f1"]
    old_f1 = _active_on(result.holdout, result.fitted)
    version.metrics["active_version_macro_f1"] = old_f1
    better = old_f1 is None or new_f1 > old_f1
    with transaction.atomic():
        if better:
            version.decision = _(
                "Activated: queue macro-F1 %(new)s on the hold-out, active version %(old)s."
            ) % {"new": new_f1, "old": old_f1 if old_f1 is not None else "-"}
            version.save()
            _activate(version, by=requested_by, now=now, verb="assist_activate_trained")
        else:
            version.status = VersionStatus.CANDIDATE
            version.decision = _(
                "Kept the active version: queue macro-F1 %(new)s on the hold-out, active "
                "version %(old)s on the same items."
            ) % {"new": new_f1, "old": old_f1}
            version.save()
    return version


def _activate(version: ModelVersion, *, by: Any, now: datetime, verb: str) -> None:
    previous = list(
        ModelVersion.objects.select_for_update().filter(is_active=True).exclude(pk=version.pk)
    )
    # The partial unique index allows one active row: retire the old one first.
    ModelVersion.objects.filter(pk__in=[p.pk for p in previous]).update(
        is_active=False, status=VersionStatus.RETIRED
    )
    ModelVersion.objects.filter(pk=version.pk).update(
        is_active=True, status=VersionStatus.ACTIVE, activated_at=now, activated_by=by
    )
    version.is_active, version.status = True, VersionStatus.ACTIVE
    version.activated_at, version.activated_by = now, by
    ActionLog.objects.create(
        at=now,
        actor=by,
        verb=verb,
        detail={"version": version.pk, "previous": [p.pk for p in previous]},
    )


def activate_version(*, version_id: int, by: Any, now: datetime | None = None) -> ModelVersion:
    """Make a stored version the active one by hand (an admin's choice, logged with who).
    Refused for a version without a readable model."""
    now = now or timezone.now()
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().filter(pk=version_id).first()
        if version is None:
            raise NotFound(_("No such model version."))
        try:
            blob.load(version.blob, version.blob_hmac)
        except blob.BlobRefused as exc:
            raise DomainError(
                _("This version cannot be activated: %(why)s") % {"why": exc}, "unreadable"
            ) from None
        _activate(version, by=by, now=now, verb="assist_activate")
    return version


def roll_back(*, by: Any, now: datetime | None = None) -> ModelVersion:
    """Activate the version that was active before the current one (logged with who)."""
    earlier = (
        ModelVersion.objects.filter(status=VersionStatus.RETIRED, activated_at__isnull=False)
        .order_by("-activated_at", "-id")
        .first()
    )
    if earlier is None:
        raise DomainError(_("There is no earlier active version to roll back to."), "none")
    return activate_version(version_id=earlier.pk, by=by, now=now)


def record_predictions(*, item: WorkItem, now: datetime | None = None) -> dict[str, Any]:
    """The active version's predictions for an item, stored once per (item, version, target)
    so feedback can refer to them. Unavailable: nothing is written."""
    now = now or timezone.now()
    answer = predict.predict(item)
    if not answer["available"]:
        return answer
    stored = {
        p.target: p for p in Prediction.objects.filter(item=item, version_id=answer["version"])
    }
    for target, guess in answer["predictions"].items():
        row = stored.get(target)
        if row is None:
            row = Prediction.objects.create(
                item=item,
                version_id=answer["version"],
                target=target,
                label=guess["label"],
                confidence=guess["confidence"],
                top_terms=guess["top_terms"],
                created_at=now,
            )
        guess["id"] = row.pk
    return answer


def record_feedback(
    *,
    item: WorkItem,
    agent: Any,
    field: str,
    kind: str,
    suggested_value: str = "",
    corrected_value: str = "",
    prediction_id: int | None = None,
    suggested_item_id: int | None = None,
    now: datetime | None = None,
) -> Feedback:
    """Store an agent's answer to a prediction, a prefilled field or a suggested past item
    (a correction is a training signal: it carries the right value)."""
    if kind not in FeedbackKind.values:
        raise DomainError(_("Unknown feedback."), "invalid")
    if kind == FeedbackKind.CORRECTED and not corrected_value.strip():
        raise DomainError(_("A correction needs the right value."), "invalid")
    if (
        prediction_id is not None
        and not Prediction.objects.filter(pk=prediction_id, item=item).exists()
    ):
        raise DomainError(_("That prediction is not about this item."), "invalid")
    if suggested_item_id is not None and not WorkItem.objects.filter(pk=suggested_item_id).exists():
        raise DomainError(_("No such suggested item."), "invalid")
    return Feedback.objects.create(
        item=item,
        prediction_id=prediction_id,
        suggested_item_id=suggested_item_id,
        agent=agent,
        field=field[:40],
        kind=kind,
        suggested_value=suggested_value[:200],
        corrected_value=corrected_value.strip()[:200],
        at=now or timezone.now(),
    )


def exclude_customer(
    *, customer_id: int, by: Any = None, now: datetime | None = None
) -> ExcludedCustomer:
    """Leave a customer's items out of every training from now on (idempotent), and out of
    suggestions at once. The active version's weights keep what they learned until the next
    training (nightly, or on demand)."""
    excluded, _created = ExcludedCustomer.objects.get_or_create(
        customer_id=customer_id,
        defaults={"excluded_at": now or timezone.now(), "excluded_by": by},
    )
    return excluded
