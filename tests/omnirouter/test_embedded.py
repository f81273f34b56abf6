"""The embedded loop: Celery beat's schedule and routing passes from one loop, tested a turn at a
time with the loop's clock as an argument (no threads, no sleeps)."""

from __future__ import annotations

import ast
import math
from collections import Counter
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from omnirouter import embedded, wakeup
from routing import services as routing
from supervisor.models import QueueSample
from tests.factories import (
    PresenceConfigurationFactory,
    QueueFactory,
    ServiceChannelFactory,
    make_agent,
    make_status,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def quiet_wakeup():
    wakeup.wait(0)  # nothing left over from another test
    yield
    wakeup.wait(0)


def test_loop_runs_each_beat_job_at_its_interval(db, settings):
    # given Celery beat's schedule, the one definition of what runs periodically
    settings.ROUTING_MODE = "manual"
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert {entry["task"] for entry in schedule.values()} >= {
        "routing.sweep",
        "messaging.maintenance",
        "supervisor.sample_queues",
    }
    loop = embedded.Loop(schedule, now=1000.0)

    # when the loop turns every half second for two minutes of its clock
    runs: Counter[str] = Counter()
    for step in range(241):
        runs.update(loop.tick(1000.0 + step * 0.5))

    # then each job ran once at start and then once per interval, and the due sends every turn
    expected = {
        name: math.floor(120 / embedded.interval_seconds(entry["schedule"])) + 1
        for name, entry in schedule.items()
    }
    assert {name: runs[name] for name in schedule} == expected
    assert runs[embedded.SENDS] == 241
    assert runs[embedded.ROUTE] == 0  # nobody woke it for a pass


def test_jobs_missed_while_busy_are_not_made_up(db, settings):
    settings.ROUTING_MODE = "manual"
    loop = embedded.Loop({"sample": {"task": "supervisor.sample_queues", "schedule": 60}}, now=0)
    assert loop.tick(0.0) == ["sample", embedded.SENDS]

    assert loop.tick(59.0) == [embedded.SENDS]
    assert loop.tick(250.0) == ["sample", embedded.SENDS]  # once, not three times
    assert loop.next_due() == 310.0
    assert loop.tick(309.0) == [embedded.SENDS]
    assert loop.tick(310.0) == ["sample", embedded.SENDS]


def test_scheduled_job_does_its_work(db, settings):
    settings.ROUTING_MODE = "manual"
    queue = QueueFactory(name="Sales")
    loop = embedded.Loop({"sample": {"task": "supervisor.sample_queues", "schedule": 60}}, now=0)

    loop.tick(0.0)

    assert list(QueueSample.objects.values_list("queue_id", flat=True)) == [queue.pk]


def test_an_event_wakes_the_loop_for_a_routing_pass(
    db, settings, django_capture_on_commit_callbacks
):
    # given an embedded run whose scheduled jobs all ran at start
    settings.ROUTING_MODE = "embedded"
    loop = embedded.Loop(settings.CELERY_BEAT_SCHEDULE, now=0.0)
    loop.tick(0.0)
    channel = ServiceChannelFactory(key="chat")
    queue = QueueFactory(name="Chat")
    agent = make_agent(
        "alice",
        queues=[queue],
        config=PresenceConfigurationFactory(capacity=5, console_required=False),
        status=make_status("Available", [channel]),
    )
    wakeup.wait(0)

    # when an item arrives (its commit wakes the loop)
    with django_capture_on_commit_callbacks(execute=True):
        routing.enqueue_work(queue=queue, channel=channel, subject="Hello")
    woken = wakeup.wait(0)

    # then the next turn, before any sweep is due, offers it
    assert wakeup.ROUTING in woken
    assert embedded.ROUTE in loop.tick(0.1, woken)
    assert list(agent.works.values_list("item__subject", "state")) == [("Hello", "pushed")]


def test_a_sweep_in_the_same_turn_stands_for_the_woken_pass(db, settings):
    settings.ROUTING_MODE = "manual"
    loop = embedded.Loop({"sweep": {"task": "routing.sweep", "schedule": 1.0}}, now=0.0)

    assert loop.tick(0.0, frozenset({wakeup.ROUTING})) == ["sweep", embedded.SENDS]
    assert loop.tick(0.5, frozenset({wakeup.ROUTING})) == [embedded.ROUTE, embedded.SENDS]


def test_schedules_without_a_fixed_interval_are_refused():
    from celery.schedules import crontab

    with pytest.raises(ImproperlyConfigured, match="fixed interval"):
        embedded.interval_seconds(crontab(minute="*/5"))
    with pytest.raises(ImproperlyConfigured, match="unknown task"):
        embedded.Loop({"x": {"task": "no.such.task", "schedule": 5}}, now=0)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("module", ["routing/dispatch.py", "messaging/dispatch.py"])
def test_dispatch_imports_neither_tasks_nor_the_loop(module):
    imported = _imports(REPO / module)
    app = module.split("/")[0]
    assert not imported & {f"{app}.tasks", "omnirouter.embedded", f"{app}.services"}
    assert not any(name.endswith(("runner", ".tasks")) for name in imported)


def _module_graph(apps: tuple[str, ...]) -> dict[str, set[str]]:
    """Every import (module level or inside a function: both run) between the apps' modules,
    with each package of modules (``routing.services``) taken as one module."""
    files = {
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): path
        for app in apps
        for path in (REPO / app).rglob("*.py")
        if "migrations" not in path.parts
    }

    def node(name: str) -> str:
        for package in ("routing.services",):
            if name == package or name.startswith(package + "."):
                return package
        return name

    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = {node(t) for t in _imports(path) if t in files}
        graph.setdefault(node(name), set()).update(targets - {node(name)})
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    seen: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return path[path.index(name) :] + [name]
        if name in seen:
            return None
        seen.add(name)
        for target in sorted(graph.get(name, ())):
            if found := visit(target, [*path, name]):
                return found
        return None

    for start in sorted(graph):
        if found := visit(start, []):
            return found
    return None


def test_no_import_cycle_between_services_dispatch_tasks_and_the_loop():
    graph = _module_graph(("routing", "messaging", "supervisor", "presence", "omnirouter", "demo"))
    assert {"routing.runner", "messaging.runner"}.isdisjoint(graph)
    assert graph["routing.services"] >= {"routing.dispatch"}
    assert _cycle(graph) is None
