"""Shared fixtures. Sections, in order:

1. Session guards: the suite runs on PostgreSQL; the core routing tests also run on SQLite
   (the ORM branch of the embedded run), except those marked ``postgres_only``.
2. Redis isolation: a clean broker and channel layer for every session.
3. Real processes: Celery worker, Celery beat, ASGI server (daphne), on the test database.
4. Browser: Playwright driving the system Chromium, screenshots in test-artifacts/.
5. Domain fixtures and factories (add yours below, in their own section).

Run the suite with ``./dev test``: it provides DATABASE_URL and REDIS_URL (throw-away servers
unless you set your own).
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.harness import (
    CHROMIUM_ARGS,
    CHROMIUM_PATH,
    REPO_ROOT,
    ServiceProcess,
    database_url_for,
    free_port,
    python_module_command,
    save_screenshot,
)

# =============================================================================================
# 1. Session guards
# =============================================================================================


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    config.addinivalue_line(
        "markers",
        "postgres_only: needs PostgreSQL (row locks, several connections); not in the SQLite pass",
    )

    # Real PBKDF2 hashes, each computed once per process (see tests/hashers.py): password
    # hashing was most of the setup time of tests that make a few users. Set before anything
    # hashes, so Django's cached hasher list is built from this.
    settings.PASSWORD_HASHERS = [
        "tests.hashers.MemoizedPBKDF2PasswordHasher",
        *(h for h in settings.PASSWORD_HASHERS if not h.endswith(".PBKDF2PasswordHasher")),
    ]

    _flush_only_what_tests_wrote()

    # WhiteNoise looks for STATIC_ROOT when the app loads; servers under test fill it with
    # collectstatic, in-process tests only need it to exist.
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)

    engine = settings.DATABASES["default"]["ENGINE"]
    if engine not in (POSTGRESQL, SQLITE):
        raise pytest.UsageError(
            "OmniRouter's tests run on PostgreSQL (and the core routing tests also on SQLite), "
            f"but DATABASE_URL={os.environ.get('DATABASE_URL', '<unset>')!r} selects {engine}.\n"
            "Run them with `./dev test [pytest args]`: it starts throw-away PostgreSQL and Redis "
            "servers, or uses yours if DATABASE_URL (postgres://...) and REDIS_URL are set."
        )


POSTGRESQL = "django.db.backends.postgresql"
SQLITE = "django.db.backends.sqlite3"

# Written by migrate (post_migrate) and never by a test: kept by the flush below.
_MIGRATE_TABLES = ("django_content_type", "auth_permission")


def _flush_only_what_tests_wrote() -> None:
    """After a transactional test (``transactional_db``, live servers), empty only the tables it
    wrote to, on PostgreSQL.

    Django's flush truncates every table and then re-runs post_migrate to recreate the content
    types and permissions it just deleted: about a second per test here. Deleting the rows of the
    non-empty tables in one transaction (foreign keys are deferred, so in any order) leaves the
    same database in a few milliseconds: empty but for what migrate wrote. Should a test have
    changed content types or permissions after all, the full flush runs instead and restores them.
    """
    from django.db import connections
    from django.test import TransactionTestCase

    django_setup = TransactionTestCase.__dict__["_fixture_setup"]  # a classmethod
    django_flush = TransactionTestCase._fixture_teardown
    migrated: dict[str, tuple] = {}  # alias -> what _MIGRATE_TABLES held before the test

    def fixture_setup(cls: type[TransactionTestCase]) -> None:
        for name in cls._databases_names(include_mirrors=False):  # type: ignore[attr-defined]
            if connections[name].vendor == "postgresql" and name not in migrated:
                migrated[name] = _migrate_tables_state(connections[name])
        django_setup.__func__(cls)

    def fixture_teardown(self: TransactionTestCase) -> None:
        names = self._databases_names(include_mirrors=False)  # type: ignore[attr-defined]
        fast = (
            self.available_apps is None
            and not self.serialized_rollback
            and all(name in migrated for name in names)
            and all(_delete_written_rows(connections[name], migrated[name]) for name in names)
        )
        if not fast:
            django_flush(self)
            migrated.clear()  # post_migrate wrote them anew

    TransactionTestCase._fixture_setup = classmethod(fixture_setup)  # type: ignore[method-assign,assignment]
    TransactionTestCase._fixture_teardown = fixture_teardown  # type: ignore[method-assign]


def _migrate_tables_state(connection) -> tuple:
    quote = connection.ops.quote_name
    counts = (f"(SELECT (count(*), max(id)) FROM {quote(t)})::text" for t in _MIGRATE_TABLES)  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(counts))
        return tuple(cursor.fetchone())


def _delete_written_rows(connection, migrated: tuple) -> bool:
    """Delete every row outside _MIGRATE_TABLES; False (nothing deleted) if those changed."""
    from django.db import transaction

    if _migrate_tables_state(connection) != migrated:
        return False
    quote = connection.ops.quote_name
    tables = [
        t
        for t in connection.introspection.django_table_names(
            only_existing=True, include_views=False
        )
        if t not in _MIGRATE_TABLES
    ]
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        probes = (f"EXISTS (SELECT 1 FROM {quote(t)})" for t in tables)  # noqa: S608
        cursor.execute("SELECT " + ", ".join(probes))
        written = [t for t, has_rows in zip(tables, cursor.fetchone(), strict=True) if has_rows]
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        for table in written:
            cursor.execute(f"DELETE FROM {quote(table)}")  # noqa: S608 - Django table names
    return True


_phase_reports = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # Fixtures cannot see the test's outcome; keep each phase's report on the item so that
    # page_factory can take a screenshot of a failed browser test before closing its pages.
    report = yield
    item.stash.setdefault(_phase_reports, {})[report.when] = report
    return report


def _test_failed(item: pytest.Item) -> bool:
    reports = item.stash.get(_phase_reports, {})
    return any(r.failed for r in reports.values())


def _require_redis() -> str:
    from django.conf import settings

    if not settings.REDIS_URL:
        pytest.fail("REDIS_URL is not set: run the tests with `./dev test`.", pytrace=False)
    return settings.REDIS_URL


# =============================================================================================
# 2. Redis isolation
# =============================================================================================


@pytest.fixture(scope="session", autouse=True)
def _fresh_redis() -> None:
    """Empty the broker and channel-layer databases once per session, so a run never sees queued
    tasks or channel messages left over by an earlier (perhaps killed) run.

    settings derive both from REDIS_URL (broker db 0, channel layer db 1) unless
    CELERY_BROKER_URL / CHANNEL_LAYER_REDIS_URL are set: on a Redis shared with other runs, point
    those at databases of your own, or let ./dev test start a private Redis.
    """
    from django.conf import settings

    if not settings.REDIS_URL:
        return
    import redis

    urls = {settings.CELERY_BROKER_URL}
    urls.update(
        host
        for host in settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
        if isinstance(host, str)
    )
    for url in sorted(u for u in urls if u.startswith(("redis://", "rediss://", "unix://"))):
        client = redis.Redis.from_url(url, socket_connect_timeout=5)
        try:
            client.flushdb()
        except redis.ConnectionError as exc:
            pytest.fail(f"Redis at {url} is unreachable ({exc}); run `./dev test`.", pytrace=False)
        finally:
            client.close()


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Rate-limit counters and throttle histories live in the cache: every test starts with
    none, so one test's requests never count against the next."""
    from django.core.cache import cache

    cache.clear()


