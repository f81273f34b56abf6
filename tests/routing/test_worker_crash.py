"""A routing worker killed with SIGKILL in the middle of a pass loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from django.db import connection

from routing import services
from routing.models import AgentWork, WorkItem
from tests.factories import (
    PresenceConfigurationFactory,
    QueueFactory,
    ServiceChannelFactory,
    make_agent,
    make_status,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

REPO = Path(__file__).resolve().parents[2]

# Runs the routing task's body in a separate process; after the offers are written (inside the
# batch transaction, before commit) it reports and waits to be killed.
WORKER = textwrap.dedent(
    """
    import os, sys, time
    import django
    django.setup()
    from routing import tasks
    from routing.services import offers

    original = offers.write_offers

    def write_then_hang(*args, **kwargs):
        original(*args, **kwargs)
        print("OFFERS-WRITTEN", flush=True)
        time.sleep(600)

    offers.write_offers = write_then_hang
    tasks.route.run()
    """
)


def test_sigkill_mid_pass_rolls_back_and_next_pass_finishes(settings, tmp_path):
    settings.ROUTING_MODE = "manual"
    chat = ServiceChannelFactory(key="chat")
    status = make_status("Available", [chat])
    queue = QueueFactory(name="support")
    config = PresenceConfigurationFactory(name="api", capacity=5, console_required=False)
    agents = [make_agent(f"a{n}", queues=[queue], config=config, status=status) for n in range(3)]
    for n in range(20):
        services.enqueue_work(queue=queue, channel=chat, subject=f"i{n}")

    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "omnirouter.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "ROUTING_MODE": "manual",
        "PYTHONPATH": str(REPO),
    }
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    worker = subprocess.Popen(
        [sys.executable, str(script)], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline and "OFFERS-WRITTEN" not in line:
            line = worker.stdout.readline()
        assert "OFFERS-WRITTEN" in line, "the worker never reached the middle of its pass"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()

    # The killed pass left the database exactly as before it.
    assert AgentWork.objects.count() == 0
    assert WorkItem.objects.filter(status="waiting").count() == 20
    assert all(a.used_capacity == 0 for a in type(agents[0]).objects.all())

    # The next pass (the sweep, or any event) finishes the job; nothing is stuck behind a lock.
    result = services.sweep()

    assert result["offers"] == 15
    assert WorkItem.objects.filter(status="offered").count() == 15
    assert AgentWork.objects.filter(state="pushed").count() == 15
