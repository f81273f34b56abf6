"""Skills, agents' skills, decline reasons, queue and channel names, and the token endpoint."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from omnirouter import roles
from presence.models import DeclineReason
from routing.models import ActionLog, AgentSkill, Skill
from routing.services.skills import need, require_skills
from tests.api_support import PASSWORD, client_for, make_supervisor, make_user
from tests.factories import enqueue, make_agent


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(world, api_config):
    alice = make_agent("alice", queues=[world.support], config=api_config, status=world.available)
    vic = make_agent("vic", queues=[world.vip], config=api_config, status=world.available)
    return {
        "alice": alice,
        "vic": vic,
        "admin": make_user("root", superuser=True),
        "intake": make_user("crm", group=roles.INTAKE),
        "sam": make_supervisor("sam", world.support),
    }


# --- Skills -------------------------------------------------------------------------------------


def test_an_admin_creates_a_skill_and_every_role_reads_it(people):
    admin = client_for(people["admin"])
    created = admin.post(
        "/api/skills/",
        {"name": "Japanese", "attribute": "language", "value": "ja"},
        format="json",
    )
    assert created.status_code == 201, created.content
    skill_id = created.json()["id"]

    for reader in ("alice", "intake", "sam"):
        user = people[reader].user if reader == "alice" else people[reader]
        listed = client_for(user).get("/api/skills/")
        assert listed.status_code == 200
        assert [s["name"] for s in listed.json()["results"]] == ["Japanese"]
    refused = client_for(people["alice"].user).post("/api/skills/", {"name": "X"}, format="json")
    assert refused.status_code == 403
    assert Skill.objects.filter(pk=skill_id).count() == 1


def test_a_skill_with_an_attribute_needs_a_value(people):
    response = client_for(people["admin"]).post(
        "/api/skills/", {"name": "Japanese", "attribute": "language"}, format="json"
    )
    assert response.status_code == 400
    assert not Skill.objects.exists()


def test_deleting_a_skill_in_use_answers_409_naming_what_uses_it(people, world):
    skill = Skill.objects.create(name="Japanese")
    AgentSkill.objects.create(agent=people["alice"], skill=skill, level=5)
    item = enqueue(world.support, world.chat, "こんにちは")
    require_skills(item, [need(skill.pk, 3)])

    response = client_for(people["admin"]).delete(f"/api/skills/{skill.pk}/")

    assert response.status_code == 409
    assert response.json() == {
        "detail": "Japanese cannot be deleted: it is used by 1 agent skill, 1 required skill.",
        "code": "in_use",
    }
    assert Skill.objects.filter(pk=skill.pk).exists()


def test_an_unused_skill_is_deleted(people):
    skill = Skill.objects.create(name="French")
    assert client_for(people["admin"]).delete(f"/api/skills/{skill.pk}/").status_code == 204
    assert not Skill.objects.exists()


# --- Agents' skills -----------------------------------------------------------------------------


def test_a_supervisor_gives_an_agent_of_their_queue_a_skill_and_it_is_logged(people):
    skill = Skill.objects.create(name="Japanese")
    sam = client_for(people["sam"])

    created = sam.post(
        "/api/agent-skills/",
        {"agent": people["alice"].pk, "skill": skill.pk, "level": "7.5"},
        format="json",
    )
    assert created.status_code == 201, created.content
    row_id = created.json()["id"]
    assert created.json() == {
        "id": row_id,
        "agent": people["alice"].pk,
        "skill": skill.pk,
        "skill_name": "Japanese",
        "level": "7.50",
    }
    changed = sam.patch(f"/api/agent-skills/{row_id}/", {"level": 9}, format="json")
    assert changed.status_code == 200
    assert changed.json()["level"] == "9.00"

    log = list(ActionLog.objects.order_by("id").values_list("verb", "actor__username", "detail"))
    assert log == [
        (
            "set_agent_skill",
            "sam",
            {"skill": skill.pk, "skill_name": "Japanese", "was": None, "level": "7.50"},
        ),
        (
            "set_agent_skill",
            "sam",
            {"skill": skill.pk, "skill_name": "Japanese", "was": "7.50", "level": "9.00"},
        ),
    ]


@pytest.mark.parametrize(
    ("level", "message"),
    [
        ("100", "Ensure this value is less than or equal to 99.99."),
        ("-1", "Ensure this value is greater than or equal to 0."),
        ("1.234", "Ensure that there are no more than 2 decimal places."),
        ("many", "A valid number is required."),
    ],
)
def test_a_level_outside_0_to_99_99_is_refused_with_400(people, level, message):
    skill = Skill.objects.create(name="Japanese")
    response = client_for(people["admin"]).post(
        "/api/agent-skills/",
        {"agent": people["alice"].pk, "skill": skill.pk, "level": level},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"level": [message]}
    assert not AgentSkill.objects.exists()
    assert not ActionLog.objects.exists()


def test_a_second_row_for_the_same_skill_is_refused(people):
    skill = Skill.objects.create(name="Japanese")
    AgentSkill.objects.create(agent=people["alice"], skill=skill, level=5)
    response = client_for(people["admin"]).post(
        "/api/agent-skills/",
        {"agent": people["alice"].pk, "skill": skill.pk, "level": 6},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "duplicate"
    assert list(AgentSkill.objects.values_list("level", flat=True)) == [5]


def test_supervisors_see_and_change_only_their_queues_agents(people):
    skill = Skill.objects.create(name="Japanese")
    vics = AgentSkill.objects.create(agent=people["vic"], skill=skill, level=5)
    AgentSkill.objects.create(agent=people["alice"], skill=skill, level=4)
    sam = client_for(people["sam"])

    listed = sam.get("/api/agent-skills/")
    assert [r["agent"] for r in listed.json()["results"]] == [people["alice"].pk]
    assert sam.patch(f"/api/agent-skills/{vics.pk}/", {"level": 1}).status_code == 404
    assert sam.delete(f"/api/agent-skills/{vics.pk}/").status_code == 404
    outside = sam.post(
        "/api/agent-skills/",
        {"agent": people["vic"].pk, "skill": skill.pk, "level": 1},
        format="json",
    )
    assert outside.status_code == 404
    assert AgentSkill.objects.get(pk=vics.pk).level == 5


def test_an_agent_reads_their_own_skills_only_and_changes_none(people):
    skill = Skill.objects.create(name="Japanese")
    own = AgentSkill.objects.create(agent=people["alice"], skill=skill, level=4)
    AgentSkill.objects.create(agent=people["vic"], skill=skill, level=5)
    alice = client_for(people["alice"].user)

    assert [r["id"] for r in alice.get("/api/agent-skills/").json()["results"]] == [own.pk]
    assert alice.patch(f"/api/agent-skills/{own.pk}/", {"level": 99}).status_code == 403


def test_removing_a_skill_is_logged(people):
    skill = Skill.objects.create(name="Japanese")
    row = AgentSkill.objects.create(agent=people["alice"], skill=skill, level=4)
    assert client_for(people["sam"]).delete(f"/api/agent-skills/{row.pk}/").status_code == 204
    assert not AgentSkill.objects.exists()
    assert list(ActionLog.objects.values_list("verb", "actor__username", "agent_id")) == [
        ("remove_agent_skill", "sam", people["alice"].pk)
    ]


# --- Decline reasons ----------------------------------------------------------------------------


def test_decline_reasons_are_read_by_agents_and_changed_by_admins(people, api_config):
    admin = client_for(people["admin"])
    created = admin.post("/api/decline-reasons/", {"label": "On a call"}, format="json")
    assert created.status_code == 201
    reason = DeclineReason.objects.get()
    alice = client_for(people["alice"].user)
    assert [r["label"] for r in alice.get("/api/decline-reasons/").json()["results"]] == [
        "On a call"
    ]
    assert alice.delete(f"/api/decline-reasons/{reason.pk}/").status_code == 403

    api_config.decline_reasons.add(reason)
    in_use = admin.delete(f"/api/decline-reasons/{reason.pk}/")
    assert in_use.status_code == 409
    assert in_use.json()["detail"] == (
        "On a call cannot be deleted: it is used by presence configuration api agents."
    )
    assert admin.patch(
        f"/api/decline-reasons/{reason.pk}/", {"active": False}, format="json"
    ).json() == {"id": reason.pk, "label": "On a call", "active": False}


# --- Queue and channel names for intake clients and agents --------------------------------------


def test_an_intake_client_reads_queue_and_channel_names_only(people, world):
    intake = client_for(people["intake"])

    queues = intake.get("/api/queues/")
    channels = intake.get("/api/channels/")
    one = intake.get(f"/api/queues/{world.support.pk}/")

    assert queues.status_code == 200
    assert queues.json()["results"] == [
        {"id": world.support.pk, "name": "Support"},
        {"id": world.vip.pk, "name": "VIP"},
    ]
    assert channels.json()["results"] == [
        {"id": world.case.pk, "key": "case", "label": "Case"},
        {"id": world.chat.pk, "key": "chat", "label": "Chat"},
    ]
    assert one.json() == {"id": world.support.pk, "name": "Support"}
    assert intake.post("/api/queues/", {"name": "Mine"}, format="json").status_code == 403
    # admins still see members and supervisors
    full = client_for(people["admin"]).get(f"/api/queues/{world.support.pk}/").json()
    assert full["members"] == [people["alice"].pk]


# --- Token --------------------------------------------------------------------------------------


def test_a_username_and_password_get_the_users_token(people):
    client = APIClient()
    first = client.post(
        "/api/auth/token/", {"username": "crm", "password": PASSWORD}, format="json"
    )
    again = client.post(
        "/api/auth/token/", {"username": "crm", "password": PASSWORD}, format="json"
    )

    assert first.status_code == 200
    token = Token.objects.get(user=people["intake"])
    assert first.json() == {"token": token.key, "user_id": people["intake"].pk, "username": "crm"}
    assert again.json()["token"] == token.key
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/queues/").status_code == 200


def test_a_wrong_password_gets_401_and_missing_fields_400(people):
    client = APIClient()
    wrong = client.post("/api/auth/token/", {"username": "crm", "password": "x"}, format="json")
    missing = client.post("/api/auth/token/", {"username": "crm"}, format="json")

    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "Wrong username or password.", "code": "invalid_credentials"}
    assert missing.status_code == 400
    assert missing.json() == {"password": ["This field is required."]}
    assert not Token.objects.exists()


def test_wrong_passwords_lock_the_token_endpoint_like_the_login(people, settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.LOGIN_LOCKOUT_MINUTES = 15
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    client = APIClient()
    answers = [
        client.post(
            "/api/auth/token/", {"username": "crm", "password": f"guess-{n}"}, format="json"
        ).status_code
        for n in range(3)
    ]
    right = client.post(
        "/api/auth/token/", {"username": "crm", "password": PASSWORD}, format="json"
    )

    assert answers == [401, 401, 429]
    assert right.status_code == 429
    assert right["Retry-After"] == str(15 * 60)
    assert right.json() == {
        "detail": "Too many failed logins. Try again in 15 minutes.",
        "code": "locked_out",
    }
    assert not Token.objects.exists()
    assert get_user_model().objects.filter(username="crm").exists()
