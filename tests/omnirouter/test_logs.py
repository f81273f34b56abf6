"""``LOG_FORMAT=json``: one JSON object per line from a real process with our settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.harness import REPO_ROOT

_SCRIPT = """
import logging
log = logging.getLogger("omnirouter.test")
log.warning("queue %s is late", "Support", extra={"queue_id": 7})
try:
    1 / 0
except ZeroDivisionError:
    log.exception("pass failed")
"""


def _run(**env: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", _SCRIPT],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line for line in result.stderr.splitlines() if "omnirouter.test" in line]


def test_json_lines_with_the_standard_fields():
    first, second = (json.loads(line) for line in _run(LOG_FORMAT="json")[:2])

    assert {k: first[k] for k in ("level", "logger", "message", "queue_id")} == {
        "level": "WARNING",
        "logger": "omnirouter.test",
        "message": "queue Support is late",
        "queue_id": 7,
    }
    assert first["time"].endswith("+00:00")
    assert {"module", "function", "line", "process", "thread"} <= set(first)
    assert second["message"] == "pass failed"
    assert second["exception"].splitlines()[-1] == "ZeroDivisionError: division by zero"


def test_plain_lines_by_default():
    lines = _run(LOG_FORMAT="plain")

    assert " WARNING omnirouter.test: queue Support is late" in lines[0]
