"""The pre-chat bot: a small configurable flow that runs before a conversation goes to an agent.

Pure: a flow (the channel account's JSON list of steps), the state so far and the customer's text
in; the bot's replies, the new state and whether to hand off out. No database, no I/O. Strings
are translated in the language active when it is called (the channel account's).

A flow is a list of steps, each one of:
- ``{"say": "Hi! I'll take a few details first."}``: a line the bot says, no answer expected;
- ``{"key": "name", "ask": "What's your name?", "skip_if_known": true}``: a question whose
  answer is stored under ``key``; ``skip_if_known`` skips it when the value is already known
  (e.g. the customer's name from their WhatsApp profile);
- ``{"key": "topic", "ask": "What is it about?", "choices": [{"label": "Orders",
  "value": "orders", "queue": "Orders"}, ...]}``: the customer picks by number, label or value;
  a choice's ``queue`` (a queue name) routes the conversation there;
- any question may have ``"pattern"`` (a regular expression the whole answer must match) and
  ``"when": {"topic": "orders"}`` (asked only when earlier answers match).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _

# Words that mean "let me talk to a person", in English and Japanese.
AGENT_WORDS = frozenset({"agent", "human", "person", "operator", "representative", "staff"})
AGENT_PHRASES_JA = ("オペレータ", "担当者", "人間", "エージェント", "有人", "スタッフ")
MAX_RETRIES = 2


class BotFlowError(ValueError):
    """The flow is not well formed; the conversation goes to an agent at once."""


@dataclass(frozen=True)
class BotReply:
    text: str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class BotTurn:
    replies: tuple[BotReply, ...]
    state: dict[str, Any]
    answers: dict[str, Any]
    handoff: bool
    reason: str = ""  # why the bot handed off: complete, asked_for_agent, no_answer, no_flow
    queue: str = ""  # a queue name picked by the answers, or "" for the account's queue
    extra: dict[str, Any] = field(default_factory=dict)


def choice_label(flow: Any, key: str, value: Any) -> str:
    """What the customer saw for an answer: the label of the choice of step ``key`` whose value
    is ``value`` ("Returns and refunds", not "returns"); the answer itself when no step offers
    choices for it, and "" for no answer."""
    if value in (None, ""):
        return ""
    for step in flow if isinstance(flow, list) else ():
        if isinstance(step, dict) and step.get("key") == key:
            for choice in step.get("choices") or ():
                if isinstance(choice, dict) and choice.get("value") == value:
                    return str(choice.get("label") or value)
    return str(value)


def wants_agent(text: str) -> bool:
    """Does the customer ask for a person? ("agent", "talk to a human", "オペレーター"...)."""
    normal = unicodedata.normalize("NFKC", text).casefold().strip()
    if any(phrase in normal for phrase in AGENT_PHRASES_JA):
        return True
    words = re.findall(r"[a-z]+", normal)
    if not words or len(words) > 8:
        return False
    # Only short messages: "the agent said my parcel left yesterday" is not a request.
    return any(w in AGENT_WORDS for w in words)


def validate_flow(flow: Any) -> list[dict[str, Any]]:
    """The flow as a list of step dicts, or ``BotFlowError`` saying what is wrong."""
    if flow in (None, ""):
        return []
    if not isinstance(flow, list):
        raise BotFlowError("The bot flow must be a list of steps.")
    keys = set()
    for n, step in enumerate(flow, start=1):
        if not isinstance(step, dict):
            raise BotFlowError(f"Step {n} must be an object.")
        if "say" in step:
            if not isinstance(step["say"], str) or not step["say"].strip():
                raise BotFlowError(f"Step {n}: 'say' must be some text.")
            continue
        if not isinstance(step.get("key"), str) or not step["key"]:
            raise BotFlowError(f"Step {n} needs a 'key' (where the answer is stored).")
        if step["key"] in keys:
            raise BotFlowError(f"Step {n}: key {step['key']!r} is used twice.")
        keys.add(step["key"])
        if not isinstance(step.get("ask"), str) or not step["ask"].strip():
            raise BotFlowError(f"Step {n} needs an 'ask' (the question).")
        choices = step.get("choices")
        if choices is not None:
            if not isinstance(choices, list) or not choices:
                raise BotFlowError(f"Step {n}: 'choices' must be a non-empty list.")
            for choice in choices:
                if not isinstance(choice, dict) or not isinstance(choice.get("label"), str):
                    raise BotFlowError(f"Step {n}: each choice needs a 'label'.")
        if "pattern" in step:
            try:
                re.compile(step["pattern"])
            except (re.error, TypeError) as exc:
                raise BotFlowError(f"Step {n}: bad pattern ({exc}).") from exc
        when = step.get("when")
        if when is not None and not isinstance(when, dict):
            raise BotFlowError(f"Step {n}: 'when' must be an object.")
    return flow


def begin(flow: Any, *, known: dict[str, str], first_text: str = "") -> BotTurn:
    """Start the flow for a new conversation whose first message is ``first_text``."""
    steps = validate_flow(flow)
    if not steps:
        return BotTurn((), {}, {}, handoff=True, reason="no_flow")
    if first_text and wants_agent(first_text):
        return _handoff((), {}, {}, "asked_for_agent", "")
    return _continue(steps, 0, {}, {"queue": ""}, [], known)


def answer(flow: Any, *, state: dict[str, Any], answers: dict[str, Any], text: str) -> BotTurn:
    """Take the customer's answer to the current question and move on."""
    steps = validate_flow(flow)
    answers = dict(answers)
    state = dict(state)
    if wants_agent(text):
        return _handoff((), state, answers, "asked_for_agent", state.get("queue", ""))
    index = state.get("step")
    if not isinstance(index, int) or not 0 <= index < len(steps):
        return _handoff((), state, answers, "complete", state.get("queue", ""))
    step = steps[index]
    value, queue = _accept(step, text)
    if value is None:
        retries = int(state.get("retries", 0)) + 1
        if retries >= MAX_RETRIES:
            return _handoff((), state, answers, "no_answer", state.get("queue", ""))
        state["retries"] = retries
        sorry = (
            _("Sorry, please pick one of the options.")
            if step.get("choices")
            else _("Sorry, I did not understand that.")
        )
        return BotTurn((BotReply(sorry), _question(step)), state, answers, handoff=False)
    answers[step["key"]] = value
    state["retries"] = 0
    if queue:
        state["queue"] = queue
    return _continue(steps, index + 1, answers, state, [], {})


