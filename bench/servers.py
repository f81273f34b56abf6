"""Throw-away PostgreSQL and Redis for the benchmark, and the processes it measures.

Like ``./dev test``: the servers named by DATABASE_URL / REDIS_URL are used when set; otherwise
fresh ones are started from the installed binaries on free ports in a temp dir and removed at
exit. Server subprocesses (Celery workers, daphne) run in their own process group and die with
the benchmark (PR_SET_PDEATHSIG), so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_tcp(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.1)
    return False


def _die_with_parent() -> None:
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class ThrowAwayServers:
    """PostgreSQL and Redis for one benchmark run (ours, or the ones in the environment)."""

    database_url: str = ""
    redis_url: str = ""
    postgres_version: str = ""
    redis_version: str = ""
    _tmp: str = ""
    _pg_bin: str = ""
    _pg_data: str = ""
    _pg_user: str = ""
    _redis: subprocess.Popen | None = None
    _redis_args: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def start(self) -> None:
        self._tmp = tempfile.mkdtemp(prefix="omnirouter-bench.")
        # The database server runs as another user (postgres) and must reach its directory.
        os.chmod(self._tmp, 0o755)  # noqa: S103
        self.database_url = os.environ.get("DATABASE_URL", "")
        self.redis_url = os.environ.get("REDIS_URL", "")
        if not self.database_url:
            self._start_postgres()
        else:
            self.notes.append("PostgreSQL from DATABASE_URL")
        if not self.redis_url:
            self._start_redis()
        else:
            self.notes.append("Redis from REDIS_URL")

    def stop(self) -> None:
        if self._pg_data and os.path.exists(os.path.join(self._pg_data, "postmaster.pid")):
            self._as_db_user(
                [f"{self._pg_bin}/pg_ctl", "-D", self._pg_data, "-m", "immediate", "-w", "stop"],
                check=False,
            )
        if self._redis is not None and self._redis.poll() is None:
            self._redis.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._redis.wait(10)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    # --- PostgreSQL -------------------------------------------------------------------------

    def _as_db_user(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
        preexec = None
        if self._pg_user:
            entry = pwd.getpwnam(self._pg_user)

            def preexec() -> None:  # initdb and postgres refuse to run as root
                os.setgid(entry.pw_gid)
                os.setuid(entry.pw_uid)

        return subprocess.run(
            args, preexec_fn=preexec, check=check, capture_output=True, text=True, timeout=120
        )

    def _start_postgres(self) -> None:
        candidates = sorted(
            glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2])
        )
        if not candidates:
            sys.exit("bench: PostgreSQL is not installed (apt-get install -y postgresql)")
        self._pg_bin = candidates[-1]
        pg_dir = os.path.join(self._tmp, "pg")
        os.mkdir(pg_dir)
        if os.getuid() == 0:
            try:
                pwd.getpwnam("postgres")
                self._pg_user = "postgres"
            except KeyError:
                self._pg_user = "nobody"
            shutil.chown(pg_dir, self._pg_user)
        self._pg_data = os.path.join(pg_dir, "data")
        self._as_db_user(
            [
                f"{self._pg_bin}/initdb",
                "-D",
                self._pg_data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        port = free_port()
        # Same settings as ./dev test: durability is pointless for a database deleted at exit.
        # The plain-SQL floor runs on the same server, so the ratio compares like with like.
        opts = (
            f"-p {port} -k {pg_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
            "-c shared_buffers=256MB"
        )
        self._as_db_user(
            [
                f"{self._pg_bin}/pg_ctl",
                "-D",
                self._pg_data,
                "-l",
                os.path.join(pg_dir, "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                opts,
                "start",
            ]
        )
        self.database_url = f"postgres://postgres@127.0.0.1:{port}/omnirouter_bench"
        self._as_db_user(
            [
                f"{self._pg_bin}/createdb",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "omnirouter_bench",
            ]
        )
        self.notes.append(
            "throw-away PostgreSQL (fsync=off, synchronous_commit=off, shared_buffers=256MB)"
        )

    # --- Redis ------------------------------------------------------------------------------

    def _start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("bench: redis-server is not installed (apt-get install -y redis-server)")
        port = free_port()
        self._redis_args = [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
            "--dir",
            self._tmp,
        ]
        self._spawn_redis(port)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.notes.append("throw-away Redis")

    def _spawn_redis(self, port: int) -> None:
        log = open(os.path.join(self._tmp, "redis.log"), "ab")  # noqa: SIM115 - lives with it
        self._redis = subprocess.Popen(
            self._redis_args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        if not _wait_tcp(port, 20):
            sys.exit("bench: Redis did not start")

    # --- Faults (bench/faults.py): only on the servers started here -------------------------

    def restart_postgres(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut, the server comes back on the
        same port with the same options."""
        if not self._pg_data:
            raise RuntimeError("PostgreSQL was not started here: will not restart it")
        # The log file again: without it the server would write to our pipe and keep it open.
        log = os.path.join(os.path.dirname(self._pg_data), "server.log")
        self._as_db_user(
            [f"{self._pg_bin}/pg_ctl", "-D", self._pg_data, "-l", log, "-m", "fast", "-w"]
            + ["-t", "60", "restart"]
        )

    def restart_redis(self) -> None:
        """Stop Redis (SIGTERM) and start it again on the same port, empty (no persistence)."""
        if self._redis is None:
            raise RuntimeError("Redis was not started here: will not restart it")
        self._redis.terminate()
        self._redis.wait(10)
        self._spawn_redis(int(self._redis_args[self._redis_args.index("--port") + 1]))


@dataclass
class Proc:
    """A measured server process (Celery worker or daphne) with its log."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    @classmethod
    def start(cls, name: str, args: Sequence[str], env: dict[str, str], log_dir: str) -> Proc:
        log_path = Path(log_dir) / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(args),
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return cls(name, popen, log_path)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited before {what}:\n{self.log_text()[-3000:]}")
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: no {what} after {timeout}s:\n{self.log_text()[-3000:]}")

    def pids(self) -> list[int]:
        """The process and its descendants (a prefork worker's pool children)."""
        found = [self.popen.pid]
        frontier = [self.popen.pid]
        while frontier:
            parent = frontier.pop()
            with contextlib.suppress(OSError):
                for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
                    found.append(int(child))
                    frontier.append(int(child))
        return found

    def peak_rss_kib(self) -> dict[int, int]:
        """VmHWM (peak resident set) of the process and each descendant, in KiB."""
        peaks = {}
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peaks[pid] = int(line.split()[1])
        return peaks

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
