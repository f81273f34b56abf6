"""Fit on the older closed items and print how well it does on the newest (nothing is saved)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from assist import selectors, training


def _pair(scores: dict[str, float] | None) -> str:
    if not scores:
        return "-"
    return f"accuracy {scores['accuracy']:.3f}  macro-F1 {scores['macro_f1']:.3f}"


class Command(BaseCommand):
    help = (
        "Evaluate assistance on a time-ordered hold-out (the newest 20 % of closed items): the "
        "model vs a majority-class baseline and keyword rules, calibration, coverage, neighbours."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--threshold", type=float, default=None, help="Confidence threshold (default: admin's)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        threshold = options["threshold"]
        if threshold is None:
            threshold = float(selectors.configuration().confidence_threshold)
        now = timezone.now()
        days = settings.ASSIST_TRAINING_WINDOW_DAYS
        docs = selectors.training_docs(
            since=now - timedelta(days=days) if days else None,
            until=now,
            limit=settings.ASSIST_TRAINING_MAX_ITEMS,
        )
        started = time.monotonic()
        try:
            result = training.fit(
                docs, threshold=threshold, rule_keywords=settings.ASSIST_RULE_KEYWORDS
            )
        except training.NotEnoughData as exc:
            raise CommandError(str(exc)) from None
        seconds = time.monotonic() - started
        out = self.stdout.write
        out(
            f"Items: {len(docs)} closed; trained on the oldest {len(result.train)}, held out "
            f"the newest {len(result.holdout)} (fit in {seconds:.1f} s)."
        )
        for target, m in result.metrics["targets"].items():
            out(f"\n[{target}] {m['classes']} labels")
            out(f"  model:     {_pair(m['model'])}")
            out(f"  majority:  {_pair(m.get('majority'))}  (always {m.get('majority_label')})")
            if "rules" in m:
                out(
                    f"  rules:     {_pair(m['rules'])}  (keywords matched "
                    f"{m['rules_coverage']:.1%} of items; majority label otherwise)"
                )
            out(f"  expected calibration error: {m['ece']:.3f}")
            covered = m["accuracy_when_covered"]
            out(
                f"  coverage at confidence >= {threshold:.2f}: {m['coverage_at_threshold']:.1%}"
                + (f", accuracy there {covered:.3f}" if covered is not None else "")
            )
        n = result.metrics.get("neighbours") or {}
        if n:
            out("\n[nearest resolved item]")
            out(f"  same queue: {n['same_queue']:.1%}")
            if n.get("same_disposition") is not None:
                out(
                    f"  same disposition: {n['same_disposition']:.1%} "
                    f"(over {n['items_with_disposition']} held-out items with one)"
                )
