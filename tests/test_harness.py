"""The test harness's own tests: the real processes and the browser the other suites rely on."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import pytest

from tests.harness import REPO_ROOT, save_screenshot


@pytest.mark.worker
def test_live_asgi_server_serves_the_admin_login_page(live_asgi_server):
    # given a daphne process on the test database
    # when the admin login page is requested over real HTTP
    with urllib.request.urlopen(f"{live_asgi_server}/admin/login/", timeout=10) as response:  # noqa: S310
        body = response.read().decode()

    # then Django answers it
    assert response.status == 200
    assert 'name="username"' in body


@pytest.mark.worker
def test_celery_worker_answers_over_the_broker(celery_worker_process):
    from omnirouter.celery import app

    # given a worker process subscribed to the Redis broker
    # when it is pinged through the broker
    replies = app.control.ping(destination=[celery_worker_process.nodename], timeout=5)
    stats = app.control.inspect(destination=[celery_worker_process.nodename], timeout=5).stats()

    # then exactly that worker answers, with the pool and queues production uses
    assert replies == [{celery_worker_process.nodename: {"ok": "pong"}}]
    assert stats[celery_worker_process.nodename]["pool"]["max-concurrency"] == 2
    active_queues = app.control.inspect(
        destination=[celery_worker_process.nodename], timeout=5
    ).active_queues()
    assert sorted(q["name"] for q in active_queues[celery_worker_process.nodename]) == [
        "default",
        "routing",
    ]


@pytest.mark.browser
@pytest.mark.worker
def test_browser_loads_the_admin_login_page(live_asgi_server, page_factory):
    # given a browser page pointed at the live server
    page = page_factory(base_url=live_asgi_server)

    # when it opens the admin login page
    response = page.goto("/admin/login/")

    # then the form is there, and a screenshot is saved for people to look at
    assert response is not None
    assert response.status == 200
    assert page.locator('input[name="username"]').is_visible()
    path = save_screenshot(page, "harness-admin-login")
    assert path.is_file()
    assert path.stat().st_size > 0


def test_embedded_sqlite_mode_migrates_and_checks(tmp_path):
    # given the environment of the embedded run: no Redis, a SQLite file
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "REDIS_URL",
            "CELERY_BROKER_URL",
            "CHANNEL_LAYER_REDIS_URL",
            "ROUTING_MODE",
        }
    }
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'embedded.sqlite3'}"

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    # when it migrates and checks
    migrate = manage("migrate", "--noinput")
    check = manage("check")

    # then both succeed and the database file exists
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert check.returncode == 0, check.stdout + check.stderr
    assert (tmp_path / "embedded.sqlite3").is_file()
