"""The WeChat Official Account's own configuration (config/wechat.yml): the menu and the notice
template's fields. Read by the WeChat channel when it is switched on, checked then."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.loader import load_yaml_model

FILE = "wechat.yml"
PLACES = ("case", "text", "date")  # what a template field may hold


class Button(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=8)
    key: str = Field(default="", max_length=100)
    means: str = ""  # a click is taken as these words
    link: bool = False  # a click starts linking the account
    buttons: tuple[Button, ...] = Field(default=(), max_length=5)

    @model_validator(mode="after")
    def _one_kind(self) -> Button:
        if self.buttons:
            if self.key or self.means or self.link:
                raise ValueError(f"{self.name!r} has buttons under it: no key, means or link")
            for button in self.buttons:
                if button.buttons:
                    raise ValueError(f"{button.name!r}: WeChat menus have two levels only")
        elif not self.key:
            raise ValueError(f"{self.name!r} needs a key (or buttons under it)")
        elif bool(self.means) == self.link:
            raise ValueError(f"{self.name!r} needs either `means` or `link: true`")
        return self


class NoticeTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_chars: int = Field(default=20, ge=1, le=200)
    data: dict[str, str] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_places(self) -> NoticeTemplate:
        for name, value in self.data.items():
            try:
                value.format(**{place: "" for place in PLACES})
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"data.{name}: {value!r} may hold only {{case}}, {{text}} and {{date}}"
                ) from exc
        return self


class WeChatConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    menu: tuple[Button, ...] = Field(min_length=1, max_length=3)
    link_words: tuple[str, ...] = Field(min_length=1)
    notice_template: NoticeTemplate

    @model_validator(mode="after")
    def _keys_once(self) -> WeChatConfig:
        keys = [b.key for top in self.menu for b in (top, *top.buttons) if b.key]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"menu keys used twice: {', '.join(twice)}")
        for top in self.menu:
            if len(top.name) > 4:
                raise ValueError(f"{top.name!r}: a top button has at most 4 characters")
        return self

    def click(self, key: str) -> Button | None:
        for top in self.menu:
            for button in (top, *top.buttons):
                if button.key and button.key == key:
                    return button
        return None

    def wechat_menu(self) -> dict[str, object]:
        """The menu as WeChat's menu/create takes it."""

        def one(button: Button) -> dict[str, object]:
            if button.buttons:
                return {"name": button.name, "sub_button": [one(b) for b in button.buttons]}
            return {"type": "click", "name": button.name, "key": button.key}

        return {"button": [one(top) for top in self.menu]}


def load_wechat(config_dir: Path) -> WeChatConfig:
    return load_yaml_model(config_dir / FILE, WeChatConfig)
