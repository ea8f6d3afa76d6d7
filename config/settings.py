"""The one settings object of a deployment: environment variables prefixed HOTLINE_, optional .env."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, computed_field
from pydantic_settings import BaseSettings, SettingsConfigDict

CONFIG_DIR = Path(__file__).resolve().parent


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
    nlu_backend: Literal["embedded", "rasa"] = Field(
        default="embedded", description="embedded (default, no server) or rasa (a Rasa server)."
    )
    rasa_url: str = Field(
        default="", description="Base URL of a Rasa server, for nlu_backend=rasa."
    )
    rasa_timeout_s: float = Field(default=2.0, gt=0, le=30)
    log_level: str = "INFO"
    log_json: bool = True

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
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