# =============================================================================================
# 3. Real processes on the test database
# =============================================================================================
# Each process gets the environment of production mode: DATABASE_URL naming pytest-django's test
# database (test_<name>), the same REDIS_URL, ROUTING_MODE=celery. They share nothing with the
# test process but PostgreSQL and Redis, so a test using them must commit its data: the public
# fixtures below request `transactional_db` for that reason. The processes themselves live for the
# session (startup costs seconds), so a task enqueued by one test may still run in the next one.


# The servers' console grace period and heartbeat interval (production: 30 s and 10 s). The test
# process keeps the production values: its own tests pass explicit clocks against them.
SERVER_CONSOLE_GRACE_SECONDS = 10
SERVER_CONSOLE_HEARTBEAT_SECONDS = 2


@pytest.fixture(scope="session")
def service_env(django_db_setup) -> dict[str, str]:
    """Environment for server subprocesses: this session's test database and Redis."""
    from django.db import connection

    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for(connection.settings_dict["NAME"]),
        REDIS_URL=_require_redis(),
        ROUTING_MODE="celery",
        DJANGO_SETTINGS_MODULE="omnirouter.settings",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
        # A console lost for this long goes offline: short, so that a test of the grace period
        # waits seconds, not the production half minute; heartbeats keep the same ratio.
        CONSOLE_GRACE_SECONDS=str(SERVER_CONSOLE_GRACE_SECONDS),
        CONSOLE_HEARTBEAT_SECONDS=str(SERVER_CONSOLE_HEARTBEAT_SECONDS),
    )
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


