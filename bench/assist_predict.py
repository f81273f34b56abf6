"""Assistance prediction benchmark: the latency of one prediction from the active version.

Needs a database with a trained, active version (for example the embedded run's SQLite after
``manage.py assist_history --count 5000`` and a training):

    OMNIROUTER_VAR_DIR=/tmp/assist_var .venv/bin/python bench/assist_predict.py [--runs 1000]

Times, after one warm-up (the model's load, once per process):

- ``classify_for_rules(fields)``: what routing's rules would call at intake (the item's fields
  in hand: no read of the item), queue guess and explanation;
- ``predict(item)``: the same from a stored item (reads its first messages);
- ``suggestions(item)``: the 3 most similar resolved items (brute-force cosine over the index).

Prints p50 / p99 in milliseconds and the SQL queries of one call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnirouter.settings")
os.environ.setdefault("ROUTING_MODE", "manual")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from assist import predict  # noqa: E402
from assist.models import ModelVersion  # noqa: E402
from routing.models import WorkItem  # noqa: E402


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:.2f} ms  p99 {p99 * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    version = ModelVersion.objects.filter(is_active=True).first()
    if version is None:
        sys.exit("No active model version: generate history and train first.")
    items = list(WorkItem.objects.order_by("-id")[: args.runs])
    fields = [{"subject": i.subject, "channel": "chat", "payload": i.payload} for i in items]
    print(
        f"version {version.pk}: {version.train_size} training items, "
        f"model {version.blob_bytes / 1e6:.1f} MB"
    )
    started = time.perf_counter()
    predict.classify_for_rules(fields[0])
    print(f"first call (loads the model): {(time.perf_counter() - started) * 1000:.0f} ms")
    for name, call, inputs in (
        ("classify_for_rules(fields)", predict.classify_for_rules, fields),
        ("predict(item)", predict.predict, items),
        ("suggestions(item)", predict.suggestions, items),
    ):
        samples = []
        for value in inputs:
            started = time.perf_counter()
            call(value)
            samples.append(time.perf_counter() - started)
        with CaptureQueriesContext(connection) as queries:
            call(inputs[0])
        print(f"{name:<28} {_percentiles(samples)}  ({len(queries)} queries)")


if __name__ == "__main__":
    main()
