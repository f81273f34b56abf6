"""Predictions from the active version: loaded once per process, reloaded when another version
becomes active; a version that fails to load is remembered as unavailable (with the reason) and
never half-used. Nothing here writes.

``classify_for_rules`` is the entry point for routing's classification rules: a queue guess at or
above the admin's confidence threshold, or ``None`` so the rules decide (rules are the fallback).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn
from django.utils.translation import gettext as _
from scipy import sparse
from sklearn.preprocessing import normalize

from assist import blob, prefill, selectors
from assist.features import disposition_of
from assist.models import ExcludedCustomer, ModelVersion
from routing.models import AgentWork, AgentWorkState, WorkItem

TOP_TERMS = 5


@dataclass(frozen=True)
class Predicted:
    """One target's guess: the label, the model's probability, the item's terms that weighed
    most for it (term, weight = coefficient x tf-idf), and the version that made it."""

    target: str
    label: str
    confidence: float
    top_terms: list[tuple[str, float]]
    version_id: int


@dataclass
class _Loaded:
    key: tuple[int, str] | None
    fitted: dict[str, Any] | None
    reason: str

    @property
    def version_id(self) -> int | None:
        return self.key[0] if self.key else None


_lock = threading.Lock()
_cache = _Loaded(key=None, fitted=None, reason="")


def _current() -> _Loaded:
    """The active version's fitted model, loaded once per process and again when the active
    version (or its stored model) changes; one small query per call to know."""
    global _cache
    key = selectors.active_version_key()
    if key is None:
        return _Loaded(None, None, str(_("No model has been trained and activated yet.")))
    if _cache.key == key:
        return _cache
    with _lock:
        if _cache.key != key:
            version = ModelVersion.objects.only("blob", "blob_hmac").get(pk=key[0])
            try:
                _cache = _Loaded(key, blob.load(version.blob, version.blob_hmac), "")
            except blob.BlobRefused as exc:
                _cache = _Loaded(key, None, str(exc))
        return _cache


def _explain(fitted: dict[str, Any], row: Any, model: Any, class_index: int) -> list:
    names = fitted["feature_names"]
    coef = model.coef_
    # Binary logistic regression keeps one row of weights, for the second class.
    weights = coef[0] if coef.shape[0] == 1 else coef[class_index]
    if coef.shape[0] == 1 and class_index == 0:
        weights = -weights
    indices = row.indices
    contributions = row.data * weights[indices]
    order = np.argsort(-contributions)[:TOP_TERMS]
    terms = []
    for i in order:
        if contributions[i] <= 0:
            break
        name = str(names[indices[i]]).split("__", 1)[-1]
        terms.append((name, round(float(contributions[i]), 4)))
    return terms


def _vectorize(fitted: dict[str, Any], text: str) -> Any:
    """The TF-IDF row of one text: each vectorizer of the union in turn, side by side (what
    ``FeatureUnion.transform`` does, without its parallel machinery: a tenth of the time for
    one text)."""
    # Our own fitted vectorizers on one string: the library's input checks only cost time here.
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        parts = [vec.transform([text]) for _, vec in fitted["vectorizer"].transformer_list]
    row = sparse.hstack(parts, format="csr")
    row.sort_indices()
    return row


def _probabilities(model: Any, row: Any) -> np.ndarray:
    """``model.predict_proba(row)[0]`` for a fitted logistic regression, computed directly:
    softmax of the class scores (the logistic of the score for two classes)."""
    scores = np.asarray(row @ model.coef_.T).ravel() + model.intercept_
    if scores.shape[0] == 1:
        positive = 1.0 / (1.0 + np.exp(-scores[0]))
        return np.array([1.0 - positive, positive])
    scores = scores - scores.max()
    exp = np.exp(scores)
    return exp / exp.sum()


def predict_fields(fields: dict[str, Any], *, config: Any = None) -> dict[str, Any]:
    """Predictions for an item described by ``fields`` (subject, messages, channel, payload):
    ``{"available": True, "version", "predictions": {target: {label, confidence, top_terms}}}``
    or ``{"available": False, "reason"}``."""
    loaded = _current()
    if loaded.fitted is None:
        return {"available": False, "reason": loaded.reason}
    fitted = loaded.fitted
    row = _vectorize(fitted, selectors.fields_text(fields, config=config))
    predictions = {}
    for target, model in fitted["models"].items():
        proba = _probabilities(model, row)
        best = int(proba.argmax())
        predictions[target] = {
            "label": str(model.classes_[best]),
            "confidence": round(float(proba[best]), 4),
            "top_terms": _explain(fitted, row, model, best),
        }
    return {"available": True, "version": loaded.version_id, "predictions": predictions}


def predict(item: WorkItem) -> dict[str, Any]:
    """Predictions for a work item (see ``predict_fields``)."""
    return predict_fields(selectors.item_fields(item))


def classify_for_rules(fields: dict[str, Any]) -> Predicted | None:
    """The queue the model would send an item described by ``fields`` to, when its confidence
    reaches the admin's threshold; ``None`` otherwise (no model, unreadable model, unsure):
    then the rules decide."""
    config = selectors.configuration()
    answer = predict_fields(fields, config=config)
    if not answer["available"] or "queue" not in answer["predictions"]:
        return None
    guess = answer["predictions"]["queue"]
    if guess["confidence"] < float(config.confidence_threshold):
        return None
    return Predicted(
        target="queue",
        label=guess["label"],
        confidence=guess["confidence"],
        top_terms=[tuple(t) for t in guess["top_terms"]],
        version_id=answer["version"],
    )


def suggestions(item: WorkItem, *, k: int = 3) -> dict[str, Any]:
    """The ``k`` most similar resolved items (cosine on the same TF-IDF features) with their
    close notes (e-mail addresses, phone numbers and order numbers masked: they are other
    customers') and dispositions, without the item itself and without items of customers
    excluded from learning."""
    loaded = _current()
    if loaded.fitted is None:
        return {"available": False, "reason": loaded.reason}
    fitted = loaded.fitted
    row = _vectorize(fitted, selectors.fields_text(selectors.item_fields(item)))
    ids = fitted["index_item_ids"]
    scores = np.asarray((fitted["index"] @ normalize(row).T).todense()).ravel()
    wanted = min(len(ids), k * 3 + 1)
    nearest = np.argpartition(-scores, wanted - 1)[:wanted]
    nearest = nearest[np.argsort(-scores[nearest], kind="stable")]
    ranked = [(ids[int(p)], round(float(scores[p]), 4)) for p in nearest if ids[int(p)] != item.pk]
    excluded = set(ExcludedCustomer.objects.values_list("customer_id", flat=True))
    rows = {
        r.pk: r
        for r in WorkItem.objects.filter(pk__in=[i for i, _ in ranked])
        .select_related("queue", "conversation", "case")
        .only("id", "subject", "queue__name", "conversation__customer_id", "case__customer_id")
    }
    notes = dict(
        AgentWork.objects.filter(item_id__in=list(rows), state=AgentWorkState.CLOSED).values_list(
            "item_id", "end_note"
        )
    )
    out = []
    for item_id, similarity in ranked:
        found = rows.get(item_id)
        if found is None:
            continue
        record = getattr(found, "conversation", None) or getattr(found, "case", None)
        if record is not None and record.customer_id in excluded:
            continue
        note = notes.get(item_id, "")
        out.append(
            {
                "item_id": item_id,
                "subject": prefill.redact(found.subject),
                "queue": found.queue.name,
                "disposition": disposition_of(note),
                "resolution": prefill.redact(note),
                "similarity": similarity,
            }
        )
        if len(out) == k:
            break
    return {"available": True, "version": loaded.version_id, "suggestions": out}


def guess_for_rules(item: WorkItem) -> dict[str, Any] | None:
    """What classification rules read as ``model.*`` for ``item`` (registered with routing in
    ``AssistConfig.ready``): the queue the model is sure enough of, its confidence, the words
    that weighed most and the version; ``None`` when it is unsure or has no usable model."""
    guess = classify_for_rules(selectors.item_fields(item))
    if guess is None:
        return None
    return {
        "queue": guess.label,
        "confidence": round(guess.confidence, 3),
        "terms": [term for term, _weight in guess.top_terms[:5]],
        "version": guess.version_id,
    }
