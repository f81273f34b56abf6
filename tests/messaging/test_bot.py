"""The pre-chat bot: questions before handoff, answers in the work item, topic picks the queue."""

from __future__ import annotations

from django.utils import translation

from messaging import bot, services
from messaging.models import Conversation
from tests.messaging.conftest import BOT_FLOW


def _say(world, text, sender="+15551230001"):
    services.receive_inbound(account=world.sms, sender=sender, text=text)
    return Conversation.objects.get(identity__value=sender)


def _bot_lines(conversation):
    return list(conversation.messages.filter(author="bot").values_list("text", flat=True))


def test_bot_asks_its_questions_then_hands_off_with_the_answers(world):
    # given an SMS account with the pre-chat flow
    world.sms.bot_flow = BOT_FLOW
    world.sms.save()

    # when the customer writes and answers
    conversation = _say(world, "Hello")
    assert conversation.status == "bot"
    assert _bot_lines(conversation) == ["Hi! What's your name?"]
    assert conversation.work_item is None

    _say(world, "Yuki Sato")
    assert _bot_lines(conversation)[-1] == "What can we help with?\n1. Orders\n2. Billing"
    _say(world, "1")
    assert _bot_lines(conversation)[-1] == "What is your order number?"
    _say(world, "no idea")
    assert _bot_lines(conversation)[-2:] == [
        "Sorry, I did not understand that.",
        "What is your order number?",
    ]
    conversation = _say(world, "AB-1234")

    # then the conversation waits in the queue the topic picked, with the answers in its item
    assert conversation.status == "waiting"
    assert _bot_lines(conversation)[-1] == "Thank you. An agent will be with you shortly."
    item = conversation.work_item
    assert item.queue == world.orders
    assert item.payload["bot_answers"] == {
        "name": "Yuki Sato",
        "topic": "orders",
        "order_number": "AB-1234",
    }
    assert item.payload["handoff_reason"] == "complete"
    assert item.subject == "SMS: Yuki Sato (Orders)"  # the label the customer chose
    assert conversation.customer.display_name == "Yuki Sato"
    # and every bot line went out as an SMS (queued for the provider)
    assert set(conversation.messages.filter(author="bot").values_list("status", flat=True)) == {
        "queued"
    }


def test_asking_for_an_agent_hands_off_at_once(world):
    world.sms.bot_flow = BOT_FLOW
    world.sms.save()
    conversation = _say(world, "Hi")

    conversation = _say(world, "I want to talk to a human")

    assert conversation.status == "waiting"
    assert conversation.work_item.queue == world.queue
    assert conversation.work_item.payload["handoff_reason"] == "asked_for_agent"
    assert conversation.work_item.payload["bot_answers"] == {}


def test_japanese_request_for_an_operator_hands_off_on_the_first_message(world):
    world.sms.bot_flow = BOT_FLOW
    world.sms.language = "ja"
    world.sms.save()

    conversation = _say(world, "オペレーターと話したい")

    assert conversation.status == "waiting"
    assert conversation.work_item.payload["handoff_reason"] == "asked_for_agent"


def test_two_wrong_choices_hand_off(world):
    world.sms.bot_flow = BOT_FLOW
    world.sms.save()
    _say(world, "Hi")
    _say(world, "Yuki")

    _say(world, "7")
    conversation = _say(world, "purple")

    assert conversation.status == "waiting"
    assert conversation.work_item.payload["handoff_reason"] == "no_answer"


def test_a_broken_flow_hands_off_at_once(world):
    world.sms.bot_flow = [{"ask": "a question without a key"}]
    world.sms.save()

    conversation = _say(world, "Hello")

    assert conversation.status == "waiting"
    assert conversation.work_item.payload["handoff_reason"] == "bot_error"
    assert _bot_lines(conversation) == ["Thank you. An agent will be with you shortly."]


def test_known_name_is_not_asked_again(world):
    turn = bot.begin(BOT_FLOW, known={"name": "Yuki"}, first_text="Hello")

    assert [r.text for r in turn.replies] == ["What can we help with?"]
    assert turn.replies[0].choices == ("Orders", "Billing")
    assert turn.answers == {"name": "Yuki"}


def test_choices_match_by_label_or_value_and_skip_conditional_steps():
    turn = bot.begin(BOT_FLOW, known={}, first_text="hi")
    turn = bot.answer(BOT_FLOW, state=turn.state, answers=turn.answers, text="Ana")

    turn = bot.answer(BOT_FLOW, state=turn.state, answers=turn.answers, text="billing")

    assert turn.handoff
    assert turn.answers == {"name": "Ana", "topic": "billing"}
    assert turn.queue == ""


def test_wants_agent():
    assert bot.wants_agent("agent")
    assert bot.wants_agent("Talk to a person please!")
    assert bot.wants_agent("担当者をお願いします")
    assert not bot.wants_agent("Hello")
    assert not bot.wants_agent(
        "The delivery agent left my parcel with a neighbour yesterday evening"
    )


def test_bot_speaks_the_account_language():
    with translation.override("ja"):
        turn = bot.answer(BOT_FLOW, state={"step": 1}, answers={}, text="agent")

    assert turn.replies[-1].text == "ありがとうございます。まもなく担当者がご対応します。"


def test_an_answer_reads_as_the_choice_the_customer_saw():
    flow = [
        {
            "key": "topic",
            "ask": "What is it about?",
            "choices": [{"label": "Returns and refunds", "value": "returns"}],
        },
        {"key": "order", "ask": "Order number?"},
    ]
    assert bot.choice_label(flow, "topic", "returns") == "Returns and refunds"
    assert bot.choice_label(flow, "order", "AB-1") == "AB-1"  # a free answer stays as given
    assert bot.choice_label(flow, "topic", None) == ""
    assert bot.choice_label(None, "topic", "returns") == "returns"  # no flow: the value
