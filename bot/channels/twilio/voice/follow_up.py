"""The calls that ask a question on Twilio: the check-in call (storage/check_ins.py: 1 or 2, at
``CHECK_IN_PATH``) works as this follow-up call does. The follow-up call (回访, storage/follow_ups.py): the worker places the call (an
outbox item of channel "voice", kind "follow_up") with TwiML (``sender.py``, ``follow_up_twiml``)
that says the question twice in a one-key ``<Gather>`` whose action is
``/twilio/voice/follow-up?fu=<follow-up id>``, signed by Twilio like every webhook. The route
(bot/channels/twilio/voice/routes.py) hears the key through bot/channels/calls.py (what keys do
on any voice line). Only the number the question was put to answers it (Twilio's ``To`` of the
call we placed), and a webhook Twilio repeats answers nothing twice.
"""

from __future__ import annotations

from urllib.parse import urlencode

from bot.channels.twilio.voice.wire import PREFIX

FOLLOW_UP_PATH = f"{PREFIX}/follow-up"
CHECK_IN_PATH = f"{PREFIX}/check-in"  # the check-in call's key (storage/check_ins.py), ``ci``


def follow_up_url(public_url: str, follow_up_id: int, asked: int = 1) -> str:
    """Where the call's key goes (absolute: the call's TwiML is inline, with no URL of its own)."""
    query: dict[str, int] = {"fu": follow_up_id}
    if asked > 1:
        query["r"] = asked
    return f"{public_url.rstrip('/')}{FOLLOW_UP_PATH}?{urlencode(query)}"


def again_url(follow_up_id: int, asked: int) -> str:
    """The action of the question asked again (relative: Twilio resolves it against this URL)."""
    return f"{FOLLOW_UP_PATH}?{urlencode({'fu': follow_up_id, 'r': asked})}"


def check_in_url(public_url: str, check_in_id: int) -> str:
    """Where a check-in call's key goes (absolute, as `follow_up_url`)."""
    return f"{public_url.rstrip('/')}{CHECK_IN_PATH}?{urlencode({'ci': check_in_id})}"


def check_in_again_url(check_in_id: int, asked: int) -> str:
    return f"{CHECK_IN_PATH}?{urlencode({'ci': check_in_id, 'r': asked})}"
