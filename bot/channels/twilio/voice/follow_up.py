"""The follow-up call (回访, storage/follow_ups.py): a phone caller is asked by a call whether their
request was done and whether they are satisfied, and answers on the keypad.

The worker places the call (an outbox item of channel "voice", kind "follow_up") with TwiML
(``sender.py``, ``follow_up_twiml``) that says the question twice in a one-key
``<Gather>`` whose action is ``/twilio/voice/follow-up?fu=<follow-up id>``, signed by Twilio like
every webhook. The route (bot/channels/twilio/voice/routes.py) hears the key: 1, 2 or 3 answers
(bot/conversation/follow_up_answers.py) and the person is thanked (or told the case is open again);
another key hears the question once more; no key, goodbye: the round stays asked, and the worker
asks again after the answer window or files a call-back. Only the number the question was put to
answers it (Twilio's ``To`` of the call we placed), and a webhook Twilio repeats answers nothing
twice (an answered round is not answered again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine

from bot.channels.twilio.voice.steps import PREFIX
from bot.conversation.follow_up_answers import Answered, answer_round
from storage import follow_up_jobs, follow_ups
from storage.db import transaction
from storage.models import Case, FollowUp
from storage.site import site_of

FOLLOW_UP_PATH = f"{PREFIX}/follow-up"
CHANNEL = "voice"  # the outbox channel of the calls the worker places
ASKS = 2  # the question is heard again once after a key that is not 1, 2 or 3


def is_follow_up_call(channel: str, payload: dict[str, Any] | None) -> bool:
    payload = payload or {}
    return (
        channel == CHANNEL
        and payload.get("kind") == follow_ups.KIND
        and isinstance(payload.get("follow_up"), int)
    )


def follow_up_url(public_url: str, follow_up_id: int, asked: int = 1) -> str:
    """Where the call's key goes (absolute: the call's TwiML is inline, with no URL of its own)."""
    query: dict[str, int] = {"fu": follow_up_id}
    if asked > 1:
        query["r"] = asked
    return f"{public_url.rstrip('/')}{FOLLOW_UP_PATH}?{urlencode(query)}"


def again_url(follow_up_id: int, asked: int) -> str:
    """The action of the question asked again (relative: Twilio resolves it against this URL)."""
    return f"{FOLLOW_UP_PATH}?{urlencode({'fu': follow_up_id, 'r': asked})}"


@dataclass(frozen=True)
class Heard:
    question: str  # the question, to say again
    language: str
    answered: Answered | None  # None: the key was no answer (or there was none)


def hear(db: Engine, follow_up_id: int, callee: str, digits: str, *, now: datetime) -> Heard | None:
    """What ``digits`` pressed on the follow-up call ``follow_up_id`` to ``callee`` does; None
    when no such question was put to that number."""
    with transaction(db) as session:
        follow_up = session.get(FollowUp, follow_up_id)
        if follow_up is None or follow_up.channel != CHANNEL or follow_up.address != callee:
            return None
        case = session.get(Case, follow_up.case_id)
        assert case is not None
        language = follow_ups.language_of(session, case)
        catalogs = site_of(session).catalogs
        question = follow_up_jobs.question(catalogs, language, case.number, by_voice=True)
        answered = None
        if digits in follow_ups.CHOICES:
            answered = answer_round(session, follow_up, digits, now=now)
        return Heard(question, language, answered)
