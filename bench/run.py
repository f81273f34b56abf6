"""OmniRouter benchmark: routing throughput, pass cost against backlog, offer latency, memory.

Run from the repository root:

    .venv/bin/python bench/run.py              # everything (about 5-10 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick      # smaller, for trying changes
    .venv/bin/python bench/run.py --only pass  # one part: pass, burst, latency, skills

Uses DATABASE_URL / REDIS_URL when set (the database is dropped and recreated: point it at one
of your own), otherwise starts throw-away PostgreSQL and Redis. Prints progress and, at the end,
every figure with its target. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import platform
import pstats
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import REPO_ROOT, Proc, ThrowAwayServers, free_port, say  # noqa: E402

TARGET_RATIO = 0.5
TARGET_GROWTH = 1.2
TARGET_P50_MS = 15.0
TARGET_P99_MS = 50.0
TARGET_SKILLS = 1.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--small-backlog", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each pass measurement")
    parser.add_argument("--rate", type=float, default=100.0, help="latency run: items per second")
    parser.add_argument(
        "--reference-rate",
        type=float,
        action="append",
        default=None,
        help="latency run: also measure at this lighter rate (default 20)",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="latency run: duration")
    parser.add_argument("--only", choices=["pass", "burst", "latency", "skills"], action="append")
    parser.add_argument(
        "--web-switch-interval-ms",
        type=float,
        default=0.0,
        help="latency run: start daphne with this GIL switch interval (experiment)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one 1,000-item pass")
    parser.add_argument("--quick", action="store_true", help="20,000 items, 3 reps, 10 s latency")
    args = parser.parse_args()
    if args.reference_rate is None:
        args.reference_rate = [20.0]
    if args.quick:
        args.items, args.reps, args.seconds = 20_000, 3, 10.0
    parts = set(args.only or ["pass", "burst", "latency", "skills"])

    started = time.monotonic()
    load_before = os.getloadavg()
    servers = ThrowAwayServers()
    say("starting PostgreSQL and Redis")
    servers.start()
    try:
        bench = Bench(args, servers)
        bench.setup()
        figures = bench.run(parts)
    finally:
        servers.stop()
    figures["load"] = (load_before, os.getloadavg())
    print_report(figures, servers, time.monotonic() - started)
    return 0


class Bench:
    def __init__(self, args: argparse.Namespace, servers: ThrowAwayServers) -> None:
        self.args = args
        self.servers = servers
        self.logs = tempfile.mkdtemp(prefix="omnirouter-bench-logs.")
        self.figures: dict[str, Any] = {"notes": list(servers.notes)}
        self.peaks: dict[str, dict[str, int]] = {}

    # --- Setup ------------------------------------------------------------------------------

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
        # The benchmark measures routing, not the API's rate limits (100 items/s from one client).
        env.setdefault("API_THROTTLE_INTAKE_PER_MINUTE", "10000000")
        env.setdefault("API_THROTTLE_WORK_ITEM_CREATE_PER_MINUTE", "10000000")
        return env

    def setup(self) -> None:
        os.environ.update(self.env())
        # This process sets data up and drives passes itself: it must not queue passes of its
        # own while the measured workers are not yet told to run.
        os.environ["ROUTING_MODE"] = "manual"
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection

        self.figures["postgres"] = _scalar("SHOW server_version")
        self.figures["redis"] = _redis_version(settings.CELERY_BROKER_URL)
        say("migrating the benchmark database")
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            if cur.fetchone()[0]:
                raise SystemExit(
                    "bench: the database is not empty; point DATABASE_URL at an empty one "
                    "(or unset it to use a throw-away server)"
                )
        call_command("migrate", verbosity=0)
        self._flush_redis()

        from bench import world

        say(f"building the world: {self.args.agents} agents, 20 queues, 5 channels")
        t0 = time.perf_counter()
        self.world = world.build_world(agents=self.args.agents)
        say(f"  done in {time.perf_counter() - t0:.1f}s")

    def _flush_redis(self) -> None:
        import redis
        from django.conf import settings

        for url in (
            settings.CELERY_BROKER_URL,
            settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0],
        ):
            client = redis.Redis.from_url(url)
            client.flushdb()
            client.close()

    def run(self, parts: set[str]) -> dict[str, Any]:
        from bench import world

        small = self.args.small_backlog
        say(f"adding {small} waiting items")
        world.add_waiting_items(self.world, small, seed=11)
        if "pass" in parts:
            self.figures["pass_small"] = self.measure_pass(f"{small:,} waiting")
        rest = self.args.items - small
        say(f"adding {rest:,} more waiting items ({self.args.items:,} in all)")
        t0 = time.perf_counter()
        world.add_waiting_items(self.world, rest, seed=12)
        say(f"  done in {time.perf_counter() - t0:.1f}s")
        if "pass" in parts:
            self.figures["pass_large"] = self.measure_pass(f"{self.args.items:,} waiting")
            self.figures["full_pass"] = self.measure_full_pass()
            if self.args.profile:
                self.profile_pass()
        if "burst" in parts:
            for workers in (1, 2):
                self.figures[f"burst_{workers}"] = self.measure_burst(workers)
            self.figures["floor"] = self.measure_floor()
        if "latency" in parts:
            self.figures["latency"] = self.measure_latency()
        if "skills" in parts:
            # Last: it adds skills to the world for good (the other parts measure without).
            self.figures["skills"] = self.measure_skills()
        self.figures["peaks"] = self.peaks
        return self.figures

    # --- (e) skills -------------------------------------------------------------------------

    def measure_skills(self) -> dict[str, Any]:
        """One batch on the same world without and with item requirements, alternating (the
        requirements are set aside in a table of their own and put back), so that a noisy
        minute on a shared machine falls on both."""
        from bench import world

        world.reset_routing()
        if _scalar("SELECT count(*) FROM routing_workitem WHERE status = 'waiting'") == 0:
            world.add_waiting_items(self.world, self.args.items, seed=12)
        waiting = _scalar("SELECT count(*) FROM routing_workitem WHERE status = 'waiting'")
        say("(e) adding skills: 1-5 per agent, 0-3 requirements per waiting item")
        t0 = time.perf_counter()
        agent_skills, requirements = world.add_skills(self.world, seed=13)
        say(
            f"  {agent_skills:,} agent skills, {requirements:,} requirements in "
            f"{time.perf_counter() - t0:.1f}s"
        )
        runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
        for _ in range(3):
            world.set_requirements_aside()
            runs["without"].append(self.measure_pass(f"{waiting:,} waiting, no skills"))
            world.put_requirements_back()
            runs["with"].append(self.measure_pass(f"{waiting:,} waiting, with skills"))

        def merged(figures: list[dict[str, Any]]) -> dict[str, Any]:
            times = sorted(t for f in figures for t in f["times"])
            offers = statistics.median(f["offers"] for f in figures)
            med = statistics.median(times)
            cpu = statistics.median(c for f in figures for c in f["cpu"])
            return {
                **figures[-1],
                "median_s": med,
                "best_s": times[0],
                "ms_per_assignment": med * 1000 / offers,
                "cpu_ms_per_assignment": cpu * 1000 / offers,
            }

        if self.args.profile:
            self.profile_pass()
        return {
            "without": merged(runs["without"]),
            "with": merged(runs["with"]),
            "agent_skills": agent_skills,
            "requirements": requirements,
        }

    # --- (b) pass cost ----------------------------------------------------------------------

    def measure_pass(self, label: str) -> dict[str, Any]:
        """One 1,000-item batch (``max_batches=1``), from a reset state, ``reps`` times."""
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from bench import world
        from omnirouter import fanout
        from routing import services

        say(f"(b) pass cost with {label}: {self.args.reps} runs of one batch")
        times, offers, publish, cpu = [], [], [], []
        for _ in range(self.args.reps):
            world.reset_routing()
            c0 = time.process_time()
            t0 = time.perf_counter()
            result = services.route_waiting_work(max_batches=1)
            t1 = time.perf_counter()
            cpu.append(time.process_time() - c0)
            fanout.flush(30)  # events are sent by a background thread: wait for the last one
            times.append(t1 - t0)
            publish.append(time.perf_counter() - t1)
            offers.append(result.offers)
        world.reset_routing()
        with CaptureQueriesContext(connection) as ctx:
            result = services.route_waiting_work(max_batches=1)
        queries = len(ctx.captured_queries)
        best = min(times)
        med = statistics.median(times)
        n = statistics.median(offers)
        figure = {
            "label": label,
            "offers": n,
            "median_s": med,
            "best_s": best,
            "ms_per_assignment": med * 1000 / n if n else float("nan"),
            "publish_ms": statistics.median(publish) * 1000,
            "queries": queries,
            "queries_per_assignment": queries / result.offers if result.offers else float("nan"),
            "times": times,
            # This process's CPU time (the Python side of the batch; PostgreSQL's is apart):
            # less moved by other work on a shared machine than the wall time.
            "cpu": cpu,
            "cpu_ms_per_assignment": statistics.median(cpu) * 1000 / n if n else float("nan"),
        }
        say(
            f"  {n:.0f} offers per batch, median {med * 1000:.0f} ms (best {best * 1000:.0f}), "
            f"{figure['ms_per_assignment']:.3f} ms per assignment, {queries} SQL statements; "
            f"events still being sent when the pass returned: {figure['publish_ms']:.0f} ms more"
        )
        return figure

    def measure_full_pass(self) -> dict[str, Any]:
        """A whole pass in this process, from empty agents to full (until nobody has room)."""
        from bench import world
        from routing import services

        say("(b) a whole pass in-process with the full backlog, until every agent is full")
        rates = []
        for _ in range(max(1, self.args.reps // 2)):
            world.reset_routing()
            t0 = time.perf_counter()
            result = services.route_waiting_work()
            elapsed = time.perf_counter() - t0
            full, total = world.full_agents()
            rates.append((result.offers / elapsed, result.offers, result.batches, elapsed, full))
        rate, offers, batches, elapsed, full = sorted(rates)[len(rates) // 2]
        say(
            f"  {offers} offers in {batches} batches, {elapsed:.2f}s: {rate:,.0f} assignments/s; "
            f"{full}/{total} agents full"
        )
        return {
            "rate": rate,
            "offers": offers,
            "batches": batches,
            "seconds": elapsed,
            "full": full,
            "agents": total,
        }

    def profile_pass(self) -> None:
        from bench import world
        from routing import services

        world.reset_routing()
        profiler = cProfile.Profile()
        profiler.enable()
        services.route_waiting_work(max_batches=1)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(35)
        path = Path(self.logs) / "pass.prof.txt"
        path.write_text(out.getvalue())
        say(f"  profile of one batch: {path}")
        print(out.getvalue()[:6000])

    # --- (a) burst through real Celery workers -------------------------------------------------

    def start_workers(self, count: int, concurrency: int = 1) -> list[Proc]:
        from omnirouter.celery import app

        procs = []
        for n in range(count):
            name = f"bench{n + 1}-{os.getpid()}@{socket.gethostname()}"
            proc = Proc.start(
                f"worker{n + 1}",
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "omnirouter",
                    "worker",
                    "-Q",
                    "routing",
                    "--concurrency",
                    str(concurrency),
                    "--pool",
                    "prefork",
                    "-l",
                    "info",
                    "-n",
                    name,
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                env=self.env(),
                log_dir=self.logs,
            )
            proc.nodename = name  # type: ignore[attr-defined]
            procs.append(proc)
        for proc in procs:
            proc.wait_until(lambda p=proc: " ready." in p.log_text(), 60, "'ready' log")
            proc.wait_until(
                lambda p=proc: bool(app.control.ping(destination=[p.nodename], timeout=0.5)),
                30,
                "answer to a control ping",
            )
        return procs

    def measure_burst(self, workers: int) -> dict[str, Any]:
        from bench import world
        from omnirouter.celery import app

        say(
            f"(a) burst with {workers} Celery worker(s): {self.args.items:,} waiting, "
            f"{self.args.agents} empty agents"
        )
        procs = self.start_workers(workers)
        try:
            runs = []
            for rep in range(3):
                world.reset_routing()
                self._flush_redis()
                t0 = time.perf_counter()
                for _ in range(workers):
                    app.send_task("routing.route", queue="routing")
                full, total, t_full = self._poll_full(t0, timeout=120)
                assigned = world.live_assignments()
                runs.append((t_full - t0, assigned, full, total))
                say(
                    f"  run {rep + 1}: {assigned} assignments, {full}/{total} agents full in "
                    f"{(t_full - t0) * 1000:.0f} ms: {assigned / (t_full - t0):,.0f}/s"
                )
                time.sleep(0.5)  # let the worker finish its last (empty) batch
            task_times = [
                float(m)
                for p in procs
                for m in re.findall(
                    r"routing\.route\[[^\]]+\] succeeded in ([0-9.]+)s", p.log_text()
                )
            ]
            for p in procs:
                self._record_peak(f"worker ({workers} worker run)", p)
        finally:
            for p in procs:
                p.stop()
        seconds, assigned, full, total = sorted(runs)[len(runs) // 2]
        self.assignments = self._assignments_snapshot()
        return {
            "workers": workers,
            "seconds": seconds,
            "assignments": assigned,
            "rate": assigned / seconds,
            "full": full,
            "agents": total,
            "task_seconds": task_times,
        }

    def _poll_full(self, t0: float, timeout: float) -> tuple[int, int, float]:
        from bench import world

        last_full, last_change = -1, time.perf_counter()
        while True:
            full, total = world.full_agents()
            now = time.perf_counter()
            if full == total:
                return full, total, now
            if full != last_full:
                last_full, last_change = full, now
            if now - last_change > 10 or now - t0 > timeout:
                say(f"  gave up waiting: {full}/{total} agents full")
                return full, total, now
            time.sleep(0.002)

    def _assignments_snapshot(self) -> list[tuple[int, int, int, int, int]]:
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute(
                "SELECT item_id, agent_id, units, queue_id, channel_id FROM routing_agentwork "
                "WHERE state IN ('pushed', 'opened') ORDER BY id"
            )
            return cur.fetchall()

    # --- The floor: plain SQL doing only the writes ------------------------------------------

    def measure_floor(self) -> dict[str, Any]:
        """The same assignments the router made, written with plain SQL in batches of 1,000:
        claim the items with SKIP LOCKED (marking them offered), raise the agents' used capacity
        in one UPDATE ... FROM (VALUES ...), insert the live agent work rows. Nothing else: no
        matching, no reasons, no events."""
        from django.db import connection, transaction

        from bench import world

        assignments = self.assignments
        say(f"floor: plain SQL writing the same {len(assignments)} assignments, batches of 1,000")
        rates = []
        for _ in range(3):
            world.reset_routing()
            t0 = time.perf_counter()
            for start in range(0, len(assignments), 1000):
                batch = assignments[start : start + 1000]
                with transaction.atomic(), connection.cursor() as cur:
                    cur.execute(
                        "UPDATE routing_workitem w SET status = 'offered' FROM ("
                        " SELECT id FROM routing_workitem WHERE id = ANY(%s) AND status = 'waiting'"
                        " ORDER BY id FOR UPDATE SKIP LOCKED) c WHERE w.id = c.id",
                        [[a[0] for a in batch]],
                    )
                    per_agent: dict[int, list[int]] = {}
                    for _item, agent, units, _q, _c in batch:
                        acc = per_agent.setdefault(agent, [0, 0])
                        acc[0] += units
                        acc[1] += 1
                    agents = sorted(per_agent)
                    cur.execute(
                        "UPDATE presence_agent a SET used_capacity = a.used_capacity + v.u,"
                        " open_count = a.open_count + v.n, last_assigned_at = now()"
                        " FROM unnest(%s::bigint[], %s::int[], %s::int[]) AS v(id, u, n)"
                        " WHERE a.id = v.id",
                        [
                            agents,
                            [per_agent[a][0] for a in agents],
                            [per_agent[a][1] for a in agents],
                        ],
                    )
                    cur.execute(
                        "INSERT INTO routing_agentwork (item_id, agent_id, units, queue_id,"
                        " channel_id, state, pushed_at, expires_at, enqueued_at, decline_reason,"
                        " end_note, routing_reason, auto_accepted)"
                        " SELECT v.item, v.agent, v.units, v.queue, v.channel, 'pushed', now(),"
                        " now() + interval '600 seconds', w.enqueued_at, '', '', '{}', false"
                        " FROM unnest(%s::bigint[], %s::bigint[], %s::int[], %s::bigint[],"
                        " %s::bigint[]) AS v(item, agent, units, queue, channel)"
                        " JOIN routing_workitem w ON w.id = v.item",
                        [list(col) for col in zip(*batch, strict=True)],
                    )
            elapsed = time.perf_counter() - t0
            rates.append(len(assignments) / elapsed)
            say(f"  {len(assignments)} assignments in {elapsed * 1000:.0f} ms: {rates[-1]:,.0f}/s")
        return {"rate": statistics.median(rates), "assignments": len(assignments)}

    # --- (c) latency through the real stack --------------------------------------------------

    def measure_latency(self) -> dict[str, Any]:
        from asgiref.sync import sync_to_async
        from django.conf import settings
        from django.contrib.auth import (
            BACKEND_SESSION_KEY,
            HASH_SESSION_KEY,
            SESSION_KEY,
            get_user_model,
        )
        from django.contrib.sessions.backends.db import SessionStore
        from rest_framework.authtoken.models import Token

        from bench import latency, world
        from routing import services
        from routing.models import Queue, ServiceChannel

        say(
            f"(c) latency: POST -> offer frame, {self.args.rate:.0f} items/s for "
            f"{self.args.seconds:.0f}s, {self.args.agents} agents with consoles"
        )
        world.reset_routing()
        world.cancel_backlog()
        self._flush_redis()
        # Logged-in agents: a session per agent, as the login view would store it (logging in
        # through the form would spend minutes hashing passwords).
        user_model = get_user_model()
        sessions = []
        for agent_id, user_id in self.world.agent_user_ids.items():
            user = user_model(pk=user_id, password="!unusable")  # noqa: S106
            store = SessionStore()
            store[SESSION_KEY] = str(user_id)
            store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
            store[HASH_SESSION_KEY] = user.get_session_auth_hash()
            store.create()
            sessions.append(store.session_key)
            del agent_id
        intake = user_model.objects.get(username=self.world.intake_username)
        token = Token.objects.get_or_create(user=intake)[0].key

        port = free_port()
        launcher = ["-m", "daphne"]
        if self.args.web_switch_interval_ms:
            # An experiment, off by default: a shorter GIL switch interval lets daphne's event
            # loop (socket frames, channel layer reads) in sooner while a view runs in its
            # thread. See bench/README.md.
            launcher = [
                "-c",
                f"import sys; sys.setswitchinterval({self.args.web_switch_interval_ms / 1000}); "
                "from daphne.cli import CommandLineInterface; CommandLineInterface.entrypoint()",
            ]
        web = Proc.start(
            "daphne",
            [sys.executable, *launcher, "-b", "127.0.0.1", "-p", str(port)]
            + ["omnirouter.asgi:application"],
            env=self.env(),
            log_dir=self.logs,
        )
        procs = [web]
        try:
            base = f"http://127.0.0.1:{port}"
            web.wait_until(lambda: _http_status(base + "/admin/login/") is not None, 60, "HTTP")
            procs += self.start_workers(1, concurrency=2)
            api = _http_status(base + "/api/work-items/", method="POST", token=token)
            api_available = api not in (None, 404)
            if not api_available:
                say(
                    "  the REST API does not answer POST /api/work-items/ yet: enqueueing "
                    "through routing.services.enqueue_work in this process instead"
                )
            # Direct runs call the service here (ROUTING_MODE=celery: the worker routes), to
            # tell the routing path's latency apart from the web process's.
            settings.ROUTING_MODE = "celery"
            queues = {q.pk: q for q in Queue.objects.select_related("routing_config")}
            channels = {c.pk: c for c in ServiceChannel.objects.all()}

            def _enqueue(queue_id: int, channel_id: int, subject: str) -> int:
                return services.enqueue_work(
                    queue=queues[queue_id], channel=channels[channel_id], subject=subject
                ).pk

            def _empty() -> None:
                world.reset_routing()
                world.cancel_backlog()

            rates = [(self.args.rate, not api_available)]
            rates += [(r, not api_available) for r in self.args.reference_rate]
            rates.append((self.args.rate, True))
            consoles, runs = asyncio.run(
                latency.measure(
                    base_url=base,
                    sessions=sessions,
                    token=token,
                    queue_ids=self.world.queue_ids,
                    channel_ids=self.world.channel_ids,
                    rates_per_second=rates,
                    seconds=self.args.seconds,
                    enqueue_direct=sync_to_async(_enqueue, thread_sensitive=False),
                    between_runs=sync_to_async(_empty, thread_sensitive=True),
                    progress=say,
                )
            )
            self._record_peak("web (daphne)", web)
            for p in procs[1:]:
                self._record_peak("worker (latency run)", p)
        finally:
            settings.ROUTING_MODE = "manual"
            for p in procs:
                p.stop()
        figures = []
        for run in runs:
            offered = consoles.offered_at
            lat = sorted((offered[i] - run.due_at[i]) * 1000 for i in run.due_at if i in offered)
            answer = sorted((run.answered_at[i] - run.due_at[i]) * 1000 for i in run.due_at)
            commit_to_frame = sorted(
                (offered[i] - run.answered_at[i]) * 1000 for i in run.due_at if i in offered
            )
            figure = {
                "api": not run.direct,
                "rate": run.rate_per_second,
                "achieved_rate": len(run.sent_at) / run.seconds if run.seconds else 0.0,
                "posted": run.posted,
                "created": len(run.sent_at),
                "offered": len(lat),
                "consoles": consoles.state_frames,
                "p50": _pct(lat, 50),
                "p99": _pct(lat, 99),
                "max": lat[-1] if lat else float("nan"),
                "post_p50": _pct(answer, 50),
                "post_p99": _pct(answer, 99),
                "after_answer_p50": _pct(commit_to_frame, 50),
                "after_answer_p99": _pct(commit_to_frame, 99),
                "errors": (run.errors + consoles.errors)[:5],
                "error_count": len(run.errors),
            }
            say(
                f"  {run.rate_per_second:.0f}/s: {figure['offered']}/{figure['created']} offers "
                f"reached a console: p50 {figure['p50']:.1f} ms, p99 {figure['p99']:.1f} ms, "
                f"max {figure['max']:.1f} ms"
            )
            if run.errors:
                say(f"  {len(run.errors)} errors, first: {run.errors[0]}")
            figures.append(figure)
        return {"runs": figures}

    def _record_peak(self, label: str, proc: Proc) -> None:
        peaks = proc.peak_rss_kib()
        main = peaks.get(proc.popen.pid, 0)
        children = max((v for k, v in peaks.items() if k != proc.popen.pid), default=0)
        entry = self.peaks.setdefault(label, {"main_kib": 0, "child_kib": 0})
        entry["main_kib"] = max(entry["main_kib"], main)
        entry["child_kib"] = max(entry["child_kib"], children)


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(pct / 100 * len(values) + 0.5) - 1))
    return values[k]


def _http_status(url: str, method: str = "GET", token: str = "") -> int | None:
    import urllib.error
    import urllib.request

    data = b"{}" if method == "POST" else None
    request = urllib.request.Request(url, method=method, data=data)  # noqa: S310 - loopback
    if token:
        request.add_header("Authorization", f"Token {token}")
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _scalar(sql: str) -> Any:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def _redis_version(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return client.info("server")["redis_version"]
    finally:
        client.close()


def _machine() -> dict[str, str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": f"{mem_kib / 1024 / 1024:.0f} GiB",
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def print_report(f: dict[str, Any], servers: ThrowAwayServers, elapsed: float) -> None:
    m = _machine()
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    lines = [
        "",
        "=" * 78,
        "OmniRouter benchmark",
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM, Python {m['python']}, "
        f"PostgreSQL {f.get('postgres', '?')}, Redis {f.get('redis', '?')}; commit {git}",
        f"servers: {'; '.join(f['notes'])}",
        "load average (1, 5, 15 min) before the run: "
        + ", ".join(f"{x:.2f}" for x in f["load"][0])
        + "; after: "
        + ", ".join(f"{x:.2f}" for x in f["load"][1])
        + " (this machine is shared: figures move with it)",
        "-" * 78,
    ]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    if "burst_1" in f:
        floor = f.get("floor", {}).get("rate")
        for w in (1, 2):
            b = f[f"burst_{w}"]
            lines.append(
                f"(a) burst, {w} worker(s): {b['assignments']} assignments, {b['full']}/"
                f"{b['agents']} agents full in {b['seconds'] * 1000:.0f} ms = {b['rate']:,.0f} "
                f"assignments/s (task run times: "
                f"{', '.join(f'{t * 1000:.0f} ms' for t in b['task_seconds'][:6])})"
            )
        if floor:
            ratio = f["burst_1"]["rate"] / floor
            lines.append(
                f"    floor (plain SQL, same assignments, batches of 1,000): {floor:,.0f}/s; "
                f"router / floor = {ratio:.2f} "
                f"(target >= {TARGET_RATIO}: {verdict(ratio >= TARGET_RATIO)})"
            )
    if "pass_small" in f and "pass_large" in f:
        s, big = f["pass_small"], f["pass_large"]
        growth = big["ms_per_assignment"] / s["ms_per_assignment"]
        for p in (s, big):
            lines.append(
                f"(b) one batch, {p['label']}: {p['offers']:.0f} offers, "
                f"median {p['median_s'] * 1000:.0f} ms"
                f" = {p['ms_per_assignment']:.3f} ms/assignment; {p['queries']} SQL statements"
                f" ({p['queries_per_assignment']:.3f}/assignment); events sent "
                f"{p['publish_ms']:.0f} ms after the pass returned"
            )
        lines.append(
            f"    cost per assignment {big['label']} / {s['label']} = {growth:.2f} "
            f"(target <= {TARGET_GROWTH}: {verdict(growth <= TARGET_GROWTH)})"
        )
    if "full_pass" in f:
        p = f["full_pass"]
        lines.append(
            f"    whole pass in-process: {p['offers']} offers in {p['batches']} batches, "
            f"{p['seconds'] * 1000:.0f} ms = {p['rate']:,.0f} assignments/s"
        )
    for n, lat in enumerate(f.get("latency", {}).get("runs", [])):
        how = "POST /api/work-items/" if lat["api"] else "enqueue_work() in the bench process"
        target = n == 0
        lines.append(
            f"(c) latency at {lat['rate']:.0f} items/s (achieved {lat['achieved_rate']:.0f}/s), "
            f"{how} due -> offer frame on /ws/agent/: {lat['offered']}/{lat['created']} items, "
            f"{lat['consoles']} consoles; p50 {lat['p50']:.1f} ms"
            + (f" ({verdict(lat['p50'] <= TARGET_P50_MS)})" if target else "")
            + f", p99 {lat['p99']:.1f} ms"
            + (f" ({verdict(lat['p99'] <= TARGET_P99_MS)})" if target else "")
            + f", max {lat['max']:.1f} ms"
        )
        lines.append(
            f"    POST answered (from due): p50 {lat['post_p50']:.1f} ms, p99 "
            f"{lat['post_p99']:.1f} ms; answer -> frame: p50 {lat['after_answer_p50']:.1f} ms, "
            f"p99 {lat['after_answer_p99']:.1f} ms; errors: {lat['error_count']}"
        )
    if "skills" in f:
        sk = f["skills"]
        for p in (sk["without"], sk["with"]):
            lines.append(
                f"(e) one batch, {p['label']}: {p['offers']:.0f} offers, median "
                f"{p['median_s'] * 1000:.0f} ms = {p['ms_per_assignment']:.3f} ms/assignment; "
                f"{p['queries']} SQL statements"
            )
        ratio = sk["with"]["ms_per_assignment"] / sk["without"]["ms_per_assignment"]
        cpu = sk["with"]["cpu_ms_per_assignment"] / sk["without"]["cpu_ms_per_assignment"]
        lines.append(
            f"    {sk['agent_skills']:,} agent skills, {sk['requirements']:,} requirements; "
            f"cost per assignment with / without skills = {ratio:.2f} "
            f"(target <= {TARGET_SKILLS}: {verdict(ratio <= TARGET_SKILLS)}); this process's "
            f"CPU per assignment {sk['without']['cpu_ms_per_assignment']:.3f} -> "
            f"{sk['with']['cpu_ms_per_assignment']:.3f} ms = {cpu:.2f}"
        )
    for label, peak in f.get("peaks", {}).items():
        lines.append(
            f"(d) peak RSS {label}: main process {peak['main_kib'] / 1024:.0f} MiB"
            + (
                f", largest pool child {peak['child_kib'] / 1024:.0f} MiB"
                if peak["child_kib"]
                else ""
            )
        )
    lines.append(f"total run time {elapsed:.0f} s")
    lines.append("=" * 78)
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
