"""Demo data for the embedded run: channels, queues, routing, presence, agents and staff users.

Idempotent: running it twice changes nothing. Passwords are generated on first run, kept in
``var/demo-credentials.json`` (not in the repository) and printed on every start.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from rest_framework.authtoken.models import Token

from assist import history
from messaging.models import ChannelAccount
from omnirouter import roles
from presence.models import Agent, DeclineReason, PresenceConfiguration, PresenceStatus
from presence.services import create_agent
from routing.models import Queue, RoutingConfiguration, ServiceChannel

CHANNELS = [
    ("case", "Case", 2),
    ("chat", "Web chat", 1),
    ("messaging", "Messaging", 1),
    ("lead", "Lead", 1),
    ("social", "Social post", 1),
]
CONFIGS = [
    # name, routing priority, model, size units, size percent, push timeout
    ("Urgent escalations", 1, "least_active", 3, None, 30),
    ("Live chat", 2, "most_available", None, 20, 30),
    ("Messaging", 2, "most_available", 1, None, 45),
    ("Cases", 3, "least_active", None, None, 60),
    ("Sales leads", 4, "least_active", 1, None, 60),
]
QUEUES = [
    ("Escalations", "Urgent escalations"),
    ("Web chat", "Live chat"),
    ("SMS & WhatsApp", "Messaging"),
    ("Support cases", "Cases"),
    ("Sales", "Sales leads"),
    ("Social care", "Cases"),
]
STATUSES = [
    ("Available - All", True, ["case", "chat", "messaging", "lead", "social"]),
    ("Available - Chat & Messaging", True, ["chat", "messaging"]),
    ("Available - Cases", True, ["case", "social", "lead"]),
    ("Busy", True, []),
    ("Offline", False, []),
]
AGENTS = [
    # username, first, last, presence config, queues
    ("alice", "Alice", "Martin", "Messaging team", ["Web chat", "SMS & WhatsApp", "Escalations"]),
    ("bob", "Bob", "Tanaka", "Messaging team", ["Web chat", "SMS & WhatsApp", "Social care"]),
    (
        "carol",
        "Carol",
        "Ito",
        "Case team",
        ["Support cases", "Escalations", "Social care", "Sales"],
    ),
    ("dave", "Dave", "Okafor", "Case team", ["Support cases", "Sales", "Web chat"]),
]
STAFF = [
    ("admin", "admin"),
    ("supervisor", roles.SUPERVISOR),
    ("intake", roles.INTAKE),
]


def credentials_path() -> Path:
    return Path(settings.VAR_DIR) / "demo-credentials.json"


def _credentials() -> dict[str, str]:
    path = credentials_path()
    if path.exists():
        return json.loads(path.read_text())
    creds = {name: secrets.token_urlsafe(9) for name, *_ in AGENTS}
    creds.update({name: secrets.token_urlsafe(9) for name, _ in STAFF})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(creds, indent=2))
    path.chmod(0o600)
    return creds


@transaction.atomic
def seed_demo() -> dict[str, Any]:
    """Create the demo world if it is not there; return the logins to print."""
    creds = _credentials()
    channels = {}
    for key, label, size in CHANNELS:
        channels[key], _ = ServiceChannel.objects.get_or_create(
            key=key, defaults={"label": label, "default_size_units": size}
        )
    configs = {}
    for name, prio, model, units, percent, timeout in CONFIGS:
        configs[name], _ = RoutingConfiguration.objects.get_or_create(
            name=name,
            defaults={
                "routing_priority": prio,
                "routing_model": model,
                "size_units": units,
                "size_percent": percent,
                "push_timeout_seconds": timeout,
            },
        )
    queues = {}
    for name, config in QUEUES:
        queues[name], _ = Queue.objects.get_or_create(
            name=name, defaults={"routing_config": configs[config]}
        )
    statuses = {}
    for name, online, keys in STATUSES:
        status, created = PresenceStatus.objects.get_or_create(
            name=name, defaults={"is_online": online}
        )
        if created:
            status.channels.set([channels[k] for k in keys])
        statuses[name] = status
    reasons = [
        DeclineReason.objects.get_or_create(label=label)[0]
        for label in ("Not my expertise", "Wrapping up other work", "Language")
    ]
    messaging_team, created = PresenceConfiguration.objects.get_or_create(
        name="Messaging team", defaults={"capacity": 10, "allow_decline": True}
    )
    if created:
        messaging_team.allowed_statuses.set(
            [
                statuses["Available - All"],
                statuses["Available - Chat & Messaging"],
                statuses["Busy"],
                statuses["Offline"],
            ]
        )
    case_team, created = PresenceConfiguration.objects.get_or_create(
        name="Case team",
        defaults={
            "capacity": 6,
            "allow_decline": True,
            "require_decline_reason": True,
            "status_after_timeout": statuses["Busy"],
        },
    )
    if created:
        case_team.decline_reasons.set(reasons)
    teams = {"Messaging team": messaging_team, "Case team": case_team}

    user_model = get_user_model()
    for username, first, last, team, queue_names in AGENTS:
        if not Agent.objects.filter(user__username=username).exists():
            create_agent(
                username=username,
                password=creds[username],
                presence_config=teams[team],
                queues=[queues[q] for q in queue_names],
                first_name=first,
                last_name=last,
            )
    for username, role in STAFF:
        user = user_model.objects.filter(username=username).first()
        if user is None:
            if role == "admin":
                user = user_model.objects.create_superuser(username, "", creds[username])
            else:
                user = user_model.objects.create_user(username, "", creds[username])
                user.groups.add(Group.objects.get_or_create(name=role)[0])
        if role == roles.SUPERVISOR:
            for queue in queues.values():
                queue.supervisors.add(user)
    intake_token, _ = Token.objects.get_or_create(user=user_model.objects.get(username="intake"))
    return {
        "logins": [(u, creds[u], "agent") for u, *_ in AGENTS]
        + [(u, creds[u], role) for u, role in STAFF],
        "intake_token": intake_token.key,
    }


def seed_history(count: int = 1000) -> int:
    """Closed past work for assistance to learn from (``assist.history``), once: the embedded
    loop's first retraining then gives the console its suggestions. Returns the items written."""
    if ChannelAccount.objects.filter(name="History web chat").exists():
        return 0
    return history.seed_history(count)