@pytest.fixture(scope="session")
def _celery_worker_session(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    from omnirouter.celery import app

    nodename = f"harness-{os.getpid()}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    worker = ServiceProcess.start(
        f"celery worker {nodename}",
        python_module_command(
            "celery",
            "-A",
            "omnirouter",
            "worker",
            "-Q",
            "routing,default",
            "--concurrency",
            "2",
            "--pool",
            "prefork",
            "-l",
            "info",
            "-n",
            nodename,
            # Gossip and mingle sync state with other workers on the broker: nothing to sync
            # with in a test run, and they slow startup by seconds.
            "--without-gossip",
            "--without-mingle",
        ),
        env=service_env,
        log_path=tmp_path_factory.mktemp("celery-worker") / "worker.log",
    )
    try:
        worker.wait_until(lambda: " ready." in worker.log_text(), timeout=60, what="'ready' log")
        # Ready in the log is not yet subscribed to its control queue; wait for a ping answer.
        worker.wait_until(
            lambda: bool(app.control.ping(destination=[nodename], timeout=0.5)),
            timeout=30,
            what="answer to a control ping",
        )
        worker.nodename = nodename
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def celery_worker_process(
    transactional_db, _celery_worker_session: ServiceProcess
) -> ServiceProcess:
    """A real ``celery -A omnirouter worker -Q routing,default --concurrency 2 --pool prefork``
    on the test database (started once per session). Attributes: ``nodename`` (for
    ``app.control.ping(destination=[...])``), ``log_path``, ``log_text()``, ``popen``."""
    if _celery_worker_session.popen.poll() is not None:
        pytest.fail(f"the celery worker died:\n{_celery_worker_session.tail()}", pytrace=False)
    return _celery_worker_session


@pytest.fixture
def celery_beat_process(
    celery_worker_process: ServiceProcess, service_env: dict[str, str], tmp_path: Path
) -> Iterator[ServiceProcess]:
    """``celery -A omnirouter beat`` sending ``routing.sweep`` every second, with the worker.

    Started per test (it is cheap) so that other tests never see sweeps they did not ask for.
    """
    beat = ServiceProcess.start(
        "celery beat",
        python_module_command(
            "celery",
            "-A",
            "omnirouter",
            "beat",
            "-l",
            "info",
            "--schedule",
            str(tmp_path / "beat-schedule"),
            "--pidfile",
            str(tmp_path / "beat.pid"),
        ),
        env=service_env,
        log_path=tmp_path / "beat.log",
    )
    try:
        beat.wait_until(
            lambda: "beat: Starting..." in beat.log_text(), timeout=30, what="'Starting' log"
        )
        yield beat
    finally:
        beat.stop()


def _answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own http:// URL
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP status means the server is up
    except OSError:
        return False


