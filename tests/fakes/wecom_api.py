"""A fake WeCom (企业微信) API: the server of tests/fakes/wechat_api.py answering WeCom's paths,
for wechatpy's enterprise client (``Settings(wecom_api_url=fake.url)``).

- ``GET  /cgi-bin/gettoken?corpid=&corpsecret=`` → a token (a wrong secret: errcode 40001).
- ``POST /cgi-bin/message/send``: a ``text`` or a ``template_card`` to ``touser`` ("a|b|c") of
  ``agentid``; recorded in ``sent``; a card with buttons gets a ``response_code`` (once-only,
  for updating it), as WeCom gives one. Users not in ``users`` come back in ``invaliduser``.
- ``POST /cgi-bin/message/update_template_card``: needs an unused ``response_code`` of a card
  (each works once: errcode 40209 after, the fake's choice of code); recorded in ``updates``.
- ``response_code_for_tap()``: a fresh code, as WeCom's callback of a tap carries.

``fail(path, errcode)``, ``end_tokens()`` and ``delay_s`` as in the WeChat fake.
"""

from __future__ import annotations

import itertools
from typing import Any

from tests.fakes.wechat_api import FakeWeChatApi, Seen

USED_CODE = 40209


class FakeWeComApi(FakeWeChatApi):
    def __init__(self, corp_id: str, secret: str, agent_id: int, users: set[str]) -> None:
        super().__init__(corp_id, secret)
        self.agent_id = agent_id
        self.users = users
        self.sent: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self._codes: set[str] = set()
        self._numbers = itertools.count(1)

    def response_code_for_tap(self) -> str:
        with self._lock:
            return self._new_code()

    def _new_code(self) -> str:
        code = f"RC-{next(self._numbers)}"
        self._codes.add(code)
        return code

    def _answer(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> Any:
        with self._lock:
            self.requests.append(Seen(method, path, query, body))
            if path == "/cgi-bin/gettoken":
                if query.get("corpid") != self.app_id or query.get("corpsecret") != self.secret:
                    return {"errcode": 40001, "errmsg": "invalid secret"}
                self.tokens_issued += 1
                token = f"WWTOKEN-{self.tokens_issued}"
                self._valid.add(token)
                return {"errcode": 0, "access_token": token, "expires_in": 7200}
            if query.get("access_token") not in self._valid:
                return {"errcode": 42001, "errmsg": "access_token expired"}
            failures = self._failures.get(path)
            if failures:
                errcode, errmsg = failures.popleft()
                return {"errcode": errcode, "errmsg": errmsg}
            if body.get("agentid") != self.agent_id:
                return {"errcode": 301002, "errmsg": "not allow operate another agent"}
            if path == "/cgi-bin/message/send":
                to = [u for u in str(body.get("touser", "")).split("|") if u]
                invalid = [u for u in to if u not in self.users]
                self.sent.append(body)
                answer: dict[str, Any] = {
                    "errcode": 0,
                    "errmsg": "ok",
                    "invaliduser": "|".join(invalid),
                    "msgid": f"msg-{len(self.sent)}",
                }
                card = body.get("template_card") or {}
                if card.get("button_list"):
                    answer["response_code"] = self._new_code()
                return answer
            if path == "/cgi-bin/message/update_template_card":
                code = str(body.get("response_code", ""))
                if code not in self._codes:
                    return {"errcode": USED_CODE, "errmsg": "response_code used or unknown"}
                self._codes.discard(code)
                self.updates.append(body)
                return {"errcode": 0, "errmsg": "ok", "invaliduser": []}
            return {"errcode": 60011, "errmsg": f"no privilege to access {path}"}
