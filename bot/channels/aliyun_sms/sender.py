"""Sends outbox "sms" items as approved templates through the real Alibaba Cloud SDK.

What Aliyun answers, and what the worker makes of it:
- ``Code: OK``: sent (the provider id is its ``BizId``);
- a rule of the account broken (``isv.SMS_SIGNATURE_ILLEGAL``, ``isv.SMS_TEMPLATE_ILLEGAL``,
  a template's variables missing or wrong, an invalid number, a number on the blacklist):
  failed for good, with Aliyun's words (staff see it among the failed deliveries);
- too many to one number (``isv.BUSINESS_LIMIT_CONTROL``: 1 a minute, 5 an hour, 10 a day per
  number), the service or the network failing: tried again.

Each send carries a hash of the item's idempotency key as ``OutId``; an item whose earlier
attempt was lost (its worker died) is looked for by it among what Aliyun sent to the number
that day and the day before (`find_sent`), so it is not sent twice.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from alibabacloud_dysmsapi20170525 import models
from alibabacloud_dysmsapi20170525.client import Client
from alibabacloud_tea_openapi import models as openapi
from darabonba.runtime import RuntimeOptions
from Tea.exceptions import TeaException

from bot.channels.base import SendOutcome
from config.settings import Settings
from config.sms_templates import FIELDS, SmsTemplates
from storage.phones import InvalidPhoneNumber, normalize_phone

log = structlog.get_logger(__name__)

OK = "OK"
LIMITED = ("isv.BUSINESS_LIMIT_CONTROL", "Throttling.User", "isv.DAY_LIMIT_CONTROL")
# Refusals that sending again cannot mend.
REFUSED = (
    "isv.SMS_SIGNATURE_ILLEGAL",
    "isv.SMS_TEMPLATE_ILLEGAL",
    "isv.TEMPLATE_MISSING_PARAMETERS",
    "isv.TEMPLATE_PARAMS_ILLEGAL",
    "isv.INVALID_PARAMETERS",
    "isv.MOBILE_NUMBER_ILLEGAL",
    "isv.MOBILE_COUNT_OVER_LIMIT",
    "isv.BLACK_KEY_CONTROL_LIMIT",
    "isv.PARAM_LENGTH_LIMIT",
    "isv.PARAM_NOT_SUPPORT_URL",
)
LIMITED_RETRY_S = 60.0
BEIJING = ZoneInfo("Asia/Shanghai")  # Aliyun's send dates are Beijing time
CLOCK_SLACK = timedelta(seconds=30)
MAINLAND = "+86"


def out_id(address: str, payload: dict[str, Any]) -> str:
    """What an item's SMS is known by at Aliyun: a hash of its number and what it carries
    (all `find_sent` is given of an item)."""
    carried = {k: payload.get(k) for k in ("kind", "case", "code", "fields", "text")}
    text = json.dumps([address, carried], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def mainland_number(address: str) -> str | None:
    """``+8613800000001`` as Aliyun takes it (13800000001); None for a number abroad."""
    try:
        number = normalize_phone(address)
    except InvalidPhoneNumber:
        return None
    return number[len(MAINLAND) :] if number.startswith(MAINLAND) else None


class AliyunSmsSender:
    channels = ("sms",)

    def __init__(self, settings: Settings, templates: SmsTemplates) -> None:
        self.settings = settings
        self.templates = templates
        self._client = Client(
            openapi.Config(
                access_key_id=settings.aliyun_sms_access_key_id,
                access_key_secret=settings.aliyun_sms_access_key_secret,
                endpoint=settings.aliyun_sms_endpoint,
                protocol=settings.aliyun_sms_protocol,
            )
        )
        self._runtime = RuntimeOptions(connect_timeout=3_000, read_timeout=10_000)

    def request_for(
        self, address: str, payload: dict[str, Any], idempotency_key: str
    ) -> models.SendSmsRequest | SendOutcome:
        """The SendSms request for an item, or the reason it cannot be one (failed)."""
        kind = str(payload.get("kind") or "")
        template = self.templates.templates.get(kind)
        if template is None:
            return SendOutcome.failed(
                f"no approved SMS template for {kind!r} (Aliyun sends templates only; "
                f"config/sms_templates.yml maps {', '.join(sorted(FIELDS))})"
            )
        number = mainland_number(address)
        if number is None:
            return SendOutcome.failed(f"not a mainland China number (+86): {address[:4]}…")
        carried = {**dict(payload.get("fields") or {}), **payload}
        values: dict[str, str] = {}
        for variable, field in template.params.items():
            value = carried.get(field)
            if value is None:
                return SendOutcome.failed(f"{kind}: the message has no {field!r} for {variable}")
            values[variable] = str(value)
        return models.SendSmsRequest(
            phone_numbers=number,
            sign_name=self.settings.aliyun_sms_sign_name,
            # a campaign may name its own approved template (storage/campaigns.py)
            template_code=str(payload.get("sms_template") or template.template),
            template_param=json.dumps(values, ensure_ascii=False),
            out_id=out_id(address, payload),
        )

    async def send(
        self, channel: str, address: str, payload: dict[str, Any], idempotency_key: str
    ) -> SendOutcome:
        request = self.request_for(address, payload, idempotency_key)
        if isinstance(request, SendOutcome):
            return request
        try:
            response = await self._client.send_sms_with_options_async(request, self._runtime)
        except TeaException as exc:
            return SendOutcome.retry(f"Aliyun SMS: {exc.code}: {exc.message}"[:300])
        except (OSError, TimeoutError) as exc:
            return SendOutcome.retry(f"Aliyun SMS not reached: {type(exc).__name__}: {exc}"[:300])
        body = response.body
        code = str(body.code or "")
        if code == OK:
            return SendOutcome.ok(str(body.biz_id or ""))
        error = f"Aliyun SMS {code}: {body.message or ''}"[:300]
        if code in LIMITED:
            return SendOutcome.retry(error, LIMITED_RETRY_S)
        if code in REFUSED:
            return SendOutcome.failed(error)
        return SendOutcome.retry(error)

    async def find_sent(
        self, channel: str, address: str, payload: dict[str, Any], since: datetime
    ) -> SendOutcome | None:
        """This item's SMS if Aliyun sent it since ``since``: one to the number with the item's
        OutId, sent since then (an identical message sent before is another item's)."""
        number = mainland_number(address)
        if number is None:
            return None
        wanted = out_id(address, payload)
        earliest = since.astimezone(BEIJING) - CLOCK_SLACK
        days = sorted({earliest.date(), datetime.now(BEIJING).date()})
        for day in days:
            try:
                response = await self._client.query_send_details_with_options_async(
                    models.QuerySendDetailsRequest(
                        phone_number=number, send_date=f"{day:%Y%m%d}", page_size=50, current_page=1
                    ),
                    self._runtime,
                )
            except (TeaException, OSError, TimeoutError) as exc:
                log.warning("aliyun_lookup_failed", error=f"{type(exc).__name__}: {exc}"[:200])
                return None
            found = response.body.sms_send_detail_dtos
            for detail in (found.sms_send_detail_dto or []) if found else []:
                sent = _beijing(detail.send_date)
                if detail.out_id == wanted and sent is not None and sent >= earliest:
                    return SendOutcome.ok(wanted)
        return None

    async def aclose(self) -> None:
        return None


def _beijing(text: str | None) -> datetime | None:
    """Aliyun's "2026-12-07 10:00:00" (Beijing time)."""
    try:
        return datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except ValueError:
        return None