def _continue(
    steps: list[dict[str, Any]],
    start: int,
    answers: dict[str, Any],
    state: dict[str, Any],
    replies: list[BotReply],
    known: dict[str, str],
) -> BotTurn:
    for index in range(start, len(steps)):
        step = steps[index]
        if "say" in step:
            replies.append(BotReply(step["say"]))
            continue
        when = step.get("when") or {}
        if any(str(answers.get(k, "")).casefold() != str(v).casefold() for k, v in when.items()):
            continue
        if step.get("skip_if_known") and known.get(step["key"]):
            answers[step["key"]] = known[step["key"]]
            continue
        replies.append(_question(step))
        state = {**state, "step": index, "retries": 0}
        return BotTurn(tuple(replies), state, answers, handoff=False)
    return _handoff(tuple(replies), state, answers, "complete", state.get("queue", ""))


def _handoff(
    replies: tuple[BotReply, ...],
    state: dict[str, Any],
    answers: dict[str, Any],
    reason: str,
    queue: str,
) -> BotTurn:
    state = {**state, "step": None, "done": True}
    bye = BotReply(_("Thank you. An agent will be with you shortly."))
    return BotTurn((*replies, bye), state, answers, handoff=True, reason=reason, queue=queue)


def _question(step: dict[str, Any]) -> BotReply:
    labels = tuple(c["label"] for c in step.get("choices") or ())
    return BotReply(step["ask"], labels)


def _accept(step: dict[str, Any], text: str) -> tuple[str | None, str]:
    """The stored value for ``text`` and a queue it picks, or (None, "") if it is not valid."""
    text = unicodedata.normalize("NFKC", text).strip()
    if not text:
        return None, ""
    choices = step.get("choices")
    if choices:
        wanted = text.casefold().rstrip(".")
        for number, choice in enumerate(choices, start=1):
            value = str(choice.get("value") or choice["label"])
            if wanted in {str(number), choice["label"].casefold(), value.casefold()}:
                return value, str(choice.get("queue") or "")
        return None, ""
    pattern = step.get("pattern")
    if pattern and not re.fullmatch(pattern, text):
        return None, ""
    return text[:200], ""


def render_for_text_channel(reply: BotReply) -> str:
    """A bot reply as plain text for SMS-like channels: choices become a numbered list."""
    if not reply.choices:
        return reply.text
    lines = [reply.text, *(f"{n}. {label}" for n, label in enumerate(reply.choices, start=1))]
    return "\n".join(lines)
