"""The one settings object of a deployment: environment variables prefixed HOTLINE_, optional .env."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, computed_field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CONFIG_DIR = Path(__file__).resolve().parent
E164 = re.compile(r"\+[1-9][0-9]{6,14}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HOTLINE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(
        default=Path("data"), description="Where the SQLite file and caches live."
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means an SQLite file in data_dir.",
    )
    config_dir: Path = Field(default=CONFIG_DIR, description="Folder with the deployment's YAML.")
    timezone: str = "Asia/Shanghai"
    default_language: str = Field(default="zh", pattern="^(zh|en)$")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="`hotline serve` processes on the one port (uvicorn workers); about one per "
        "CPU core, as a turn holds Python's lock while it runs. The outbox and the idle sweep "
        "run in one of them.",
    )
    turn_threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Threads per `hotline serve` process that run turns and the channels' other "
        "database work. A turn holds Python's lock except while it waits for the database, so "
        "more threads mostly fight over that lock (benchmarks/webhook_bench.py: 40 threads cost "
        "7.2 ms of CPU per message, 2 threads 5.7 ms); raise it when the database is far away.",
    )
    nlu_backend: Literal["embedded", "rasa"] = Field(
        default="embedded", description="embedded (default, no server) or rasa (a Rasa server)."
    )
    rasa_url: str = Field(
        default="", description="Base URL of a Rasa server, for nlu_backend=rasa."
    )
    rasa_timeout_s: float = Field(default=2.0, gt=0, le=30)
    log_level: str = "INFO"
    log_json: bool = True

    # -- channels (each is switched off, and said so at start-up, until configured) ---------
    public_url: str = Field(
        default="",
        description="The URL the outside world calls us at (https://hotline.example.org); "
        "Twilio signs webhooks against it, so it must be what Twilio was given.",
    )
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from_number: str = Field(default="", description="Our number, E.164 (+1...).")
    twilio_whatsapp_from: str = Field(
        default="", description="Our WhatsApp sender (whatsapp:+...); empty: no WhatsApp."
    )
    twilio_api_url: str = Field(
        default="", description="REST base other than api.twilio.com (tests, gateways)."
    )
    twilio_voice: str = Field(default="Polly.Zhiyu", description="Text-to-speech voice (Chinese).")
    twilio_voice_language: str = Field(default="cmn-CN", description="<Say> language (Chinese).")
    twilio_voice_en: str = Field(
        default="Polly.Joanna", description="Text-to-speech voice (English)."
    )
    twilio_speech_language: str = Field(
        default="cmn-Hans-CN", description="<Gather> speech recognition language (Chinese)."
    )
    twilio_ring_timeout_s: int = Field(default=20, ge=5, le=60)
    twilio_low_confidence: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Speech heard with less confidence is confirmed by key.",
    )
    twilio_outage_numbers: str = Field(
        default="",
        description="While the database cannot be reached, a call is put through to these "
        "numbers (the community centre's own phones), comma-separated E.164 (+86...); empty: "
        "the caller is told to call 120 if in danger and that we will call back.",
    )
    telegram_bot_token: str = ""
    telegram_webhook_secret: str = ""
    telegram_api_url: str = Field(
        default="https://api.telegram.org", description="Bot API base (tests use a fake)."
    )
    # WeChat Official Account (服务号): bot/channels/wechat/. On with the token, AppID and secret.
    wechat_token: str = Field(
        default="", description="The Token set in the account's server settings."
    )
    wechat_app_id: str = ""
    wechat_app_secret: str = ""
    wechat_aes_key: str = Field(
        default="",
        description="EncodingAESKey (43 characters), for safe mode (安全模式); empty: plain mode.",
    )
    wechat_api_url: str = Field(
        default="https://api.weixin.qq.com/cgi-bin/", description="API base (tests use a fake)."
    )
    wechat_reply_within_s: float = Field(
        default=4.0,
        gt=0,
        lt=5,
        description="A turn done this soon is answered in the webhook's own reply; a slower "
        "one gets 'success' and its reply goes by the customer-service API (WeChat waits 5 s).",
    )
    wechat_notice_template_id: str = Field(
        default="",
        description="Template message for a notice outside the 48-hour customer-service window "
        "(fields in config/channels/wechat.yml); empty: such a notice goes by SMS.",
    )
    # WeCom (企业微信) app for staff and volunteers: bot/channels/wecom/. On with all five.
    wecom_corp_id: str = Field(default="", description="The organisation's CorpID (ww...).")
    wecom_agent_id: int = Field(default=0, ge=0, description="The app's AgentId.")
    wecom_secret: str = Field(default="", description="The app's Secret.")
    wecom_token: str = Field(default="", description="The app's callback Token.")
    wecom_aes_key: str = Field(default="", description="The callback EncodingAESKey (43).")
    wecom_api_url: str = Field(
        default="https://qyapi.weixin.qq.com/cgi-bin/", description="API base (tests: a fake)."
    )
    # The self-hosted one-key phone line over SIP (`hotline sip`): bot/channels/sip/.
    sip_registrar: str = Field(
        default="",
        description="Where the line registers: the PBX or trunk, sip:pbx.example.org:5060.",
    )
    sip_user: str = Field(default="", description="The extension or trunk user (e.g. 8001).")
    sip_password: str = Field(default="", description="Its digest password (empty: none).")
    sip_domain: str = Field(
        default="", description="The SIP domain (default: the registrar's host)."
    )
    sip_bind: str = Field(default="0.0.0.0", description="Local address for SIP and RTP.")
    sip_port: int = Field(default=5070, ge=1, le=65535, description="Local SIP port (UDP).")
    sip_rtp_port: int = Field(default=40000, ge=1024, le=65000, description="First RTP port.")
    sip_max_calls: int = Field(
        default=4,
        ge=1,
        le=4,
        description="Calls at once in one `hotline sip` process (the pjsua2 wheel allows 4; "
        "run more processes, each its own extension, for more).",
    )
    sip_recogniser: str = Field(
        default="",
        description="A speech recogniser for the SIP line, as module:function (the recording's "
        "path and the language to words); none ships (bot/channels/sip/line.py).",
    )
    sip_register_s: int = Field(
        default=60,
        ge=5,
        le=3600,
        description="How long a registration lasts; it is renewed a few seconds before. Short, "
        "so a PBX that restarted and forgot the extension finds it again soon.",
    )
    # Alibaba Cloud SMS (阿里云短信): bot/channels/aliyun_sms/. Sends the outbox's SMS (instead
    # of Twilio) as approved templates (config/sms_templates.yml). On with the key and sign name.
    aliyun_sms_access_key_id: str = ""
    aliyun_sms_access_key_secret: str = ""
    aliyun_sms_sign_name: str = Field(default="", description="The approved signature (签名).")
    aliyun_sms_endpoint: str = Field(
        default="dysmsapi.aliyuncs.com", description="API host[:port] (tests use a fake)."
    )
    aliyun_sms_protocol: Literal["HTTPS", "HTTP"] = "HTTPS"
    api_tokens: str = Field(
        default="",
        description="No longer read (a warning at start-up says so): every JSON route takes "
        "personal tokens, made with `hotline users token`.",
    )
    # -- the staff console -------------------------------------------------------------------
    secret_key: str = Field(
        default="",
        description="Signs the console's session cookies; the same on every server. Empty: a "
        "random key kept in data_dir/secret_key (one server only).",
    )
    session_hours: int = Field(default=12, ge=1, le=24 * 30, description="Console sign-in lasts.")
    max_failed_logins: int = Field(
        default=5, ge=1, le=100, description="Wrong passwords in a row before the account locks."
    )
    lock_minutes: int = Field(default=15, ge=1, le=24 * 60, description="How long a lock lasts.")
    run_worker: bool = Field(
        default=True,
        description="`hotline serve` sends the outbox itself; turn off when `hotline worker` "
        "runs as its own process (several servers).",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'hotline.db').resolve()}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def nlu_cache_dir(self) -> Path:
        """Where the trained embedded model is cached (rebuilt when the data changes)."""
        return self.data_dir / "nlu-cache"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def twilio_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from_number)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def telegram_enabled(self) -> bool:
        return bool(self.telegram_bot_token)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def wechat_enabled(self) -> bool:
        return bool(self.wechat_token and self.wechat_app_id and self.wechat_app_secret)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def wecom_enabled(self) -> bool:
        return bool(
            self.wecom_corp_id
            and self.wecom_agent_id
            and self.wecom_secret
            and self.wecom_token
            and self.wecom_aes_key
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def sip_enabled(self) -> bool:
        return bool(self.sip_registrar and self.sip_user)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def aliyun_sms_enabled(self) -> bool:
        return bool(
            self.aliyun_sms_access_key_id
            and self.aliyun_sms_access_key_secret
            and self.aliyun_sms_sign_name
        )

    @field_validator("wechat_aes_key", "wecom_aes_key")
    @classmethod
    def _aes_key(cls, value: str) -> str:
        if value and len(value) != 43:
            raise ValueError(f"EncodingAESKey has 43 characters, not {len(value)}")
        return value

    @field_validator("twilio_outage_numbers")
    @classmethod
    def _e164_list(cls, value: str) -> str:
        for number in _comma_list(value):
            if not E164.fullmatch(number):
                raise ValueError(f"{number!r} is not an E.164 number like +8613800000000")
        return value

    @property
    def outage_number_list(self) -> list[str]:
        return _comma_list(self.twilio_outage_numbers)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


def _comma_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
