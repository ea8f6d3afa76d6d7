"""The follow-up call (回访, storage/follow_ups.py) on Twilio: the worker places the call (an
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


def follow_up_url(public_url: str, follow_up_id: int, asked: int = 1) -> str:
    """Where the call's key goes (absolute: the call's TwiML is inline, with no URL of its own)."""
    query: dict[str, int] = {"fu": follow_up_id}
    if asked > 1:
        query["r"] = asked
    return f"{public_url.rstrip('/')}{FOLLOW_UP_PATH}?{urlencode(query)}"


def again_url(follow_up_id: int, asked: int) -> str:
    """The action of the question asked again (relative: Twilio resolves it against this URL)."""
    return f"{FOLLOW_UP_PATH}?{urlencode({'fu': follow_up_id, 'r': asked})}"
