"""The dashboard page: who may open it, and that it carries its first snapshot."""

from __future__ import annotations

import json

from django.test import Client

from routing import services
from tests.factories import make_agent


def test_anonymous_is_sent_to_log_in(center, client):
    response = client.get("/supervisor/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_an_agent_is_refused(center):
    agent = make_agent("ann", queues=[center.chat_queue], config=center.api_agents)
    client = Client()
    client.force_login(agent.user)

    assert client.get("/supervisor/").status_code == 403


def test_supervisor_page_has_the_first_snapshot_and_translated_words(center, supervisor):
    services.enqueue_work(queue=center.chat_queue, channel=center.chat, subject="Refund")
    client = Client()
    client.force_login(supervisor)

    english = client.get("/supervisor/")
    japanese = client.get("/supervisor/", HTTP_ACCEPT_LANGUAGE="ja")

    assert english.status_code == 200
    assert [q["name"] for q in english.context["snapshot"]["queues"]] == ["Cases", "Chat"]
    embedded = english.content.decode().split('id="sv-snapshot" type="application/json">')[1]
    assert json.loads(embedded.split("</script>")[0])["totals"]["waiting"] == 1
    assert b"Supervisor dashboard" in english.content
    assert "スーパーバイザー ダッシュボード" in japanese.content.decode()
    assert "本日のサービスレベル" in japanese.content.decode()
