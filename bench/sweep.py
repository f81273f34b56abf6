"""The sweep's cost, and how late offers expire, on the production parts.

Run from the repository root:

    .venv/bin/python bench/sweep.py              # costs, then the expiry delay (about 2 minutes)
    .venv/bin/python bench/sweep.py --no-delay   # the costs only

Throw-away PostgreSQL and Redis as ``bench/run.py`` (or DATABASE_URL / REDIS_URL: an empty
database). The world is ``bench/world.py``'s, 1,000 agents. Figures only: nothing asserts.

Costs (in this process, ``ROUTING_MODE=manual``):

- ``expire_offers`` with 1, 50 and 1,000 offers due: time and SQL statements (BEGIN and COMMIT
  included), median of 5; each run routes the items first, then expires them.
- An idle sweep (``sweep()``: nothing due, 1,000 live offers held, nothing to route), median of
  20: what every second costs when nothing happens.
- A heartbeat as the console's socket makes it (``presence.consumers._touch``), on 1,000
  agents in turn, twice: the first round writes, the second comes within the write interval.
- The capacity check, every agent and (where the code has it) only agents whose work changed
  in the last 11 s.

Expiry delay (a Celery worker ``-Q routing,default --concurrency 2`` and Celery beat, the 1 s
sweep, as in docker-compose): every queue's push timeout set to 2 s, items arrive at 20/s
through ``enqueue_work`` for 30 s, nobody accepts, so every offer times out and its item is
offered to someone else. For each offer that timed out: the deadline to its ``ended_at`` (the
sweep's clock) and to the first time a poll of the database every 50 ms saw it ended.
"""

from __future__ import annotations

import argparse
import inspect
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import REPO_ROOT, Proc, ThrowAwayServers, say  # noqa: E402

AGENTS = 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-delay", action="store_true", help="skip the expiry-delay run")
    parser.add_argument("--seconds", type=float, default=30.0, help="expiry run: arrivals for")
    args = parser.parse_args()
    load_before = os.getloadavg()
    servers = ThrowAwayServers()
    say("starting PostgreSQL and Redis")
    servers.start()
    procs: list[Proc] = []
    try:
        world = setup(servers)
        figures = measure_costs(world)
        if not args.no_delay:
            figures["delay"] = measure_delay(servers, procs, args.seconds)
    finally:
        for proc in procs:
            proc.stop()
        servers.stop()
    report(figures, servers, load_before, os.getloadavg())
    return 0


def env(servers: ThrowAwayServers) -> dict[str, str]:
    values = dict(os.environ)
    values.update(
        DATABASE_URL=servers.database_url,
        REDIS_URL=servers.redis_url,
        DJANGO_SETTINGS_MODULE="omnirouter.settings",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_DEBUG="false",
        ROUTING_MODE="celery",
        PYTHONUNBUFFERED="1",
    )
    values.setdefault(
        "DJANGO_SECRET_KEY", "bench-only-secret-key-not-for-production-use-0123456789"
    )
    return values


def setup(servers: ThrowAwayServers) -> Any:
    os.environ.update(env(servers))
    os.environ["ROUTING_MODE"] = "manual"  # this process drives its passes itself
    import django

    django.setup()
    from django.core.management import call_command

    from bench import world

    say("migrating")
    call_command("migrate", verbosity=0)
    say(f"building the world: {AGENTS} agents")
    return world.build_world(agents=AGENTS)


