"""A fake Alibaba Cloud SMS API (dysmsapi 2017-05-25): a real HTTP server on 127.0.0.1 that the
real SDK (`alibabacloud-dysmsapi20170525`) talks to, with ``Settings(aliyun_sms_endpoint=
fake.endpoint, aliyun_sms_protocol="HTTP")``. The SDK's RPC calls arrive as a POST to ``/`` with
the action and its parameters in the query string and form (``Action=SendSms``).

- ``SendSms``: checks the request is signed by the known AccessKey (its ``Authorization``
  header, ACS3-HMAC-SHA256, names it; the signature itself is not recomputed), the sign name and the template code are approved (``templates``: code → the
  variables it takes), and ``TemplateParam`` is JSON with exactly those variables; then
  ``{"Code": "OK", "BizId": ...}``, recorded in ``sent``. A broken rule answers as Aliyun does
  (HTTP 200 with a ``Code``: isv.SMS_SIGNATURE_ILLEGAL, isv.SMS_TEMPLATE_ILLEGAL,
  isv.TEMPLATE_MISSING_PARAMETERS, isv.TEMPLATE_PARAMS_ILLEGAL, isv.MOBILE_NUMBER_ILLEGAL).
- ``QuerySendDetails``: the messages sent to ``PhoneNumber`` on ``SendDate`` (yyyyMMdd, a
  Beijing day), with their ``OutId`` and ``SendDate`` (what a lost attempt is looked for by).
- ``fail(code, message, times=1, status=200)``: the next SendSms calls answer that instead
  (``isv.BUSINESS_LIMIT_CONTROL``: too many to one number; status 500 / 503: the service).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

BEIJING = ZoneInfo("Asia/Shanghai")  # Aliyun's dates are Beijing time


class FakeAliyunSms:
    def __init__(self, access_key_id: str, sign_name: str, templates: dict[str, set[str]]) -> None:
        self.access_key_id = access_key_id
        self.sign_name = sign_name
        self.templates = templates
        self.sent: list[dict[str, Any]] = []
        self.requests: list[dict[str, str]] = []
        self._failures: deque[tuple[int, str, str]] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeAliyunSms:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeAliyunSms:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def fail(self, code: str, message: str = "", times: int = 1, status: int = 200) -> None:
        with self._lock:
            self._failures.extend([(status, code, message or code)] * times)

    def _answer(self, params: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        request_id = uuid.uuid4().hex.upper()
        with self._lock:
            self.requests.append(params)
            # The SDK signs with ACS3-HMAC-SHA256: "Credential=<AccessKeyId>,...,Signature=..."
            signed = f"Credential={self.access_key_id}," in authorization
            if not (signed and "Signature=" in authorization):
                return 404, {"Code": "InvalidAccessKeyId.NotFound", "RequestId": request_id}
            action = params.get("Action")
            if action == "QuerySendDetails":
                day = params.get("SendDate", "")
                found = [
                    m
                    for m in self.sent
                    if m["PhoneNum"] == params.get("PhoneNumber") and m["day"] == day
                ]
                details = [{k: v for k, v in m.items() if k != "day"} for m in found]
                return 200, {
                    "Code": "OK",
                    "TotalCount": len(details),
                    "SmsSendDetailDTOs": {"SmsSendDetailDTO": details},
                    "RequestId": request_id,
                }
            if action != "SendSms":
                return 400, {"Code": "InvalidAction", "RequestId": request_id}
            if self._failures:
                status, code, message = self._failures.popleft()
                return status, {"Code": code, "Message": message, "RequestId": request_id}
            problem = self._problem(params)
            if problem is not None:
                return 200, {"Code": problem[0], "Message": problem[1], "RequestId": request_id}
            biz_id = f"{len(self.sent) + 1:06d}^0"
            self.sent.append(
                {
                    "PhoneNum": params["PhoneNumbers"],
                    "TemplateCode": params["TemplateCode"],
                    "Params": json.loads(params["TemplateParam"]),
                    "OutId": params.get("OutId", ""),
                    "BizId": biz_id,
                    "SendStatus": 3,
                    "SendDate": datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
                    "day": datetime.now(BEIJING).strftime("%Y%m%d"),
                }
            )
            return 200, {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": request_id}

    def _problem(self, params: dict[str, str]) -> tuple[str, str] | None:
        if params.get("SignName") != self.sign_name:
            return "isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名"
        takes = self.templates.get(params.get("TemplateCode", ""))
        if takes is None:
            return "isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板"
        number = params.get("PhoneNumbers", "")
        if not (number.isdigit() and len(number) == 11 and number.startswith("1")):
            return "isv.MOBILE_NUMBER_ILLEGAL", "非法手机号"
        try:
            given = json.loads(params.get("TemplateParam") or "{}")
        except ValueError:
            return "isv.TEMPLATE_PARAMS_ILLEGAL", "模板变量不是JSON"
        if set(given) != takes:
            return "isv.TEMPLATE_MISSING_PARAMETERS", f"模板变量缺少或多余: {sorted(given)}"
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                params.update({k: v[-1] for k, v in parse_qs(body).items()})
                # ACS3 requests name the action in a header, older ones in the query.
                params.setdefault("Action", self.headers.get("x-acs-action", ""))
                status, answer = fake._answer(params, self.headers.get("Authorization", ""))
                data = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        return Handler


def wait_for(fake: FakeAliyunSms, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(fake.sent) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(fake.sent)
