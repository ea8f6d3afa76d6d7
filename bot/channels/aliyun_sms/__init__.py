"""SMS in mainland China through Alibaba Cloud SMS (阿里云短信服务): the outbox's "sms" items, for
notices to phone callers, link codes, staff alerts. It sends no free text: China's carriers
take only templates the account had approved, so each kind of message goes as its template
(config/sms_templates.yml, checked when the channel starts) with its variables filled from
what the message carries (`templates.FIELDS`). A kind with no template, or a message lacking a
variable's value, is never sent as something else: it fails with the reason.

When it is on, it sends the outbox's SMS instead of Twilio (which reaches no Chinese phone);
Twilio's webhooks still work where Twilio is configured too. It receives nothing (replies to
an SMS are not read). Off, and said so at start-up, until HOTLINE_ALIYUN_SMS_ACCESS_KEY_ID,
HOTLINE_ALIYUN_SMS_ACCESS_KEY_SECRET and HOTLINE_ALIYUN_SMS_SIGN_NAME are set.
"""

from __future__ import annotations

import structlog
from fastapi import FastAPI

from bot.channels.base import Mounted, OutboxSenders
from bot.conversation.deployment import Deployment
from config.loader import ConfigError
from config.settings import Settings
from config.sms_templates import load_sms_templates

log = structlog.get_logger(__name__)

NAME = "aliyun_sms"
CHANNEL = "sms"
SETTINGS = (
    "HOTLINE_ALIYUN_SMS_ACCESS_KEY_ID, HOTLINE_ALIYUN_SMS_ACCESS_KEY_SECRET or "
    "HOTLINE_ALIYUN_SMS_SIGN_NAME"
)


def why_off(settings: Settings) -> str:
    if not settings.aliyun_sms_enabled:
        return f"no {SETTINGS}"
    try:
        load_sms_templates(settings.config_dir)
    except ConfigError as exc:
        return str(exc)
    return ""


def senders(settings: Settings) -> OutboxSenders:
    why = why_off(settings)
    if why:
        return OutboxSenders(off={CHANNEL: why})
    from bot.channels.aliyun_sms.sender import AliyunSmsSender

    templates = load_sms_templates(settings.config_dir)
    return OutboxSenders(on={CHANNEL: AliyunSmsSender(settings, templates)})


def mount(app: FastAPI, deployment: Deployment) -> Mounted:
    """Nothing to serve (no webhooks); on or off, and why."""
    settings = deployment.settings
    why = why_off(settings)
    if why:
        return Mounted(NAME, enabled=False, why=why)
    if settings.twilio_enabled:
        log.warning("sms_by_aliyun", why="Alibaba Cloud SMS sends the outbox's SMS, not Twilio")
    return Mounted(NAME, enabled=True)
