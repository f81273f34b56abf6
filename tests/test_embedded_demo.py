"""Smoke test of the README's run command: the embedded product on SQLite, in one process.

Starts ``manage.py rundemo --simulate`` with no DATABASE_URL / REDIS_URL (SQLite, in-memory
channel layer, routing thread in-process), logs in as a demo agent with the printed password, goes
available over the console socket and takes an offer the simulator created.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests
import websockets

from tests.harness import REPO_ROOT, free_port


@pytest.fixture
def demo_server(tmp_path):
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "ROUTING_MODE", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    env.update(OMNIROUTER_VAR_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1")
    log = (tmp_path / "demo.log").open("w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "rundemo",
            f"127.0.0.1:{port}",
            "--simulate",
            "--interval",
            "0.3",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"rundemo exited:\n{(tmp_path / 'demo.log').read_text()}"
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.3)
        else:
            pytest.fail("rundemo did not answer within 120 s")
        yield base, (tmp_path / "demo.log").read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def _login(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=10)
    r = session.post(
        f"{base}/accounts/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=10,
    )
    assert r.status_code == 200
    assert "sessionid" in session.cookies, "login failed"
    return session


async def _take_an_offer(base: str, session: requests.Session) -> dict:
    ws_url = base.replace("http://", "ws://") + "/ws/agent/"
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    async with websockets.connect(
        ws_url, additional_headers={"Cookie": cookie, "Origin": base}
    ) as ws:
        state = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert state["type"] == "state"
        everything = next(s for s in state["statuses"] if s["name"] == "Available - All")
        await ws.send(json.dumps({"type": "status", "status": everything["id"], "ref": 1}))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if frame["type"] == "offer":
                offer = frame["payload"]
                await ws.send(json.dumps({"type": "accept", "work_id": offer["id"], "ref": 2}))
                while True:
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if reply.get("ref") == 2:
                        return {"offer": offer, "reply": reply}
        raise AssertionError("no offer reached the agent within 30 s")


def test_run_command_serves_demo_and_routes_simulated_traffic(demo_server):
    base, startup_log = demo_server
    # Ready with what this run has: its SQLite database (no Redis, no Celery worker)
    ready = requests.get(f"{base}/readyz", headers={"Accept": "text/plain"}, timeout=10)
    assert (ready.status_code, ready.text) == (200, "Database(alias='default'): OK\n")
    logins = dict(
        re.findall(
            r"^\s+(\w+)\s+(\S+)\s+(?:agent|admin|supervisor|intake)$", startup_log, re.MULTILINE
        )
    )
    assert set(logins) >= {"alice", "bob", "carol", "dave", "admin", "supervisor"}

    assert requests.get(f"{base}/admin/login/", timeout=10).status_code == 200
    assert requests.get(f"{base}/api/schema/", timeout=10).status_code == 200

    alice = _login(base, "alice", logins["alice"])
    result = asyncio.run(_take_an_offer(base, alice))

    assert result["reply"]["type"] == "ack", result["reply"]
    work = alice.get(f"{base}/api/me/work/", timeout=10).json()
    rows = work["results"] if isinstance(work, dict) else work
    accepted = [w for w in rows if w["id"] == result["offer"]["id"]]
    assert [w["state"] for w in accepted] == ["opened"]
