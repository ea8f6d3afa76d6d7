"""Message catalogs: the shipped ones agree, and every kind of mistake is named with file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.i18n import MissingText, load_catalogs, placeholders
from config.loader import ConfigError
from config.settings import CONFIG_DIR

SHIPPED = CONFIG_DIR / "messages"


def write(folder: Path, zh: str, en: str, name: str = "common.yml") -> Path:
    for lang, text in (("zh", zh), ("en", en)):
        (folder / lang).mkdir(exist_ok=True)
        (folder / lang / name).write_text(text, encoding="utf-8")
    return folder


def test_shipped_catalogs_agree() -> None:
    catalogs = load_catalogs(SHIPPED)
    assert catalogs.texts["zh"].keys() == catalogs.texts["en"].keys()
    for key, text in catalogs.texts["zh"].items():
        assert placeholders(text) == placeholders(catalogs.texts["en"][key]), key


def test_text_in_each_language_and_default() -> None:
    catalogs = load_catalogs(SHIPPED)
    assert catalogs.text("emergency.call_120", "zh") == "如有危险，请立即拨打120。"
    assert catalogs.text("emergency.call_120", "en") == "If you are in danger, call 120 now."
    assert catalogs.text("emergency.call_120", "fr") == "如有危险，请立即拨打120。"
    assert catalogs.text("choices.press", "zh", label="对", digit=1) == "对请按1"


def test_code_asking_for_what_is_not_there() -> None:
    catalogs = load_catalogs(SHIPPED)
    with pytest.raises(MissingText, match=r"no message 'nope\.nothing'"):
        catalogs.text("nope.nothing", "zh")
    with pytest.raises(MissingText, match=r"'case\.filed' needs kind, number"):
        catalogs.text("case.filed", "en")


@pytest.mark.parametrize(
    ("zh", "en", "file", "message"),
    [
        ("a: 一\nb: 二\n", "a: one\n", "en/common.yml", "b: missing (it is in zh/common.yml)"),
        ("a: 一\n", "a: one\nc: three\n", "en/common.yml", "c: not in zh/common.yml"),
        (
            "a: '{name}您好'\n",
            "a: 'Hello {nam}'\n",
            "en/common.yml",
            "a: placeholders ['nam'] differ",
        ),
        ("a:\n  b: ''\n", "a:\n  b: x\n", "zh/common.yml", "a.b: expected a non-empty text"),
        ("a: [\n", "a: x\n", "zh/common.yml", "line 2, column 1: not valid YAML"),
    ],
)
def test_mistakes_name_file_and_key(
    tmp_path: Path, zh: str, en: str, file: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_catalogs(write(tmp_path, zh, en))
    assert str(info.value).startswith(str(tmp_path / file))
    assert message in str(info.value)


def test_files_of_a_language_are_merged(tmp_path: Path) -> None:
    write(tmp_path, "a: 一\n", "a: one\n")
    write(tmp_path, "h:\n  ask: 问\n", "h:\n  ask: ask\n", name="handler.yml")
    catalogs = load_catalogs(tmp_path)
    assert catalogs.text("h.ask", "en") == "ask"
    assert catalogs.text("a", "zh") == "一"


def test_a_key_in_two_files_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "a: 一\n", "a: one\n")
    write(tmp_path, "a: 二\n", "a: two\n", name="other.yml")
    with pytest.raises(ConfigError, match=r"a: also in common\.yml"):
        load_catalogs(tmp_path)


def test_a_file_missing_in_one_language(tmp_path: Path) -> None:
    write(tmp_path, "a: 一\n", "a: one\n")
    (tmp_path / "zh" / "extra.yml").write_text("b: 二\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_catalogs(tmp_path)
    assert str(info.value).startswith(str(tmp_path / "en" / "extra.yml"))
    assert "missing (there is zh/extra.yml)" in str(info.value)


def test_an_unquoted_yes_key_is_named(tmp_path: Path) -> None:
    write(tmp_path, "confirm:\n  yes: 对\n", "confirm:\n  yes: Yes\n")
    with pytest.raises(ConfigError, match=r"confirm\.True: quote this key"):
        load_catalogs(tmp_path)
