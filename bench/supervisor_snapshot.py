"""Supervisor snapshot benchmark: the cost of one dashboard snapshot on a big center.

Builds, in a fresh PostgreSQL test database: 20 queues, 1,000 agents (70 % online, each a member
of 3 queues, each online agent holding one accepted item and one pending offer), 100,000 waiting
items, and today's history: 50,000 items answered and closed (accept 0-120 s after entering the
queue, handled 1-15 min), 5,000 declined or timed-out offers, 3,000 abandoned items. Optionally
older days of history (``--older-days``) to show that yesterday's rows do not cost today.

Then times ``supervisor.selectors.snapshot`` (median of ``--runs`` after one warm-up) for an admin
(every queue and agent) and for a supervisor of 2 queues, and counts its SQL queries.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/omnirouter \\
        .venv/bin/python bench/supervisor_snapshot.py [--older-days 3] [--without-indexes]

The database named in DATABASE_URL is not touched: Django's test database (``test_<name>``) is
created, migrated, used and dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnirouter.settings")
os.environ.setdefault("ROUTING_MODE", "manual")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from omnirouter import roles  # noqa: E402
from presence.models import Agent, PresenceConfiguration, PresenceStatus  # noqa: E402
from routing.models import Queue, QueueMembership, RoutingConfiguration, ServiceChannel  # noqa: E402
from supervisor.selectors import day_start, snapshot  # noqa: E402

SUPERVISOR_INDEXES = [
    "supervisor_agentwork_opened_at",
    "supervisor_agentwork_ended_at",
    "supervisor_workitem_canceled_at",
    "supervisor_workitem_waiting_queue",
    "supervisor_agentwork_agent_ended",
]


def build_center(args: argparse.Namespace, now) -> dict[str, Any]:
    channel = ServiceChannel.objects.create(key="chat", label="Chat")
    configs = [
        RoutingConfiguration.objects.create(
            name=f"config {n}", routing_priority=1 + n % 4, service_level_target_seconds=30 + 15 * n
        )
        for n in range(5)
    ]
    queues = Queue.objects.bulk_create(
        Queue(name=f"queue {n:02}", routing_config=configs[n % len(configs)])
        for n in range(args.queues)
    )
    available = PresenceStatus.objects.create(name="Available", is_online=True)
    available.channels.add(channel)
    presence_config = PresenceConfiguration.objects.create(
        name="agents", capacity=5, console_required=False
    )
    user_model = get_user_model()
    unusable = make_password(None)  # nobody logs in as these agents
    users = user_model.objects.bulk_create(
        user_model(
            username=f"agent{n:04}", first_name="Agent", last_name=f"{n:04}", password=unusable
        )
        for n in range(args.agents)
    )
    online_count = int(args.agents * 0.7)
    agents = Agent.objects.bulk_create(
        Agent(
            user=user,
            presence_config=presence_config,
            status=available if n < online_count else None,
            status_changed_at=now - timedelta(minutes=n % 240),
            configured_capacity=5,
            capacity=5,
            used_capacity=2 if n < online_count else 0,
            open_count=2 if n < online_count else 0,
        )
        for n, user in enumerate(users)
    )
    QueueMembership.objects.bulk_create(
        QueueMembership(agent=agent, queue=queues[(n + k * 7) % len(queues)])
        for n, agent in enumerate(agents)
        for k in range(3)
    )
    admin = user_model.objects.create_superuser("bench-admin", password=None)
    supervisor = user_model.objects.create_user("bench-supervisor", password=None)
    supervisor.groups.add(Group.objects.create(name=roles.SUPERVISOR))
    for queue in queues[:2]:
        queue.supervisors.add(supervisor)

    params = {
        "now": now,
        "day": day_start(now),
        "channel": channel.pk,
        "queues": [q.pk for q in queues],
        "agents": [a.pk for a in agents],
        "online": [a.pk for a in agents[:online_count]],
    }
    with connection.cursor() as cur:
        cur.execute("SELECT setseed(0.42)")
        _waiting_items(cur, params, args.items)
        _day_of_history(cur, params, args.closed, params["day"], now)
        for day in range(1, args.older_days + 1):
            start = params["day"] - timedelta(days=day)
            _day_of_history(cur, params, args.closed, start, start + timedelta(days=1))
        _live_work(cur, params)
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")  # what autovacuum does for a real database over time
    return {"admin": admin, "supervisor": supervisor}


def _waiting_items(cur, p: dict[str, Any], count: int) -> None:
    cur.execute(
        """
        INSERT INTO routing_workitem (status, routing_priority, priority, size_units, subject,
            payload, record_id, created_at, enqueued_at, channel_id, queue_id)
        SELECT 'waiting', 1 + g %% 4, 1 + g %% 10, 1, 'waiting ' || g, '{}', '', t, t,
               %(channel)s, (%(queues)s::bigint[])[1 + g %% cardinality(%(queues)s::bigint[])]
        FROM generate_series(1, %(count)s) g,
             LATERAL (SELECT %(now)s - random() * interval '2 hours' + g * interval '0' AS t) x
        """,
        {**p, "count": count},
    )


def _day_of_history(cur, p: dict[str, Any], count: int, start, end) -> None:
    """``count`` items answered and closed between ``start`` and ``end``, plus a tenth as many
    declined or timed-out offers and 6 % as many abandoned items."""
    cur.execute("DROP TABLE IF EXISTS bench_hist")
    cur.execute(
        """
        CREATE TEMP TABLE bench_hist AS
        SELECT nextval(pg_get_serial_sequence('routing_workitem', 'id')) AS item_id,
               (%(queues)s::bigint[])[1 + g %% cardinality(%(queues)s::bigint[])] AS queue_id,
               (%(agents)s::bigint[])[1 + (g * 7) %% cardinality(%(agents)s::bigint[])] AS agent_id,
               e, e + random() * interval '120 seconds' AS o, g
        FROM generate_series(1, %(count)s) g,
             LATERAL (SELECT %(start)s::timestamptz
                      + random() * (%(end)s::timestamptz - %(start)s::timestamptz
                                    - interval '20 minutes') + g * interval '0' AS e) x
        """,
        {**p, "count": count, "start": start, "end": end},
    )
    cur.execute("ALTER TABLE bench_hist ADD COLUMN c timestamptz")
    cur.execute("UPDATE bench_hist SET c = o + (60 + random() * 840) * interval '1 second'")
    cur.execute(
        """
        INSERT INTO routing_workitem (id, status, routing_priority, priority, size_units, subject,
            payload, record_id, created_at, enqueued_at, ended_at, channel_id, queue_id)
        SELECT item_id, 'closed', 1, 5, 1, 'closed ' || g, '{}', '', e, e, c, %(channel)s,
               queue_id
        FROM bench_hist
        """,
        p,
    )
    cur.execute(
        """
        INSERT INTO routing_agentwork (state, units, pushed_at, opened_at, ended_at, enqueued_at,
            decline_reason, end_note, routing_reason, auto_accepted, agent_id, queue_id,
            channel_id, item_id)
        SELECT 'closed', 1, o - interval '5 seconds', o, c, e, '', '',
               '{"text": "Least active: 0 open items, best of 3 eligible agents."}', false,
               agent_id, queue_id, %(channel)s, item_id
        FROM bench_hist
        """,
        p,
    )
    cur.execute(
        """
        INSERT INTO routing_agentwork (state, units, pushed_at, expires_at, ended_at, enqueued_at,
            decline_reason, end_note, routing_reason, auto_accepted, agent_id, queue_id,
            channel_id, item_id)
        SELECT CASE WHEN g %% 2 = 0 THEN 'declined' ELSE 'timed_out' END, 1, e,
               e + interval '30 seconds', e + interval '10 seconds', e, '', '', '{}', false,
               (%(agents)s::bigint[])[1 + (g * 13) %% cardinality(%(agents)s::bigint[])],
               queue_id, %(channel)s, item_id
        FROM bench_hist WHERE g %% 10 = 0
        """,
        p,
    )
    cur.execute(
        """
        INSERT INTO routing_workitem (status, routing_priority, priority, size_units, subject,
            payload, record_id, created_at, enqueued_at, ended_at, channel_id, queue_id)
        SELECT 'canceled', 1, 5, 1, 'abandoned ' || g, '{}', '', e, e,
               e + random() * interval '3 minutes', %(channel)s, queue_id
        FROM bench_hist WHERE g %% 50 < 3
        """,
        p,
    )


def _live_work(cur, p: dict[str, Any]) -> None:
    """Each online agent holds one accepted item and one pending offer."""
    cur.execute("DROP TABLE IF EXISTS bench_live")
    cur.execute(
        """
        CREATE TEMP TABLE bench_live AS
        SELECT nextval(pg_get_serial_sequence('routing_workitem', 'id')) AS item_id,
               a.agent_id, k, m.queue_id,
               %(now)s - random() * interval '30 minutes' - interval '1 minute' AS e
        FROM unnest(%(online)s::bigint[]) AS a(agent_id)
        CROSS JOIN generate_series(0, 1) k
        CROSS JOIN LATERAL (SELECT queue_id FROM routing_queuemembership qm
                            WHERE qm.agent_id = a.agent_id ORDER BY queue_id LIMIT 1) m
        """,
        p,
    )
    cur.execute(
        """
        INSERT INTO routing_workitem (id, status, routing_priority, priority, size_units, subject,
            payload, record_id, created_at, enqueued_at, channel_id, queue_id)
        SELECT item_id, CASE WHEN k = 0 THEN 'assigned' ELSE 'offered' END, 1, 5, 1,
               'live ' || item_id, '{}', '', e, e, %(channel)s, queue_id
        FROM bench_live
        """,
        p,
    )
    cur.execute(
        """
        INSERT INTO routing_agentwork (state, units, pushed_at, expires_at, opened_at,
            enqueued_at, decline_reason, end_note, routing_reason, auto_accepted, agent_id,
            queue_id, channel_id, item_id)
        SELECT CASE WHEN k = 0 THEN 'opened' ELSE 'pushed' END, 1, e + interval '20 seconds',
               CASE WHEN k = 0 THEN NULL ELSE %(now)s + interval '30 seconds' END,
               CASE WHEN k = 0 THEN e + interval '25 seconds' END, e, '', '',
               '{"text": "Most available: 3 spare units, best of 12 eligible agents."}', false,
               agent_id, queue_id, %(channel)s, item_id
        FROM bench_live
        """,
        p,
    )


def pages_touched(sql_list: list[str]) -> int:
    """Buffer pages the queries touch (shared hit + read, from EXPLAIN ANALYZE BUFFERS): a
    measure of work that, unlike time, does not depend on what else the machine is doing."""
    total = 0
    with connection.cursor() as cur:
        for sql in sql_list:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql)
            plan = cur.fetchone()[0][0]["Plan"]
            total += plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
    return total


def measure(user, now, runs: int, detail: bool = False) -> dict[str, Any]:
    snapshot(user, now)  # warm-up: caches, plans
    times = []
    queries = 0
    size = 0
    for _ in range(runs):
        fresh = get_user_model().objects.get(pk=user.pk)  # no cached roles between runs
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            data = snapshot(fresh, now)
            times.append(time.perf_counter() - start)
        queries = len(captured.captured_queries)
        size = len(json.dumps(data))
    if detail:
        for q in sorted(captured.captured_queries, key=lambda q: -float(q["time"])):
            pages = pages_touched([q["sql"]])
            print(f"    {1000 * float(q['time']):7.1f} ms {pages:6} pages  {q['sql'][:110]}")
    return {
        "median_ms": round(1000 * statistics.median(times), 1),
        "pages": pages_touched([q["sql"] for q in captured.captured_queries]),
        "min_ms": round(1000 * min(times), 1),
        "max_ms": round(1000 * max(times), 1),
        "queries": queries,
        "json_kb": round(size / 1024),
        "queues": len(data["queues"]),
        "agents": len(data["agents"]),
        "waiting": data["totals"]["waiting"],
        "handled_today": data["totals"]["handled_today"],
        "work_total": data["work_total"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--queues", type=int, default=20)
    parser.add_argument("--items", type=int, default=100_000, help="waiting items")
    parser.add_argument("--closed", type=int, default=50_000, help="items closed per day")
    parser.add_argument("--older-days", type=int, default=0, help="days of history before today")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--detail", action="store_true", help="print each query's time")
    parser.add_argument("--keep", action="store_true", help="keep the test database afterwards")
    parser.add_argument(
        "--without-indexes", action="store_true", help="drop the supervisor's indexes first"
    )
    args = parser.parse_args()
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        print("Set DATABASE_URL to a PostgreSQL server (postgres://...).", file=sys.stderr)
        return 2

    settings.DEBUG = False
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        now = timezone.now()
        started = time.perf_counter()
        users = build_center(args, now)
        if args.without_indexes:
            with connection.cursor() as cur:
                for name in SUPERVISOR_INDEXES:
                    cur.execute(f"DROP INDEX IF EXISTS {name}")
        print(
            f"center built in {time.perf_counter() - started:.1f} s: {args.queues} queues, "
            f"{args.agents} agents, {args.items} waiting, {args.closed} closed per day, "
            f"{args.older_days} older day(s) of history"
            + (", WITHOUT the supervisor indexes" if args.without_indexes else "")
        )
        for role, user in users.items():
            result = measure(user, now, args.runs, args.detail)
            print(f"{role:>10}: " + ", ".join(f"{k}={v}" for k, v in result.items()))
    finally:
        if args.keep:
            print(f"kept database {connection.settings_dict['NAME']}")
        else:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