def _timed(fn: Any) -> tuple[float, int]:
    """(milliseconds, statements) of one call, BEGIN/COMMIT included."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    connection.queries_log.clear()  # a full log (9,000) would count nothing
    with CaptureQueriesContext(connection) as ctx:
        t0 = time.perf_counter()
        fn()
        ms = (time.perf_counter() - t0) * 1000
    return ms, len(ctx.captured_queries)


def _fresh_offers(w: Any, count: int, seed: int) -> None:
    """Nothing held, nothing waiting but ``count`` new items, each offered to an agent."""
    from django.utils import timezone

    from bench import world
    from routing import services

    world.reset_routing()
    world.cancel_backlog()
    world.add_waiting_items(w, count, seed=seed)
    offered = services.route_waiting_work(now=timezone.now()).offers
    assert offered == count, (offered, count)


def measure_costs(w: Any) -> dict[str, Any]:
    from django.db import connection
    from django.utils import timezone

    from presence import consumers
    from presence.models import Agent
    from routing import services

    figures: dict[str, Any] = {"expire": {}}
    later = timedelta(seconds=601)  # the world's push timeout is 600 s
    for count in (1, 50, 1000):
        runs = []
        for n in range(5):
            _fresh_offers(w, count, seed=100 * count + n)
            due_at = timezone.now() + later
            runs.append(_timed(lambda due_at=due_at: services.expire_offers(now=due_at)))
        figures["expire"][count] = (
            statistics.median(r[0] for r in runs),
            statistics.median(r[1] for r in runs),
        )
        say(
            f"expire_offers, {count} due: {figures['expire'][count][0]:.1f} ms, "
            f"{figures['expire'][count][1]} statements"
        )

    # 1,000 live offers, none due: what a quiet second costs.
    _fresh_offers(w, 1000, seed=7)
    idle = [_timed(services.sweep) for _ in range(20)]
    figures["idle_sweep"] = (
        statistics.median(r[0] for r in idle),
        statistics.median(r[1] for r in idle),
    )
    say(f"idle sweep: {figures['idle_sweep'][0]:.1f} ms, {figures['idle_sweep'][1]} statements")

    full = [_timed(services.reconcile_capacity) for _ in range(10)]
    figures["check_full"] = (
        statistics.median(r[0] for r in full),
        statistics.median(r[1] for r in full),
    )
    if "since" in inspect.signature(services.reconcile_capacity).parameters:
        since = timezone.now() - timedelta(seconds=11)
        # One agent in 20 with work changed in the last 11 s (the others' a minute ago).
        with connection.cursor() as cur:
            cur.execute(
                "UPDATE routing_agentwork SET pushed_at = pushed_at - interval '1 minute'"
                " WHERE agent_id % 20 <> 0"
            )
        recent = [_timed(lambda: services.reconcile_capacity(since=since)) for _ in range(10)]
        figures["check_since"] = (
            statistics.median(r[0] for r in recent),
            statistics.median(r[1] for r in recent),
        )

    ids = list(Agent.objects.order_by("id").values_list("id", flat=True))
    Agent.objects.update(console_seen_at=None)
    for label in ("heartbeat_write", "heartbeat_again"):
        beats = [_timed(lambda a=a: consumers._touch(a)) for a in ids]
        figures[label] = (
            statistics.mean(r[0] for r in beats),
            statistics.median(r[1] for r in beats),
            Agent.objects.filter(console_seen_at__isnull=False).count(),
        )
        say(f"{label}: {figures[label][0]:.2f} ms, {figures[label][1]} statements")
    return figures


def measure_delay(servers: ThrowAwayServers, procs: list[Proc], seconds: float) -> dict[str, Any]:
    from django.db import connection
    from django.utils import timezone

    from bench import world
    from routing import services
    from routing.models import Queue, RoutingConfiguration, ServiceChannel

    world.reset_routing()
    world.cancel_backlog()
    RoutingConfiguration.objects.update(push_timeout_seconds=2)
    logs = tempfile.mkdtemp(prefix="omnirouter-bench-sweep.")
    name = f"sweep-bench-{os.getpid()}@{socket.gethostname()}"
    worker = Proc.start(
        "worker",
        [sys.executable, "-m", "celery", "-A", "omnirouter", "worker"]
        + ["-Q", "routing,default", "--concurrency", "2", "--pool", "prefork", "-l", "info"]
        + ["-n", name, "--without-gossip", "--without-mingle"],
        env=env(servers),
        log_dir=logs,
    )
    procs.append(worker)
    worker.wait_until(lambda: " ready." in worker.log_text(), 90, "'ready' log")
    beat = Proc.start(
        "beat",
        [sys.executable, "-m", "celery", "-A", "omnirouter", "beat", "-l", "info"]
        + ["--schedule", os.path.join(logs, "beat-schedule")],
        env=env(servers),
        log_dir=logs,
    )
    procs.append(beat)
    beat.wait_until(lambda: "beat: Starting..." in beat.log_text(), 60, "start")

    from django.conf import settings

    settings.ROUTING_MODE = "celery"  # arrivals queue passes, as the web process's do
    queues = list(Queue.objects.select_related("routing_config"))
    channels = list(ServiceChannel.objects.all())
    started = timezone.now()
    stop = threading.Event()
    seen_ended: dict[int, Any] = {}

    def poll() -> None:
        from django.db import connection as conn

        pushed: dict[int, Any] = {}
        while not stop.is_set():
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT clock_timestamp(), id FROM routing_agentwork WHERE state = 'pushed'"
                )
                rows = cur.fetchall()
            at = rows[0][0] if rows else timezone.now()
            now_pushed = {r[1] for r in rows}
            for work_id in set(pushed) - now_pushed:
                seen_ended.setdefault(work_id, at)
            pushed = dict.fromkeys(now_pushed)
            time.sleep(0.05)
        conn.close()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    say(f"expiry delay: 20 items/s for {seconds:g} s, push timeout 2 s, nobody accepts")
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        while n < (time.monotonic() - t0) * 20:
            services.enqueue_work(
                queue=queues[n % len(queues)], channel=channels[n % len(channels)], subject="due"
            )
            n += 1
        time.sleep(0.01)
    time.sleep(4)  # the last offers' deadlines pass and the sweep expires them
    stop.set()
    poller.join(10)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT id, expires_at, ended_at FROM routing_agentwork"
            " WHERE state = 'timed_out' AND expires_at >= %s",
            [started],
        )
        rows = cur.fetchall()
        cur.execute(
            "SELECT count(*) FROM routing_agentwork WHERE state = 'pushed'"
            " AND expires_at < now() - interval '1 second'"
        )
        overdue = cur.fetchone()[0]
    stamped = sorted((ended - due).total_seconds() for _, due, ended in rows)
    observed = sorted(
        (seen_ended[i] - due).total_seconds() for i, due, _ in rows if i in seen_ended
    )
    sweep_seconds = sorted(
        float(line.split(" succeeded in ")[1].split("s:")[0])
        for line in worker.log_text().splitlines()
        if "Task routing.sweep[" in line and " succeeded in " in line
    )
    return {
        "items": n,
        "timed_out": len(rows),
        "overdue_at_end": overdue,
        "stamped": stamped,
        "observed": observed,
        "sweep_seconds": sweep_seconds,
    }


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * pct / 100))]


def _spread(label: str, values: list[float]) -> str:
    return (
        f"{label}p50 {_pct(values, 50):.2f} s, p95 {_pct(values, 95):.2f} s,"
        f" max {max(values, default=0):.2f} s"
    )


def report(
    f: dict[str, Any],
    servers: ThrowAwayServers,
    before: tuple[float, ...],
    after: tuple[float, ...],
) -> None:
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    lines = [
        "",
        "=" * 90,
        f"OmniRouter sweep bench, {time.strftime('%Y-%m-%d %H:%M')} UTC, commit {git or '?'}, "
        f"{os.cpu_count()} CPUs; servers: {'; '.join(servers.notes)}",
        "load average (1, 5, 15 min) before: "
        + ", ".join(f"{x:.2f}" for x in before)
        + "; after: "
        + ", ".join(f"{x:.2f}" for x in after),
        "-" * 90,
    ]
    for count, (ms, statements) in f["expire"].items():
        lines.append(f"expire_offers, {count:>5} due: {ms:8.1f} ms, {statements} statements")
    lines.append(
        f"idle sweep (1,000 live offers, just made):  {f['idle_sweep'][0]:8.1f} ms, "
        f"{f['idle_sweep'][1]} statements"
    )
    lines.append(
        f"capacity check, every agent:     {f['check_full'][0]:8.1f} ms, "
        f"{f['check_full'][1]} statements"
    )
    if "check_since" in f:
        lines.append(
            f"capacity check, 1 agent in 20 changed in 11 s: {f['check_since'][0]:8.1f} ms, "
            f"{f['check_since'][1]} statements"
        )
    for label in ("heartbeat_write", "heartbeat_again"):
        ms, statements, written = f[label]
        lines.append(
            f"{label}: {ms:.2f} ms mean, {statements} statements (agents with a stored time: "
            f"{written})"
        )
    if "delay" in f:
        d = f["delay"]
        lines += [
            f"expiry delay: {d['items']} items, {d['timed_out']} offers timed out, "
            f"{d['overdue_at_end']} overdue > 1 s at the end; sweep task run time p50 "
            f"{_pct(d['sweep_seconds'], 50) * 1000:.0f} ms, max "
            f"{max(d['sweep_seconds'], default=0) * 1000:.0f} ms ({len(d['sweep_seconds'])} runs)",
            _spread("  deadline -> ended_at (sweep clock):  ", d["stamped"]),
            _spread("  deadline -> seen ended (50 ms poll): ", d["observed"]),
        ]
    lines.append("=" * 90)
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
