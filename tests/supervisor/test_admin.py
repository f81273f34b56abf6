"""The trend samples in the admin: listed and viewable, never editable by hand."""

from __future__ import annotations

from datetime import UTC, datetime

from django.test import Client

from supervisor.models import QueueSample
from supervisor.services import record_queue_samples


def test_samples_are_listed_and_read_only(center, admin_user):
    record_queue_samples(now=datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    sample = QueueSample.objects.get(queue=center.chat_queue)
    client = Client()
    client.force_login(admin_user)

    listing = client.get("/admin/supervisor/queuesample/")
    detail = client.get(f"/admin/supervisor/queuesample/{sample.pk}/change/")
    add = client.get("/admin/supervisor/queuesample/add/")

    assert listing.status_code == 200
    assert b"Chat" in listing.content
    assert detail.status_code == 200
    assert b'name="waiting"' not in detail.content  # shown, not an input
    assert add.status_code == 403
