"""Helpers behind the fixtures in ``tests/conftest.py``: real server processes and screenshots.

Kept out of conftest.py so tests can import them (``from tests.harness import save_screenshot``);
pytest discourages importing from conftest modules.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1: several test runs share this machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url_for(database_name: str) -> str:
    """DATABASE_URL with its database replaced: pytest-django runs on ``test_<name>``, and
    processes we start must see the same database as the test, not the one in the environment."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return parts._replace(path="/" + database_name).geturl()


def _die_with_parent() -> None:
    # If pytest is killed outright, fixture teardown never runs; PR_SET_PDEATHSIG makes the
    # kernel send SIGTERM to the server so it does not outlive the run (and the throw-away Redis).
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError):  # not glibc: no safety net, teardown still stops it
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def wait_for(check: Callable[[], Any], *, timeout: float = 30, what: str) -> Any:
    """Poll ``check`` until it returns something true, and return that; fail after ``timeout``
    seconds saying ``what`` never happened. For what other processes do (a worker, a browser):
    code in this process takes ``now`` instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class ServiceProcess:
    """A server subprocess started by a fixture, with its combined output in ``log_path``."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    nodename: str = ""  # Celery workers: the name to ping

    @classmethod
    def start(cls, name: str, args: Sequence[str], *, env: dict[str, str], log_path: Path):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(args),
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own process group: teardown can stop the server and all its children
                # (prefork pool) without touching anything else on the machine.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return cls(name=name, popen=popen, log_path=log_path)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Poll ``ready`` until it is true; fail the test with the server's log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                pytest.fail(
                    f"{self.name} exited with code {self.popen.returncode} before {what}."
                    f"\n--- {self.log_path} ---\n{self.tail()}",
                    pytrace=False,
                )
            if ready():
                return
            time.sleep(0.2)
        pytest.fail(
            f"{self.name}: no {what} after {timeout:.0f}s.\n--- {self.log_path} ---\n{self.tail()}",
            pytrace=False,
        )

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL for the whole process group if it hangs."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        # Also kills pool children orphaned by a main process that died first.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(5)


def python_module_command(module: str, *args: str) -> list[str]:
    """Run a tool as ``python -m`` from this interpreter: the venv's, with the repo on sys.path."""
    return [sys.executable, "-m", module, *args]


def save_screenshot(page, name: str) -> Path:
    """Save a full-page PNG of ``page`` as ``test-artifacts/<name>.png`` and return its path."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "screenshot"
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    path = ARTIFACTS_DIR / f"{safe}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass
class RedisServer:
    """A ``redis-server`` of the test's own on a free port, without persistence: ``stop()`` is an
    outage (SIGKILL, data lost, as a crashed Redis without an append-only file); ``start()``
    brings it back on the same port."""

    port: int
    workdir: Path
    popen: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        import shutil

        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.popen = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        pytest.fail(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)


def start_daphne(env: dict[str, str], log_path: Path) -> tuple[ServiceProcess, str]:
    """``daphne omnirouter.asgi:application`` on a free port with ``env``; returns it and its
    base URL once it answers HTTP."""
    import urllib.error
    import urllib.request

    port = free_port()
    server = ServiceProcess.start(
        "daphne",
        python_module_command(
            "daphne", "-b", "127.0.0.1", "-p", str(port), "omnirouter.asgi:application"
        ),
        env=env,
        log_path=log_path,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):  # noqa: S310 - ours
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    server.wait_until(answers, timeout=60, what="HTTP answer")
    return server, url


def start_celery_worker(env: dict[str, str], log_path: Path) -> ServiceProcess:
    """A ``celery -A omnirouter worker -Q routing,default`` (solo pool) with ``env``, once its
    log says it is ready."""
    worker = ServiceProcess.start(
        "celery worker",
        python_module_command(
            "celery",
            "-A",
            "omnirouter",
            "worker",
            "-Q",
            "routing,default",
            "--pool",
            "solo",
            "-l",
            "info",
            "-n",
            f"outage-{os.getpid()}@{socket.gethostname()}",
            "--without-gossip",
            "--without-mingle",
        ),
        env=env,
        log_path=log_path,
    )
    worker.wait_until(lambda: " ready." in worker.log_text(), timeout=60, what="'ready' log")
    return worker
