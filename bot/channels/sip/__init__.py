"""A self-hosted one-key phone line over SIP, for where Twilio does not reach: `hotline sip`, a
process of its own, registers as an extension on the community's PBX or carrier trunk and
answers the one-key phones' calls (agent.py), keypad first (flow.py), speaking catalog texts or
their recordings (prompts.py), filing through the conversation engine (line.py).

The web app serves nothing for it; it lists it as on (answered by `hotline sip`) or off and why.
Needs Debian's espeak-ng and sox (prompts) and PyPI's pjsua2-python (x86_64). Built so far:
answering, greeting by name, the menu, a request spoken after the beep and filed with its
recording, an emergency by key (filed, alerted, where recorded onto it), a question's answer
read out, silence and hang-ups filed for a call-back. Not yet: putting a call through to staff
(0 and emergencies file a call-back instead), the outbox's alert and follow-up calls over it.
"""

from __future__ import annotations

from fastapi import FastAPI

from bot.channels.base import Mounted
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
