"""A self-hosted one-key phone line over SIP, for where Twilio does not reach: `hotline sip`, a
process of its own, registers as an extension on the community's PBX or carrier trunk, answers
the one-key phones' calls (agent.py), keypad first (flow.py), speaking catalog texts or their
recordings (prompts.py), filing through the conversation engine (line.py), and places the
outbox's calls (sender.py, callout.py): an emergency's alert calls ("press 1"), follow-up calls
and notices, on the same line.

The web app serves nothing for it; it lists it as on (answered by `hotline sip`) or off and why,
and its worker leaves the outbox's calls to `hotline sip` (``senders``: ``elsewhere``).
Needs Debian's espeak-ng and sox (prompts) and PyPI's pjsua2-python (x86_64).
"""

from __future__ import annotations

from fastapi import FastAPI

from bot.channels.base import Mounted, OutboxSenders
from bot.channels.calls import CHANNEL as CALLS
from bot.conversation.deployment import Deployment
from config.settings import Settings

NAME = "sip"
SETTINGS = "HOTLINE_SIP_REGISTRAR or HOTLINE_SIP_USER"


def why_off(settings: Settings) -> str:
    return "" if settings.sip_enabled else f"no {SETTINGS}"


def mount(app: FastAPI, deployment: Deployment) -> Mounted:
    """Nothing to serve: the line is `hotline sip`'s."""
    why = why_off(deployment.settings)
    return Mounted(NAME, enabled=not why, why=why)


def senders(settings: Settings) -> OutboxSenders:
    """The outbox's calls go over the line when it is configured, placed by `hotline sip`."""
    if not settings.sip_enabled:
        return OutboxSenders(off={CALLS: f"{SETTINGS.replace(' or ', ' and ')} (`hotline sip`)"})
    return OutboxSenders(elsewhere={CALLS: "`hotline sip`"})
