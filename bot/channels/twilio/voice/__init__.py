"""The one-key phone line on Twilio Voice: every call is a conversation with the engine, turn by
turn, spoken with text-to-speech and heard with Twilio's speech recognition or the keypad.

Routes (all POSTed by Twilio, every one signed: `verified_form`; give Twilio the first as the
number's "A call comes in" webhook and ``/status`` as its "Call status changes" webhook):

- ``/twilio/voice``            a call comes in: the greeting (by name for a known number), then a
                               ``<Gather input="speech dtmf">`` whose action is the next turn.
- ``/twilio/voice/turn``       what the caller said or pressed (or nothing: ``actionOnEmptyResult``)
                               as one engine turn; the replies are spoken, then the next Gather, or
                               a hand-over, an emergency chain of calls, or the end of the call.
- ``/twilio/voice/confirm``    speech heard with a low confidence is confirmed by key (1 yes, 2 no)
                               before the engine acts on it.
- ``/twilio/voice/dial``       after each ``<Dial>``: on no answer, the next on-duty staff member
                               (then, in an emergency, the emergency contacts); after the last one a
                               voicemail (hand-over) or the emergency's question. In an emergency,
                               once the caller's call is through with the numbers (answered, none
                               left, or she hung up), the alert calls held back while she was put
                               through go (storage/alert_chain.py).
- ``/twilio/voice/screen``     call screening (the ``<Number>``'s url): whoever picks up hears who is
                               calling and why, and must press a key to be connected (a phone's
                               voicemail presses none: it hangs up, and ``/dial`` goes on to the
                               next number, since a picked-up leg counts only when a key was
                               pressed, whatever DialCallStatus Twilio reports).
- ``/twilio/voice/answered``   in an emergency, the number the caller was put through to answered
                               (the ``<Number>``'s status callback, event "answered"): noted on the
                               case; a family member's answer releases the alert calls at once.
- ``/twilio/voice/recording``  the voicemail (or none) of a hand-over nobody took: a call-back case
                               with the recording's URL, and the caller is told who rings back when.
- ``/twilio/voice/status``     call status callbacks, recorded; when a call that came in is over,
                               the conversation is closed (a half-told request is filed), and a call
                               in which nothing was said files a call-back case, so none is dropped.
                               For an emergency alert call we placed (``?k=``), its outcome moves
                               the chain of alert calls on (storage/alert_chain.py).
- ``/twilio/voice/alert``      the key pressed on an emergency alert call we placed: 1 takes the
                               emergency, and the calls still to come are called off.
- ``/twilio/voice/follow-up``  the key pressed on a follow-up call we placed (回访): 1, 2 or 3
                               answers the question (``follow_up.py``).

The call's place travels in the action URLs Twilio calls back (``n``: the number of the next turn,
``lang``, ``e=1`` once the emergency calls were placed in this call), so any server can take the
next step, and a webhook Twilio repeats gets the same answer: a turn's provider id is
``{CallSid}:{n}``, and the engine answers a repeated id with the same replies, doing nothing twice.
Everything the caller hears comes from the engine's replies or the message catalogs.

While the database cannot be reached, every route is still answered (``twilio/outage.py``): the
caller is put through to the community's own phones and called back once it is back.

Modules: ``wire`` (Twilio's side both ways: the call's place and inbound messages in, the
TwiML out: voices, Gather, Dial), ``records`` (the call's rows, whom to put it through to),
``handover`` (after a turn, the end of a call), ``routes`` (the webhooks), ``sender`` (the
outbox's calls placed through Twilio), ``follow_up`` (the follow-up call's URLs; what keys do on
any voice line is bot/channels/calls.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from bot.channels.base import Mounted, OutboxSenders
    from bot.conversation.deployment import Deployment
    from config.settings import Settings


def mount(app: FastAPI, deployment: Deployment) -> Mounted:
    """Add the line's routes (or say why it is off). The routes are imported here, not at the
    top: the worker imports ``chain`` and needs neither the web routes nor the NLU's lexicon."""
    from bot.channels.twilio.voice.routes import mount as mount_routes

    return mount_routes(app, deployment)


def senders(settings: Settings) -> OutboxSenders:
    """The outbox's calls (alert calls, follow-up calls, notices) go out with the Twilio account."""
    from bot.channels.base import OutboxSenders
    from bot.channels.twilio import ACCOUNT_SETTINGS
    from bot.channels.twilio.voice.sender import CallSender

    if not settings.twilio_enabled:
        return OutboxSenders(off={"voice": ACCOUNT_SETTINGS})
    return OutboxSenders(on={"voice": CallSender(settings)})
