"""Customer traffic for the embedded demo: new work arrives on every channel at a steady rate.

Cases, leads and social posts are enqueued through ``routing.services.enqueue_work``; messaging
traffic goes through the messaging app's inbound path
(``demo.inbound.simulate_inbound``), so conversations, customers and the bot run as for
real messages.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

from django.db import close_old_connections

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_thread: threading.Thread | None = None
_stop = threading.Event()
_state: dict[str, Any] = {"interval_seconds": 4.0, "created": 0}

FIRST = [
    "Aiko",
    "Ben",
    "Chloe",
    "Diego",
    "Emma",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kenji",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Yuki",
]
LAST = ["Sato", "Smith", "Garcia", "Müller", "Kim", "Rossi", "Nakamura", "Dubois", "Silva"]
SUBJECTS = {
    "case": [
        "Refund not received",
        "Order arrived damaged",
        "Cannot reset password",
        "Invoice shows wrong address",
        "Subscription charged twice",
    ],
    "chat": [
        "Where is my order?",
        "Question about sizes",
        "Change delivery date",
        "Promo code not working",
    ],
    "messaging": ["Delivery update please", "Is the store open Sunday?", "Wrong item received"],
    "lead": ["Enterprise plan enquiry", "Bulk order quote", "Partnership request"],
    "social": ["Complaint on social feed", "Product question in comments"],
}
QUEUE_FOR = {
    "case": "Support cases",
    "chat": "Web chat",
    "messaging": "SMS & WhatsApp",
    "lead": "Sales",
    "social": "Social care",
}
WEIGHTS = {"case": 3, "chat": 3, "messaging": 3, "lead": 1, "social": 1}


def is_running() -> bool:
    return _thread is not None and _thread.is_alive()


def status() -> dict[str, Any]:
    return {"running": is_running(), **_state}


def start(interval_seconds: float | None = None) -> None:
    global _thread
    with _lock:
        if interval_seconds:
            _state["interval_seconds"] = max(0.2, float(interval_seconds))
        if is_running():
            return
        _stop.clear()
        _thread = threading.Thread(target=_loop, name="omnirouter-simulator", daemon=True)
        _thread.start()


def stop() -> None:
    _stop.set()


def _loop() -> None:
    rng = random.Random()
    while not _stop.wait(rng.expovariate(1.0 / _state["interval_seconds"])):
        close_old_connections()
        try:
            create_one(rng)
            _state["created"] += 1
        except Exception:
            logger.exception("simulator: could not create traffic")
        finally:
            close_old_connections()


def create_one(rng: random.Random) -> None:
    """Create one piece of customer traffic on a channel picked by weight."""
    from routing import services
    from routing.models import Queue, ServiceChannel

    kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    subject = rng.choice(SUBJECTS[kind])
    if kind in ("chat", "messaging"):
        from demo.inbound import simulate_inbound

        simulate_inbound(kind, name=name, text=subject, rng=rng)
        return
    channel = ServiceChannel.objects.filter(key=kind).first()
    queue = Queue.objects.filter(name=QUEUE_FOR[kind]).first()
    if channel is None or queue is None:
        return
    escalate = kind == "case" and rng.random() < 0.1
    if escalate:
        queue = Queue.objects.filter(name="Escalations").first() or queue
    services.enqueue_work(
        queue=queue,
        channel=channel,
        subject=subject,
        priority=rng.choice([2, 5, 5, 5, 8]),
        payload={"customer": {"name": name}, "source": "simulator"},
    )
