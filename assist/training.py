"""Fitting and measuring: TF-IDF on word and character n-grams, one logistic regression per
target, evaluated on a time-ordered hold-out (the newest share of the items), against a
majority-class baseline and keyword rules.

Character n-grams inside word boundaries (``char_wb`` 2-4) make Japanese work without a
tokenizer. Logistic regression's own probabilities are the confidence; their calibration is
measured (expected calibration error) rather than assumed.

Pure computation: no database. ``assist.services.train_version`` reads the items and records the
version.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import FeatureUnion
from sklearn.preprocessing import normalize

from assist.features import Doc

HOLDOUT_SHARE = 0.2
MIN_DOCS = 30
MIN_PER_CLASS = 5  # a target is learned when at least two labels have this many examples
TARGETS = ("queue", "priority")
NEIGHBOURS = 5


class NotEnoughData(Exception):  # noqa: N818
    pass


def vectorizer() -> FeatureUnion:
    return FeatureUnion(
        [
            (
                "word",
                TfidfVectorizer(
                    analyzer="word",
                    ngram_range=(1, 2),
                    min_df=2,
                    max_features=40000,
                    sublinear_tf=True,
                    dtype=np.float32,
                ),
            ),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(2, 4),
                    min_df=2,
                    max_features=60000,
                    sublinear_tf=True,
                    dtype=np.float32,
                ),
            ),
        ]
    )


def classifier() -> LogisticRegression:
    # newton-cg: a few Hessian steps; L-BFGS took ten times as long on these sparse features.
    return LogisticRegression(C=4.0, solver="newton-cg", max_iter=200)


def split(docs: Sequence[Doc]) -> tuple[list[Doc], list[Doc]]:
    """Oldest (1 - HOLDOUT_SHARE) to train on, the newest to hold out (docs are oldest first)."""
    ordered = sorted(docs, key=lambda d: (d.created_at, d.item_id))
    cut = int(round(len(ordered) * (1 - HOLDOUT_SHARE)))
    return ordered[:cut], ordered[cut:]


def label(doc: Doc, target: str) -> str:
    return str(getattr(doc, target))


def learnable_targets(docs: Sequence[Doc]) -> list[str]:
    found = []
    for target in TARGETS:
        counts = Counter(label(d, target) for d in docs)
        if sum(1 for n in counts.values() if n >= MIN_PER_CLASS) >= 2:
            found.append(target)
    return found


# --- Keyword rules: the baseline a learned model must beat ---------------------------------


def keyword_rules(labels: Sequence[str], extra: Mapping[str, Sequence[str]] | None = None):
    """Rules derived from queue names: each queue's words of three letters or more (and any
    keywords the admin adds per queue) are its keywords; an item goes to the queue with the
    most keyword hits in its text, else to ``None`` (the rules do not know)."""
    keywords: dict[str, set[str]] = {}
    for name in labels:
        words = {w for w in re.findall(r"\w+", name.lower()) if len(w) >= 3}
        words |= {k.lower() for k in (extra or {}).get(name, ())}
        keywords[name] = words

    def classify(text: str) -> str | None:
        lowered = text.lower()
        hits = {name: sum(1 for k in words if k in lowered) for name, words in keywords.items()}
        best = max(hits.items(), key=lambda kv: (kv[1], kv[0]), default=(None, 0))
        return best[0] if best[1] > 0 else None

    return classify


# --- Measures -------------------------------------------------------------------------------


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10):
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


def _scores(truth: Sequence[str], guess: Sequence[str]) -> dict[str, float]:
    return {
        "accuracy": round(float(accuracy_score(truth, guess)), 4),
        "macro_f1": round(float(f1_score(truth, guess, average="macro", zero_division=0)), 4),
    }


@dataclass
class Fit:
    fitted: dict[str, Any]
    metrics: dict[str, Any]
    train: list[Doc]
    holdout: list[Doc]
    targets: list[str] = field(default_factory=list)


def fit(
    docs: Sequence[Doc],
    *,
    threshold: float,
    rule_keywords: Mapping[str, Sequence[str]] | None = None,
) -> Fit:
    """Fit on the older items, measure on the newest. Raises ``NotEnoughData``."""
    if len(docs) < MIN_DOCS:
        raise NotEnoughData(f"{len(docs)} closed items; at least {MIN_DOCS} are needed.")
    train, holdout = split(docs)
    targets = learnable_targets(train)
    if "queue" not in targets:
        raise NotEnoughData("The closed items do not cover two queues with enough examples.")
    vec = vectorizer()
    x_train = vec.fit_transform([d.text for d in train])
    x_hold = vec.transform([d.text for d in holdout])
    models: dict[str, LogisticRegression] = {}
    metrics: dict[str, Any] = {"threshold": threshold, "targets": {}}
    for target in targets:
        y_train = [label(d, target) for d in train]
        model = classifier().fit(x_train, y_train)
        models[target] = model
        metrics["targets"][target] = measure(
            model,
            x_hold,
            holdout,
            target,
            threshold=threshold,
            majority=Counter(y_train).most_common(1)[0][0],
            rules=keyword_rules(sorted(set(y_train)), rule_keywords) if target == "queue" else None,
        )
    metrics["neighbours"] = neighbour_usefulness(x_train, train, x_hold, holdout)
    fitted = {
        "vectorizer": vec,
        "models": models,
        # Rows of unit length: a row's dot product with a unit query is their cosine similarity
        # (what NearestNeighbors(metric="cosine", algorithm="brute") computes, in one product).
        "index": normalize(x_train).tocsr(),
        "index_item_ids": [d.item_id for d in train],
        "feature_names": vec.get_feature_names_out(),
    }
    return Fit(fitted=fitted, metrics=metrics, train=train, holdout=holdout, targets=targets)


def measure(
    model: LogisticRegression,
    x_hold: Any,
    holdout: Sequence[Doc],
    target: str,
    *,
    threshold: float,
    majority: str | None = None,
    rules: Any = None,
) -> dict[str, Any]:
    truth = [label(d, target) for d in holdout]
    proba = model.predict_proba(x_hold)
    best = proba.argmax(axis=1)
    guess = [str(model.classes_[i]) for i in best]
    confidence = proba.max(axis=1)
    correct = np.array([g == t for g, t in zip(guess, truth, strict=True)])
    covered = confidence >= threshold
    result: dict[str, Any] = {
        "model": _scores(truth, guess),
        "ece": round(expected_calibration_error(confidence, correct), 4),
        "coverage_at_threshold": round(float(covered.mean()), 4),
        "accuracy_when_covered": round(float(correct[covered].mean()), 4)
        if covered.any()
        else None,
        "classes": len(model.classes_),
    }
    if majority is not None:
        result["majority"] = _scores(truth, [majority] * len(truth))
        result["majority_label"] = majority
    if rules is not None:
        said = [rules(d.text) for d in holdout]
        result["rules"] = _scores(truth, [s or majority or "" for s in said])
        result["rules_coverage"] = round(sum(1 for s in said if s) / max(len(said), 1), 4)
    return result


def neighbour_usefulness(
    x_train: Any, train: Sequence[Doc], x_hold: Any, holdout: Sequence[Doc]
) -> dict[str, Any]:
    """How often the most similar older resolved item shares the held-out item's disposition
    (over items that have one) and queue."""
    if not holdout:
        return {}
    index = NearestNeighbors(n_neighbors=1, metric="cosine", algorithm="brute").fit(x_train)
    _, nearest = index.kneighbors(x_hold)
    pairs = [(d, train[int(row[0])]) for d, row in zip(holdout, nearest, strict=True)]
    with_disposition = [(d, n) for d, n in pairs if d.disposition]
    return {
        "same_queue": round(sum(d.queue == n.queue for d, n in pairs) / len(pairs), 4),
        "same_disposition": (
            round(
                sum(d.disposition == n.disposition for d, n in with_disposition)
                / len(with_disposition),
                4,
            )
            if with_disposition
            else None
        ),
        "items_with_disposition": len(with_disposition),
    }