def _collect_static(env: dict[str, str]) -> None:
    # Production serves static files through WhiteNoise from STATIC_ROOT, which it scans once at
    # startup: collect them first, or pages load without their CSS and JavaScript. The lock keeps
    # concurrent runs in one working tree from copying over each other.

    lock_path = REPO_ROOT / "var" / ".collectstatic.lock"
    lock_path.parent.mkdir(exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(
            python_module_command("django", "collectstatic", "--noinput", "-v", "0"),
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    if result.returncode != 0:
        pytest.fail(f"collectstatic failed:\n{result.stdout}{result.stderr}", pytrace=False)


class LiveServerURL(str):
    """The live server's base URL (``http://127.0.0.1:PORT``, no trailing slash); also has
    ``ws_url`` (``ws://127.0.0.1:PORT``) and ``process`` (its ServiceProcess, with the log)."""

    ws_url: str
    process: ServiceProcess


@pytest.fixture(scope="session")
def _asgi_server_session(
    _celery_worker_session: ServiceProcess,
    service_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServerURL]:
    _collect_static(service_env)
    port = free_port()
    server = ServiceProcess.start(
        "daphne",
        python_module_command(
            "daphne", "-b", "127.0.0.1", "-p", str(port), "omnirouter.asgi:application"
        ),
        env=service_env,
        log_path=tmp_path_factory.mktemp("daphne") / "daphne.log",
    )
    url = LiveServerURL(f"http://127.0.0.1:{port}")
    url.ws_url = f"ws://127.0.0.1:{port}"
    url.process = server
    try:
        server.wait_until(
            lambda: _answers_http(url + "/admin/login/"), timeout=60, what="HTTP answer"
        )
        yield url
    finally:
        server.stop()


@pytest.fixture
def live_asgi_server(
    transactional_db, celery_worker_process: ServiceProcess, _asgi_server_session: LiveServerURL
) -> LiveServerURL:
    """A real ``daphne omnirouter.asgi:application`` (HTTP + WebSockets, channels-redis) on the
    test database, with the Celery worker that routes for it. Started once per session."""
    if _asgi_server_session.process.popen.poll() is not None:
        pytest.fail(f"daphne died:\n{_asgi_server_session.process.tail()}", pytrace=False)
    return _asgi_server_session


# =============================================================================================
# 4. Browser
# =============================================================================================


def _browser_unavailable(reason: str) -> None:
    message = f"BROWSER TEST NOT RUN: {reason} (install it: apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch):
    """A headless Chromium (Playwright sync API) for one test.

    Per test, not per session: while Playwright is running, its event loop counts as running in
    this thread, which breaks Django's sync ORM checks and ``async_to_sync`` for every later test.
    Set data up before requesting pages where you can.
    """
    if not os.access(CHROMIUM_PATH, os.X_OK):
        _browser_unavailable(f"no Chromium executable at {CHROMIUM_PATH}")
    from playwright.sync_api import sync_playwright

    # The ORM refuses to run where an event loop runs; Playwright's is idle while the test runs.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page_factory(browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., object]]:
    """``page_factory(**context_options) -> Page``: a page in a fresh browser context (own
    cookies), e.g. ``page_factory(base_url=live_asgi_server)``. When the test fails, every page
    is saved to ``test-artifacts/<test>-failed-<n>.png``."""
    contexts = []
    pages = []

    def make_page(**context_options):
        # Playwright evaluates wait_for_function's string predicates with eval, which the pages'
        # Content-Security-Policy forbids; tests that check the policy pass bypass_csp=False.
        context_options.setdefault("bypass_csp", True)
        context = browser.new_context(**context_options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        pages.append(page)
        return page

    yield make_page

    if _test_failed(request.node):
        for n, page in enumerate(pages):
            try:
                path = save_screenshot(page, f"{request.node.name}-failed-{n}")
                print(f"screenshot of the failed test: {path}")
            except Exception as exc:  # a broken page must not hide the test's own failure
                print(f"could not save a screenshot of page {n}: {exc}")
    for context in contexts:
        context.close()


@pytest.fixture
def page(page_factory):
    """One page in a fresh context; see ``page_factory``."""
    return page_factory()


# =============================================================================================
# 5. Domain fixtures and factories
# =============================================================================================


@pytest.fixture(autouse=True)
def _routing_in_test_process_is_manual(settings):
    """In the test process, events do not queue Celery passes: the session's worker would route
    other tests' committed data behind their backs. Tests run passes themselves; real routing
    runs in the server and worker subprocesses, which have ROUTING_MODE=celery."""
    settings.ROUTING_MODE = "manual"


@pytest.fixture
def published(settings, django_capture_on_commit_callbacks):
    """``with published() as events: <call a service>``: afterwards ``events`` holds the
    (group, event type) of everything the call published, in order, as its after-commit
    callbacks delivered it to a real (in-memory) channel layer. A refused call leaves it empty:
    its transaction rolled back, and its callbacks with it."""
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "tests.events.RecordingChannelLayer"}}
    layer = get_channel_layer()

    @contextmanager
    def capture() -> Iterator[list[tuple[str, str]]]:
        events: list[tuple[str, str]] = []
        layer.sent.clear()
        with django_capture_on_commit_callbacks(execute=True):
            yield events
        events.extend(layer.sent)

    return capture
