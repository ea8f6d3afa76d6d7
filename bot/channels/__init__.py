"""Channel adapters: one module each, translating a provider's wire format to the engine's
`Inbound` and its `Reply`s back. Each module has `mount(app, settings) -> Mounted`; a channel
whose settings are missing is switched off and says why (listed at start-up)."""

from __future__ import annotations

import importlib

from fastapi import FastAPI

from bot.channels.base import Mounted
from config.settings import Settings

# The channel modules, in the order they are listed at start-up.
CHANNEL_MODULES = ("twilio_voice", "twilio_messaging", "telegram", "web_api")


def mount_channels(app: FastAPI, settings: Settings) -> list[Mounted]:
    mounted = []
    for name in CHANNEL_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            mounted.append(Mounted(name, enabled=False, why="not built yet"))
            continue
        mounted.append(module.mount(app, settings))
    return mounted
