"""Channel adapters: one package each (its inbound side and its sender), translating a
provider's wire format to the engine's `Inbound` and its `Reply`s back. Each has
`mount(app, deployment) -> Mounted`; a channel whose settings are missing is switched off and says
why (listed at start-up). Each also has ``senders(settings) -> OutboxSenders`` when it sends from
the outbox: `senders_for` gathers them for the worker."""

from __future__ import annotations

import importlib

from fastapi import FastAPI

from bot.channels.base import Mounted, OutboxSenders, Sender
from bot.conversation.deployment import Deployment
from config.settings import Settings

# The channels by name, in the order they are listed at start-up, and their packages.
CHANNELS = {
    "twilio_voice": "bot.channels.twilio.voice",
    "twilio_messaging": "bot.channels.twilio.messaging",
    "telegram": "bot.channels.telegram",
    "web_api": "bot.channels.web_api",
}


def mount_channels(app: FastAPI, deployment: Deployment) -> list[Mounted]:
    mounted = []
    for name, package in CHANNELS.items():
        try:
            module = importlib.import_module(package)
        except ModuleNotFoundError as exc:
            if exc.name != package:
                raise
            mounted.append(Mounted(name, enabled=False, why="not built yet"))
            continue
        mounted.append(module.mount(app, deployment))
    return mounted


def _outbox_senders(settings: Settings) -> list[OutboxSenders]:
    found = []
    for package in CHANNELS.values():
        offer = getattr(importlib.import_module(package), "senders", None)
        if offer is not None:
            found.append(offer(settings))
    return found


def senders_for(settings: Settings) -> dict[str, Sender]:
    """The senders of the configured channels, by outbox channel (none for one that is off)."""
    return {channel: s for offer in _outbox_senders(settings) for channel, s in offer.on.items()}


def missing_senders(settings: Settings) -> dict[str, str]:
    """The outbox channels without a sender and the settings that would give them one."""
    return {
        channel: why for offer in _outbox_senders(settings) for channel, why in offer.off.items()
    }
