"""Channel adapters: one package each (its inbound side and its sender), translating a
provider's wire format to the engine's `Inbound` and its `Reply`s back. Each has
`mount(app, deployment) -> Mounted`; a channel whose settings are missing is switched off and says
why (listed at start-up). Each also has ``senders(settings) -> OutboxSenders`` when it sends from
the outbox: `senders_for` gathers them for the worker."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from fastapi import FastAPI
from sqlalchemy.orm import Session

from bot.channels.base import Mounted, OutboxSenders, Sender
from bot.conversation.deployment import Deployment
from config.settings import Settings
from storage.escalation import MovedHook
from storage.models import Case

# The channels by name, in the order they are listed at start-up, and their packages.
CHANNELS = {
    "twilio_voice": "bot.channels.twilio.voice",
    "twilio_messaging": "bot.channels.twilio.messaging",
    "aliyun_sms": "bot.channels.aliyun_sms",  # after Twilio: when on, it sends the SMS
    "telegram": "bot.channels.telegram",
    "wechat": "bot.channels.wechat",
    "wecom": "bot.channels.wecom",
    "sip": "bot.channels.sip",  # `hotline sip` answers; listed here for start-up's report
    "web_api": "bot.channels.web_api",
}
# Where the providers post their webhooks: a bad text in them is cleaned by the channel, not
# refused (bot/runtime/edge.py), or the provider would deliver it again.
WEBHOOK_PREFIXES = ("/twilio/", "/telegram/", "/wechat", "/wecom")


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


def outbox_senders(settings: Settings) -> OutboxSenders:
    """Every channel's offer together: the senders of the configured channels by outbox channel
    (``on``), the outbox channels without one with the settings that would give it (``off``),
    and those another process sends (``elsewhere``, which wins: with the SIP line configured,
    `hotline sip` places the calls, not Twilio)."""
    every = OutboxSenders()
    for package in CHANNELS.values():
        offer = getattr(importlib.import_module(package), "senders", None)
        if offer is not None:
            found = offer(settings)
            every.on.update(found.on)  # a later package takes a channel over (SMS: Aliyun)
            every.elsewhere.update(found.elsewhere)  # ... or its own process does (calls: SIP)
            for channel, why in found.off.items():  # each way the channel could be had
                every.off[channel] = (
                    f"{every.off[channel]}; or {why}" if channel in every.off else why
                )
    every.on = {c: sender for c, sender in every.on.items() if c not in every.elsewhere}
    every.off = {
        c: why for c, why in every.off.items() if c not in every.on and c not in every.elsewhere
    }
    return every


def senders_for(settings: Settings) -> dict[str, Sender]:
    """The senders of the configured channels, by outbox channel (none for one that is off)."""
    return outbox_senders(settings).on


def missing_senders(settings: Settings) -> dict[str, str]:
    """The outbox channels without a sender and the settings that would give them one."""
    return outbox_senders(settings).off


def case_announcers(deployment: Deployment, *, moved: bool = False) -> list[MovedHook]:
    """What posts a case to staff, where the deployment has a channel for it: the Telegram
    bot's posts, the WeCom app's cards. ``moved``: a case that came to another unit's queue.
    The app's channels mount their own; `hotline sip`, which mounts none, takes them here."""
    hooks: list[MovedHook] = []
    if deployment.settings.telegram_enabled:
        from bot.channels.telegram import new_case_announcer

        hooks.append(new_case_announcer(deployment, moved=moved))
    if deployment.settings.wecom_enabled:
        from bot.channels.wecom.cards import announcer

        hooks.append(announcer(deployment))
    return hooks


def moved_announcer(deployment: Deployment) -> MovedHook | None:
    """Who is told of a case moved to another unit's queue (a transfer in the console, an
    escalation): `case_announcers` of moved cases, as one hook."""
    hooks = case_announcers(deployment, moved=True)
    if not hooks:
        return None
    if len(hooks) == 1:
        return hooks[0]

    def announce(session: Session, cases: Sequence[Case]) -> None:
        for hook in hooks:
            hook(session, cases)

    return announce
