"""Customer lookup benchmark: the webhook's find-or-create customer with a million customers.

Builds, in a fresh PostgreSQL test database, ``--customers`` customers (1,000,000 by default)
with INSERT ... SELECT generate_series (seconds, not hours): each has an SMS phone number
(E.164, match key ``tel:``), every second one the same number on WhatsApp, every fourth an
e-mail address. Then times ``messaging.identity.identify_or_create_customer`` (what every
inbound SMS, WhatsApp, Messenger and web-chat message calls first):

- known: an address seen before, spelled another way ("+1 (201) 200-0042"), at random;
- linked: a WhatsApp id whose number is known by SMS only (joins that customer: one insert);
- new: a number nobody has (a new customer and identity).

Reports the median and 95th percentile of each over ``--runs`` calls, the SQL queries per call,
and the plan of the lookup with its execution time in PostgreSQL (both indexes, no scan of the
table): the rest of a call's time is Python (parsing the number) and the round trip.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/omnirouter \\
        .venv/bin/python bench/identity_lookup.py [--customers 1000000] [--runs 2000]

The database named in DATABASE_URL is not touched: Django's test database (``test_<name>``) is
created, migrated, used and dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnirouter.settings")
os.environ.setdefault("ROUTING_MODE", "manual")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from messaging.identity import identify_or_create_customer, normalize  # noqa: E402
from messaging.models import CustomerIdentity  # noqa: E402

INSERT_IDENTITY = (
    "INSERT INTO messaging_customeridentity (customer_id, kind, value, match_key, created_at)"
)
# Customer g has the number +1 201 200 0000 + g (valid US numbers for g < 1,000,000).
BASE = 2012000000


def number(g: int) -> str:
    return f"+1{BASE + g}"


def build(customers: int) -> float:
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO messaging_customer (display_name, created_at) "
            "SELECT 'Customer ' || g, now() FROM generate_series(1, %s) g",
            [customers],
        )
        cur.execute("SELECT min(id) FROM messaging_customer")
        first = cur.fetchone()[0]
        offset = first - 1
        cur.execute(
            INSERT_IDENTITY
            + " SELECT id, 'phone', '+1' || (%s + id - %s), 'tel:+1' || (%s + id - %s), now()"
            " FROM messaging_customer",
            [BASE, offset, BASE, offset],
        )
        cur.execute(
            INSERT_IDENTITY
            + " SELECT id, 'whatsapp', '1' || (%s + id - %s), 'tel:+1' || (%s + id - %s), now()"
            " FROM messaging_customer WHERE (id - %s) %% 2 = 0",
            [BASE, offset, BASE, offset, offset],
        )
        cur.execute(
            INSERT_IDENTITY + " SELECT id, 'email', 'customer' || (id - %s) || '@example.com',"
            " 'mailto:customer' || (id - %s) || '@example.com', now()"
            " FROM messaging_customer WHERE (id - %s) %% 4 = 0",
            [offset, offset, offset],
        )
        cur.execute("ANALYZE messaging_customer")
        cur.execute("ANALYZE messaging_customeridentity")
    return time.perf_counter() - started


def measure(call: Callable[[int], Any], picks: list[int]) -> dict[str, Any]:
    timings, queries = [], set()
    for g in picks:
        connection.queries_log.clear()  # the log keeps 9,000 queries: count each call afresh
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            with transaction.atomic():
                call(g)
            timings.append((time.perf_counter() - started) * 1000)
        queries.add(len(captured.captured_queries) - 2)  # without the SAVEPOINT/RELEASE pair
    timings.sort()
    return {
        "runs": len(timings),
        "median_ms": round(statistics.median(timings), 3),
        "p95_ms": round(timings[int(len(timings) * 0.95) - 1], 3),
        "queries_per_call": sorted(queries),
    }


def pretty(n: int) -> str:
    # "+1 (201) 200-0042": how a carrier or a person may write it
    digits = number(n)[2:]
    return f"+1 ({digits[:3]}) {digits[3:6]}-{digits[6:]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        built = build(args.customers)
        total = CustomerIdentity.objects.count()
        known = [rng.randrange(1, args.customers + 1) for _ in range(args.runs)]
        # odd customers have no WhatsApp identity: their WhatsApp id links by match key
        linked = rng.sample(range(1, args.customers + 1, 2), min(args.runs, args.customers // 2))
        new = [args.customers + 1 + n for n in range(args.runs)]
        address = normalize("phone", pretty(known[0]))
        with connection.cursor() as cur:
            cur.execute(
                "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM messaging_customeridentity"
                " WHERE (kind = %s AND value = %s) OR match_key = %s",
                [address.kind, address.value, address.match_key],
            )
            plan = [row[0] for row in cur.fetchall()]
        results = {
            "customers": args.customers,
            "identities": total,
            "build_seconds": round(built, 1),
            "known": measure(
                lambda g: identify_or_create_customer(kind="phone", value=pretty(g)), known
            ),
            "linked": measure(
                lambda g: identify_or_create_customer(kind="whatsapp", value=number(g)[1:]),
                linked,
            ),
            "new": measure(
                lambda g: identify_or_create_customer(kind="phone", value=pretty(g)), new
            ),
            "plan": plan,
        }
        print(json.dumps(results, indent=2))
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
