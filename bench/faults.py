"""Fault drills: what routing loses, doubles or overfills when its parts fail under load.

Run from the repository root:

    .venv/bin/python bench/faults.py            # every drill, about 5 minutes on 2 cores
    .venv/bin/python bench/faults.py --quick    # 30 agents, 2 kills, 1 Redis restart, 5 s waits

Always on throw-away PostgreSQL and Redis (DATABASE_URL / REDIS_URL are ignored: the drills
restart and flush the servers). One Celery worker (``-Q routing,default --concurrency 2``, as in
docker-compose) and Celery beat (the 1 s sweep) run as subprocesses with ROUTING_MODE=celery. A
driver thread in this process makes load through the services: items arrive, agents accept
their offers and close their work a moment later. Faults, in order:

(a) SIGKILL the worker (main process and pool children), then start a new one; several times.
(b) restart Redis (it comes back empty: no persistence); several times.
(c) FLUSHALL on Redis.
(d) ``pg_ctl restart -m fast``; then ``pg_terminate_backend`` on every other connection (the
    worker's and beat's).

After each: items lost (gone, or in a state their agent work contradicts), items with two live
agent works, agents over capacity or with used capacity that is not their live work, items
still waiting, and seconds from the fault to the first offer made after it. Figures only:
nothing here asserts. See bench/README.md, "Fault drills".
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import REPO_ROOT, Proc, ThrowAwayServers, say  # noqa: E402

RESUME_TIMEOUT_S = 30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="items arriving per second")
    parser.add_argument("--kills", type=int, default=5, help="worker SIGKILLs in drill (a)")
    parser.add_argument("--redis-restarts", type=int, default=3, help="Redis restarts in (b)")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds of load after a fault")
    parser.add_argument("--quick", action="store_true", help="30 agents, 2 kills, 5 s settle")
    args = parser.parse_args()
    if args.quick:
        args.agents, args.kills, args.redis_restarts, args.settle = 30, 2, 1, 5.0
    # The drills restart and flush their servers: never someone else's.
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)

    started = time.monotonic()
    load_before = os.getloadavg()
    servers = ThrowAwayServers()
    say("starting PostgreSQL and Redis")
    servers.start()
    drills = Drills(args, servers)
    try:
        drills.setup()
        drills.run()
    finally:
        drills.stop()
        servers.stop()
    print_report(drills, servers, load_before, os.getloadavg(), time.monotonic() - started)
    return 0


@dataclass
class Outcome:
    fault: str
    resumed_s: float | None
    vanished: int
    contradicted: int
    double_live: int
    over_capacity: int
    drift: int
    waiting: int
    oldest_waiting_s: float
    driver_errors: int
    task_errors: int = 0
    fault_s: float = 0.0
    notes: list[str] = field(default_factory=list)


class Driver(threading.Thread):
    """Load through the services: arrivals at a steady rate; every agent accepts their offers
    at once and closes accepted work after ``hold`` seconds. Errors (a server is down) are
    counted, the connection dropped, and the loop goes on."""

    def __init__(self, rate: float, hold: float = 1.0) -> None:
        super().__init__(name="fault-driver", daemon=True)
        self.rate = rate
        self.hold = hold
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.created: list[int] = []
        self.errors = 0
        self.accepted = 0
        self.closed = 0
        self.rng = random.Random(7)
        self.backend_pid = 0  # spared by the pg_terminate_backend drill

    def run(self) -> None:
        from django.db import connection

        from presence.models import Agent
        from routing.models import Queue, ServiceChannel

        queues = list(Queue.objects.select_related("routing_config"))
        channels = list(ServiceChannel.objects.all())
        agents = {a.pk: a for a in Agent.objects.select_related("presence_config")}
        next_item = time.monotonic()
        while not self.stop_event.is_set():
            try:
                now = time.monotonic()
                while next_item <= now:
                    self._enqueue(queues, channels)
                    next_item += 1 / self.rate
                self._answer(agents)
                if connection.connection is not None:
                    self.backend_pid = connection.connection.get_backend_pid()
            except Exception:  # a server is down or restarting: count it, reconnect, go on
                with self.lock:
                    self.errors += 1
                connection.close()
                next_item = time.monotonic()
                time.sleep(0.2)
            time.sleep(0.02)
        connection.close()

    def _enqueue(self, queues: list[Any], channels: list[Any]) -> None:
        from routing import services

        item = services.enqueue_work(
            queue=self.rng.choice(queues),
            channel=self.rng.choice(channels),
            subject="drill item",
            priority=self.rng.randint(1, 10),
        )
        with self.lock:
            self.created.append(item.pk)

    def _answer(self, agents: dict[int, Any]) -> None:
        from datetime import timedelta

        from django.utils import timezone

        from omnirouter.errors import DomainError
        from routing import services
        from routing.models import AgentWork

        for work_id, agent_id in AgentWork.objects.filter(state="pushed").values_list(
            "id", "agent_id"
        )[:50]:
            try:
                services.accept_work(work_id=work_id, agent=agents[agent_id])
                self.accepted += 1
            except DomainError:
                pass  # moved on meanwhile (canceled, expired): what a real agent would see
        due = timezone.now() - timedelta(seconds=self.hold)
        for work_id, agent_id in AgentWork.objects.filter(
            state="opened", opened_at__lte=due
        ).values_list("id", "agent_id")[:50]:
            try:
                services.close_work(work_id=work_id, agent=agents[agent_id])
                self.closed += 1
            except DomainError:
                pass


class Drills:
    def __init__(self, args: argparse.Namespace, servers: ThrowAwayServers) -> None:
        self.args = args
        self.servers = servers
        self.logs = tempfile.mkdtemp(prefix="omnirouter-faults-logs.")
        self.worker: Proc | None = None
        self.beat: Proc | None = None
        self.driver: Driver | None = None
        self.outcomes: list[Outcome] = []
        self.worker_starts: list[float] = []
        self.workers: list[Proc] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.servers.database_url,
            REDIS_URL=self.servers.redis_url,
            DJANGO_SETTINGS_MODULE="omnirouter.settings",
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            DJANGO_DEBUG="false",
            ROUTING_MODE="celery",
            PYTHONUNBUFFERED="1",
        )
        env.setdefault(
            "DJANGO_SECRET_KEY", "bench-only-secret-key-not-for-production-use-0123456789"
        )
        return env

    def setup(self) -> None:
        # This process makes load the way the web process does: its events queue passes.
        os.environ.update(self.env())
        import django

        django.setup()
        from django.core.management import call_command

        from bench import world

        say("migrating the drill database")
        call_command("migrate", verbosity=0)
        say(f"building the world: {self.args.agents} agents, 20 queues, 5 channels")
        world.build_world(agents=self.args.agents)
        self.start_worker()
        self.beat = Proc.start(
            "beat",
            [sys.executable, "-m", "celery", "-A", "omnirouter", "beat", "-l", "info"]
            + ["--schedule", os.path.join(self.logs, "beat-schedule")],
            env=self.env(),
            log_dir=self.logs,
        )
        self.beat.wait_until(lambda: "beat: Starting..." in self.beat.log_text(), 60, "start")
        self.driver = Driver(self.args.rate)
        self.driver.start()
        say(f"load running: {self.args.rate:g} items/s; warming up")
        time.sleep(self.args.settle)

    def start_worker(self) -> None:

        n = len(self.worker_starts) + 1
        name = f"drill{n}-{os.getpid()}@{socket.gethostname()}"
        t0 = time.monotonic()
        proc = Proc.start(
            f"worker{n}",
            [sys.executable, "-m", "celery", "-A", "omnirouter", "worker"]
            + ["-Q", "routing,default", "--concurrency", "2", "--pool", "prefork", "-l", "info"]
            + ["-n", name, "--without-gossip", "--without-mingle"],
            env=self.env(),
            log_dir=self.logs,
        )
        proc.wait_until(lambda: " ready." in proc.log_text(), 90, "'ready' log")
        proc.wait_until(lambda: _pings(name), 60, "ping answer")
        self.worker_starts.append(time.monotonic() - t0)
        proc.nodename = name  # type: ignore[attr-defined]
        self.worker = proc
        self.workers.append(proc)

    def stop(self) -> None:
        if self.driver is not None:
            self.driver.stop_event.set()
            self.driver.join(30)
        for proc in (self.beat, self.worker):
            if proc is not None:
                proc.stop()

    # --- drills ------------------------------------------------------------------------------

    def run(self) -> None:
        for n in range(self.args.kills):
            self.drill(f"(a) SIGKILL worker #{n + 1}", self.kill_worker)
        for n in range(self.args.redis_restarts):
            self.drill(f"(b) Redis restart #{n + 1}", self.servers.restart_redis)
        self.drill("(c) Redis FLUSHALL", self.flush_redis)
        self.drill("(d) PostgreSQL restart -m fast", self.servers.restart_postgres)
        self.drill("(d) pg_terminate_backend (others)", self.terminate_backends)

    def drill(self, name: str, fault: Any) -> None:
        say(f"{name}")
        errors_before = self.driver.errors
        logs_before = {p.name: len(p.log_text()) for p in self.workers}
        at = _db_now()
        fault_started = time.monotonic()
        fault()
        fault_seconds = time.monotonic() - fault_started
        resumed = self.wait_for_offer(
            since=at, created_after=_db_now(), started=fault_started, timeout=RESUME_TIMEOUT_S
        )
        say(
            "  first offer after the fault: "
            + (f"{resumed:.2f} s" if resumed is not None else f"none within {RESUME_TIMEOUT_S} s")
        )
        notes = []
        if resumed is None:
            # Routing is wedged: say whether the worker still looks alive to a health check,
            # then replace it, so that the drills after this one measure their own fault.
            pinged = any(_pings(getattr(self.worker, "nodename", "")) for _ in range(3))
            code = self.worker.popen.poll()
            notes.append(
                "routing stopped; worker process "
                + ("alive" if code is None else f"exited ({code})")
                + ", "
                f"{'answers' if pinged else 'does not answer'} a control ping"
            )
            say(f"  {notes[-1]}; replacing the worker")
            self.kill_worker()
            again = self.wait_for_offer(
                since=at,
                created_after=_db_now(),
                started=time.monotonic(),
                timeout=RESUME_TIMEOUT_S,
            )
            notes.append(
                "after a new worker: first offer "
                + (f"{again:.1f} s after the fault" if again is not None else "never")
            )
        time.sleep(self.args.settle)
        outcome = self.check(name, resumed)
        outcome.notes = notes
        outcome.fault_s = fault_seconds
        outcome.driver_errors = self.driver.errors - errors_before
        outcome.task_errors = sum(
            p.log_text()[logs_before.get(p.name, 0) :].count("raised unexpected")
            for p in self.workers
        )
        self.outcomes.append(outcome)
        say(
            f"  vanished {outcome.vanished}, contradicted {outcome.contradicted}, double live "
            f"{outcome.double_live}, over capacity {outcome.over_capacity}, drift "
            f"{outcome.drift}, waiting {outcome.waiting} (oldest {outcome.oldest_waiting_s:.1f} s),"
            f" driver errors {outcome.driver_errors}, failed tasks {outcome.task_errors}"
        )

    def kill_worker(self) -> None:
        assert self.worker is not None
        with_children = self.worker.pids()
        with contextlib.suppress(ProcessLookupError):  # it may have died by itself
            os.killpg(self.worker.popen.pid, signal.SIGKILL)
        for pid in with_children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.worker.popen.wait(10)
        self.start_worker()

    def flush_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self.servers.redis_url)
        client.flushall()
        client.close()

    def terminate_backends(self) -> None:
        """Cut the worker's connections (its pool children's): every backend on the database
        but this process's two (the driver's and this one)."""
        _retrying(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s",
            [self.driver.backend_pid],
        )

    def wait_for_offer(
        self, *, since: datetime, created_after: datetime, started: float, timeout: float
    ) -> float | None:
        """Seconds from the fault's start to the first offer of an item that arrived once the
        fault was over (a pass already under way when it struck does not count)."""
        while time.monotonic() - started < timeout:
            row = _retrying(
                "SELECT min(a.pushed_at) FROM routing_agentwork a"
                " JOIN routing_workitem w ON w.id = a.item_id WHERE w.created_at > %s",
                [created_after],
            )
            if row and row[0] is not None:
                return (row[0] - since).total_seconds()
            time.sleep(0.05)
        return None

    def check(self, name: str, resumed: float | None) -> Outcome:
        with self.driver.lock:
            created = list(self.driver.created)
        vanished = _retrying(
            "SELECT count(*) FROM unnest(%s::bigint[]) AS c(id)"
            " WHERE NOT EXISTS (SELECT 1 FROM routing_workitem w WHERE w.id = c.id)",
            [created],
        )[0]
        live = "a.state IN ('pushed', 'opened')"
        contradicted = _retrying(
            "SELECT count(*) FROM routing_workitem w WHERE CASE w.status"
            f" WHEN 'waiting' THEN EXISTS (SELECT 1 FROM routing_agentwork a WHERE a.item_id = w.id"
            f" AND {live})"
            " WHEN 'offered' THEN NOT EXISTS (SELECT 1 FROM routing_agentwork a"
            " WHERE a.item_id = w.id AND a.state = 'pushed')"
            " WHEN 'assigned' THEN NOT EXISTS (SELECT 1 FROM routing_agentwork a"
            " WHERE a.item_id = w.id AND a.state = 'opened')"
            " WHEN 'closed' THEN EXISTS (SELECT 1 FROM routing_agentwork a WHERE a.item_id = w.id"
            f" AND {live})"
            " WHEN 'canceled' THEN EXISTS (SELECT 1 FROM routing_agentwork a"
            f" WHERE a.item_id = w.id AND {live})"
            " ELSE true END"
        )[0]
        double = _retrying(
            "SELECT count(*) FROM (SELECT item_id FROM routing_agentwork a"
            f" WHERE {live} GROUP BY item_id HAVING count(*) > 1) d"
        )[0]
        over, drift = _retrying(
            "SELECT count(*) FILTER (WHERE g.used_capacity > g.capacity),"
            " count(*) FILTER (WHERE g.used_capacity <> g.live_units"
            " OR g.open_count <> g.live_count)"
            " FROM (SELECT p.used_capacity, p.capacity, p.open_count,"
            f" coalesce(sum(a.units) FILTER (WHERE {live}), 0) AS live_units,"
            f" count(a.id) FILTER (WHERE {live}) AS live_count"
            " FROM presence_agent p LEFT JOIN routing_agentwork a ON a.agent_id = p.id"
            " GROUP BY p.id) g"
        )
        waiting, oldest = _retrying(
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(enqueued_at)), 0)"
            " FROM routing_workitem WHERE status = 'waiting'"
        )
        return Outcome(
            fault=name,
            resumed_s=resumed,
            vanished=vanished,
            contradicted=contradicted,
            double_live=double,
            over_capacity=over,
            drift=drift,
            waiting=waiting,
            oldest_waiting_s=float(oldest),
            driver_errors=0,
        )


def _pings(nodename: str) -> bool:
    """Whether the worker answers a control ping (what docker-compose's health check asks)."""
    from omnirouter.celery import app

    try:
        return bool(app.control.ping(destination=[nodename], timeout=1))
    except Exception:  # this process's broker connection may be the stale one: try again later
        return False


def _retrying(sql: str, params: list[Any] | None = None, attempts: int = 100) -> Any:
    """One row of ``sql``; while the database is restarting, reconnect and try again."""
    from django.db import connection
    from django.db.utils import Error

    for _ in range(attempts):
        try:
            with connection.cursor() as cur:
                cur.execute(sql, params or [])
                return cur.fetchone()
        except Error:
            connection.close()
            time.sleep(0.1)
    raise RuntimeError(f"the database did not answer: {sql[:60]}")


def _db_now() -> datetime:
    return _retrying("SELECT now()")[0].astimezone(UTC)


def print_report(
    drills: Drills,
    servers: ThrowAwayServers,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    elapsed: float,
) -> None:
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    d = drills.driver
    lines = [
        "",
        "=" * 100,
        f"OmniRouter fault drills, {time.strftime('%Y-%m-%d %H:%M')} UTC, commit {git}, "
        f"{os.cpu_count()} CPUs",
        f"servers: {'; '.join(servers.notes)}",
        f"world: {drills.args.agents} agents (capacity 10), 20 queues, 5 channels; load "
        f"{drills.args.rate:g} items/s, accept at once, close after 1 s; {drills.args.settle:g} s "
        "of load after each fault before checking",
        "load average (1, 5, 15 min) before: "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + "; after: "
        + ", ".join(f"{x:.2f}" for x in load_after),
        "-" * 100,
        f"{'fault':<36}{'took':>7}{'resumed':>9}{'lost':>6}{'contra':>8}{'double':>8}{'over':>6}"
        f"{'drift':>7}{'waiting':>9}{'oldest':>8}{'drv err':>9}{'tasks err':>11}",
    ]
    for o in drills.outcomes:
        resumed = f"{o.resumed_s:.2f}s" if o.resumed_s is not None else "never"
        lines.append(
            f"{o.fault:<36}{o.fault_s:>6.1f}s{resumed:>9}{o.vanished:>6}{o.contradicted:>8}{o.double_live:>8}"
            f"{o.over_capacity:>6}{o.drift:>7}{o.waiting:>9}{o.oldest_waiting_s:>7.1f}s"
            f"{o.driver_errors:>9}{o.task_errors:>11}"
        )
        lines += [f"    {o.fault}: {note}" for note in o.notes]
    lines += [
        "-" * 100,
        "took: the fault itself (a kill includes starting the new worker); resumed: fault start "
        "-> first offer of an item that arrived after the fault; lost: items enqueued that are "
        "gone; contra: items whose state their agent work contradicts; double: items with two live "
        "works; over: agents over capacity; drift: agents whose used capacity is not their live "
        "work; waiting/oldest: line after the settle; drv err: driver calls that failed; "
        "tasks err: "
        "worker tasks that raised",
        f"driver: {len(d.created)} items enqueued, {d.accepted} accepted, {d.closed} closed, "
        f"{d.errors} failed calls; worker start times: "
        + ", ".join(f"{s:.1f}s" for s in drills.worker_starts),
        f"total run time {elapsed:.0f} s; logs in {drills.logs}",
        "=" * 100,
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
