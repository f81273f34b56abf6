"""Assistance: training and activation, signed models, predictions and their API, suggestions,
feedback, evaluation, and customers left out of learning. Trained on a few hundred generated
items (a couple of seconds each)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import call_command

from assist import blob, history, predict, prefill, selectors, services, tasks
from assist.models import (
    AssistConfiguration,
    ExcludedCustomer,
    Feedback,
    ModelVersion,
    Prediction,
    VersionStatus,
)
from messaging.models import Case
from routing import services as routing
from routing.models import ActionLog, ClassificationRule, Queue, ServiceChannel
from tests.api_support import client_for, make_supervisor, make_user
from tests.factories import PresenceConfigurationFactory, QueueFactory, make_agent, make_status

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HISTORY = 300


@pytest.fixture
def fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def past(db, fast):
    history.seed_history(HISTORY, now=NOW)
    return Queue.objects.get(name=history.BILLING)


@pytest.fixture
def live(past):
    """A new billing chat offered to Alice, a member of Billing."""
    chat = ServiceChannel.objects.get(key="chat")
    alice = make_agent(
        "alice",
        queues=[past],
        config=PresenceConfigurationFactory(capacity=5, console_required=False),
        status=make_status("Available", [chat]),
    )
    item = routing.enqueue_work(
        queue=past,
        channel=chat,
        subject="I was charged twice for order ORD-555123, please refund $40",
    )
    routing.route_waiting_work()
    return item, alice


def test_training_records_an_active_version_with_held_out_metrics(past):
    # when a first version is trained on the history
    version = services.train_version(now=NOW)

    # then it is active (nothing to beat), measured on the newest 20 %
    assert (version.status, version.is_active) == (VersionStatus.ACTIVE, True)
    assert (version.train_size, version.holdout_size) == (240, 60)
    queue = version.metrics["targets"]["queue"]
    assert queue["model"]["macro_f1"] > queue["majority"]["macro_f1"]
    assert queue["model"]["macro_f1"] > queue["rules"]["macro_f1"]
    assert 0 <= queue["ece"] <= 1
    assert set(version.targets) == {"queue", "priority"}
    assert version.blob_bytes == len(bytes(version.blob)) > 0
    assert ActionLog.objects.filter(verb="assist_activate_trained").count() == 1


def test_a_version_that_does_not_beat_the_active_one_is_recorded_not_activated(past):
    first = services.train_version(now=NOW)

    # when the same items train again (the same score on the same hold-out)
    second = services.train_version(now=NOW)

    # then the first stays active; the second is kept with the reason
    first.refresh_from_db()
    assert (first.is_active, second.is_active) == (True, False)
    assert second.status == VersionStatus.CANDIDATE
    assert (
        second.metrics["active_version_macro_f1"]
        == (first.metrics["targets"]["queue"]["model"]["macro_f1"])
    )
    assert "Kept the active version" in second.decision

    # and an admin may still activate it, then roll back, each logged with who
    admin = make_user("root", superuser=True)
    services.activate_version(version_id=second.pk, by=admin, now=NOW)
    assert ModelVersion.objects.get(is_active=True) == second
    assert services.roll_back(by=admin, now=NOW) == first
    assert ModelVersion.objects.get(is_active=True) == first
    assert list(
        ActionLog.objects.filter(verb="assist_activate").values_list("actor__username", flat=True)
    ) == ["root", "root"]


def test_too_few_closed_items_records_a_failed_version_and_the_task_skips(db):
    assert services.train_version(now=NOW).status == VersionStatus.FAILED
    tasks.retrain()
    tasks.retrain()  # twice: still nothing to train on
    assert ModelVersion.objects.count() == 1


def test_a_tampered_model_is_refused_and_never_loaded(past, live):
    item, _ = live
    version = services.train_version(now=NOW)
    data = bytearray(bytes(version.blob))
    data[len(data) // 2] ^= 0xFF
    ModelVersion.objects.filter(pk=version.pk).update(blob=bytes(data))

    with pytest.raises(blob.BlobRefused, match="signature does not match"):
        blob.load(bytes(data), version.blob_hmac)
    # The signature matches, but the bytes are not a model we wrote.
    with pytest.raises(blob.BlobRefused, match="cannot be read"):
        blob.load(b"not a model", blob.sign(b"not a model"))

    # the signature is kept, so the cache is keyed by it: make this process load it afresh
    ModelVersion.objects.filter(pk=version.pk).update(blob_hmac=blob.sign(b"x"))
    answer = predict.predict(item)
    assert answer["available"] is False
    assert "signature does not match" in answer["reason"]
    assert predict.classify_for_rules({"subject": "refund please"}) is None


def test_no_model_the_api_answers_unavailable_and_writes_nothing(live):
    item, alice = live
    response = client_for(alice.user).get(f"/api/work-items/{item.pk}/prediction/")
    assert response.status_code == 200
    body = response.json()
    assert body["available"] is False
    assert body["reason"] == "No model has been trained and activated yet."
    # prefill still reads the first messages
    assert body["prefill"]["order_number"] == "ORD-555123"
    assert Prediction.objects.count() == 0
    suggestions = client_for(alice.user).get(f"/api/work-items/{item.pk}/suggestions/")
    assert suggestions.json()["available"] is False


def test_prediction_api_explains_and_is_scoped(live):
    item, alice = live
    services.train_version(now=NOW)
    other_queue = QueueFactory(name="Elsewhere")
    outsider_agent = make_agent("bob", queues=[other_queue])
    users = {
        "holder": alice.user,
        "supervisor": make_supervisor("sam", item.queue),
        "admin": make_user("root", superuser=True),
        "other agent": outsider_agent.user,
        "other supervisor": make_supervisor("sue", other_queue),
    }
    codes = {
        name: client_for(user).get(f"/api/work-items/{item.pk}/prediction/").status_code
        for name, user in users.items()
    }
    assert codes == {
        "holder": 200,
        "supervisor": 200,
        "admin": 200,
        "other agent": 404,
        "other supervisor": 404,
    }

    body = client_for(alice.user).get(f"/api/work-items/{item.pk}/prediction/").json()
    guess = body["predictions"]["queue"]
    assert guess["label"] == history.BILLING
    assert 0 < guess["confidence"] <= 1
    assert guess["top_terms"]
    assert all(weight > 0 for _, weight in guess["top_terms"])
    assert body["prefill"]["category"] == history.BILLING
    # stored once per item, version and target, however often it is asked
    assert Prediction.objects.filter(item=item).count() == 2


def test_suggestions_are_similar_resolved_items_with_personal_data_masked(live):
    item, alice = live
    services.train_version(now=NOW)

    body = client_for(alice.user).get(f"/api/work-items/{item.pk}/suggestions/").json()

    assert body["available"] is True
    assert len(body["suggestions"]) == 3
    first = body["suggestions"][0]
    assert first["disposition"] == "refund"
    assert "@" not in "".join(s["resolution"] + s["subject"] for s in body["suggestions"])


def test_feedback_is_stored_and_a_correction_needs_its_value(live):
    item, alice = live
    services.train_version(now=NOW)
    client = client_for(alice.user)
    prediction = client.get(f"/api/work-items/{item.pk}/prediction/").json()
    prediction_id = prediction["predictions"]["queue"]["id"]

    refused = client.post(
        f"/api/work-items/{item.pk}/assist-feedback/",
        {"field": "queue", "kind": "corrected", "prediction": prediction_id},
        format="json",
    )
    assert refused.status_code == 400
    assert Feedback.objects.count() == 0

    ok = client.post(
        f"/api/work-items/{item.pk}/assist-feedback/",
        {
            "field": "queue",
            "kind": "corrected",
            "prediction": prediction_id,
            "suggested_value": history.BILLING,
            "corrected_value": history.ORDERS,
        },
        format="json",
    )
    assert ok.status_code == 201
    feedback = Feedback.objects.get()
    assert (feedback.agent, feedback.kind, feedback.corrected_value) == (
        alice,
        "corrected",
        history.ORDERS,
    )


def test_train_api_is_for_admins_and_does_not_train_in_the_request(past):
    response = client_for(make_user("root", superuser=True)).post("/api/assist/train/")
    assert response.status_code == 202
    assert response.json() == {"started": False}  # manual mode: no worker in tests
    assert ModelVersion.objects.count() == 0


def test_an_excluded_customers_items_are_left_out_of_the_next_training(past):
    case = Case.objects.order_by("id").first()
    assert case is not None
    assert case.work_item_id is not None
    before = {d.item_id for d in selectors.training_docs(since=None, until=NOW, limit=10_000)}
    assert case.work_item_id in before

    services.exclude_customer(customer_id=case.customer_id, now=NOW)
    services.exclude_customer(customer_id=case.customer_id, now=NOW)  # idempotent

    after = {d.item_id for d in selectors.training_docs(since=None, until=NOW, limit=10_000)}
    assert before - after == {case.work_item_id}
    assert ExcludedCustomer.objects.count() == 1


def test_evaluate_prints_the_figures(past, capsys):
    call_command("assist_evaluate", threshold=0.8)
    out = capsys.readouterr().out
    assert "trained on the oldest 240, held out the newest 60" in out
    for line in (
        "[queue] 4 labels",
        "majority:",
        "rules:",
        "expected calibration error:",
        "coverage at confidence >= 0.80:",
        "[nearest resolved item]",
        "same disposition:",
    ):
        assert line in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Order ORD-123456 never came, mail me at kim@example.com or +81 90-1234-5678",
            {
                "order_number": "ORD-123456",
                "email": "kim@example.com",
                "phone": "+81 90-1234-5678",
                "language": "en",
            },
        ),
        (
            "注文#765432のPulse Earbudsが届きません",
            {"order_number": "#765432", "product": "Pulse Earbuds", "language": "ja"},
        ),
        ("", {}),
    ],
)
def test_prefill_reads_order_numbers_contacts_products_and_language(text, expected):
    assert prefill.extract(text, catalogue=["Pulse Earbuds", "Nimbus Cam"]) == expected


def test_the_fast_path_computes_what_scikit_learn_computes(past):
    # predictions compute probabilities and the TF-IDF row directly (a tenth of the time for
    # one item): they must equal the library's own answers
    import numpy as np

    services.train_version(now=NOW)
    fitted = predict._current().fitted
    assert fitted is not None
    text = "注文ORD-123456の返金がまだ届いていません"
    row = predict._vectorize(fitted, text)
    assert (row != fitted["vectorizer"].transform([text])).nnz == 0
    for model in fitted["models"].values():
        assert np.allclose(predict._probabilities(model, row), model.predict_proba(row)[0])


def test_the_rules_hook_costs_two_queries_with_or_without_a_model(past, django_assert_num_queries):
    fields = {"subject": "Refund not received yet for ORD-123456", "channel": "case"}
    with django_assert_num_queries(2):  # the active version's key, the settings row
        assert predict.classify_for_rules(fields) is None

    services.train_version(now=NOW)
    config = AssistConfiguration.objects.create(confidence_threshold=Decimal("0.99"))
    predict.classify_for_rules(fields)  # loads the model once
    with django_assert_num_queries(2):
        unsure = predict.classify_for_rules(fields)
    assert unsure is None  # below the admin's threshold: the rules decide

    config.confidence_threshold = Decimal("0.30")
    config.save()
    guess = predict.classify_for_rules(fields)
    assert guess is not None
    assert (guess.target, guess.label) == ("queue", history.BILLING)
    assert guess.confidence >= 0.30
    assert guess.top_terms


def test_admin_lists_versions_with_metrics_and_activates_one(past, client):
    first = services.train_version(now=NOW)
    second = services.train_version(now=NOW)
    admin = make_user("root", superuser=True)
    client.force_login(admin)

    listing = client.get("/admin/assist/modelversion/")
    assert listing.status_code == 200
    assert str(first.metrics["targets"]["queue"]["model"]["macro_f1"]) in listing.text

    response = client.post(
        "/admin/assist/modelversion/",
        {"action": "activate", "_selected_action": [second.pk]},
    )
    assert response.status_code == 302
    second.refresh_from_db()
    assert second.is_active
    assert second.activated_by == admin


def test_feedback_on_an_unknown_suggested_item_is_refused(live):
    item, alice = live
    response = client_for(alice.user).post(
        f"/api/work-items/{item.pk}/assist-feedback/",
        {"field": "suggestion", "kind": "used", "suggested_item": 987654},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "No such suggested item."
    assert Feedback.objects.count() == 0


def test_masking_catches_addresses_cut_short_and_numbers():
    assert prefill.redact("Change my email to suer8367@example... or call +81 90-1234-5678") == (
        "Change my email to [e-mail] or call [phone]"
    )
    assert prefill.redact("Refund for ORD-123456 and #654321") == "Refund for [order] and [order]"


def test_a_classification_rule_routes_on_the_models_guess_and_the_item_history_shows_it(past):
    # given a rule "if the model says Billing, route to Billing with priority 2", and an item
    # arriving in another queue
    technical = Queue.objects.get(name=history.TECHNICAL)
    case = ServiceChannel.objects.get(key="case")
    routing.save_classification_rule(
        rule=ClassificationRule(),
        changes={
            "name": "Model says billing",
            "position": 1,
            "conditions": [{"field": "model.queue", "op": "eq", "value": history.BILLING}],
            "actions": {"queue": past.pk, "priority": 2},
        },
    )
    subject = "I was charged twice, please refund the duplicate payment on my card"

    # when there is no trained model, intake works as without assistance: the rule never matches
    untouched = routing.enqueue_work(queue=technical, channel=case, subject=subject)
    assert (untouched.queue_id, untouched.priority) == (technical.pk, 5)

    # when a model is trained and sure enough
    services.train_version(now=NOW)
    AssistConfiguration.objects.create(confidence_threshold=Decimal("0.30"))
    item = routing.enqueue_work(queue=technical, channel=case, subject=subject)

    # then the rule moved it, and the item's history says why, with the model's confidence and
    # the words that weighed most
    item.refresh_from_db()
    assert (item.queue_id, item.priority) == (past.pk, 2)
    entry = ActionLog.objects.get(item=item, verb="classified")
    assert entry.detail["rules"][0]["name"] == "Model says billing"
    assert entry.detail["model"]["queue"] == history.BILLING
    assert 0.30 <= entry.detail["model"]["confidence"] <= 1
    assert entry.detail["model"]["terms"]

    # and an unsure model (threshold above its confidence) leaves the decision to the rules
    AssistConfiguration.objects.update(confidence_threshold=Decimal("0.999"))
    unsure = routing.enqueue_work(queue=technical, channel=case, subject=subject)
    assert unsure.queue_id == technical.pk
