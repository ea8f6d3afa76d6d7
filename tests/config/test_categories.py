"""config/categories.yml: the shipped file is valid, and every kind of mistake is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config.categories import REQUIRED_CATEGORIES, load_categories
from config.loader import ConfigError
from config.settings import CONFIG_DIR, Settings

SHIPPED = CONFIG_DIR / "categories.yml"


def write(tmp_path: Path, data: object | str) -> Path:
    path = tmp_path / "categories.yml"
    text = data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return path


def shipped() -> dict:
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def test_shipped_file_is_valid_and_complete() -> None:
    cfg = load_categories(SHIPPED)
    assert set(REQUIRED_CATEGORIES) <= set(cfg.categories)
    assert cfg.get("emergency").default_priority == 1
    assert cfg.get("emergency").claim_within.minutes == 2
    assert cfg.get("registration").resolve_within.working_days == 5
    assert not cfg.get("complaint").volunteer_eligible
    assert not cfg.get("bereavement").volunteer_eligible
    assert cfg.get("help_request").volunteer_eligible
    assert cfg.get("complaint").name.get("en") == "Complaint"


def test_bad_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "categories:\n  emergency: {name: [\n")
    with pytest.raises(ConfigError, match=r"categories.yml: line \d+, column \d+: not valid YAML"):
        load_categories(path)


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_categories(tmp_path / "nope.yml")
    with pytest.raises(ConfigError, match="the file is empty"):
        load_categories(write(tmp_path, ""))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["categories"]["help_request"].update(default_priority=0),
            "categories.help_request.default_priority: Input should be greater than or equal to 1",
        ),
        (
            lambda d: d["categories"]["help_request"].update(queue_level="city"),
            "categories.help_request.queue_level: Input should be 'center', 'station' or 'community'",
        ),
        (
            lambda d: d["categories"]["help_request"].update(
                claim_within={"hours": 2, "minutes": 5}
            ),
            "categories.help_request.claim_within: Value error, give exactly one of",
        ),
        (
            lambda d: d["categories"]["help_request"].update(resolve_within={"weeks": 1}),
            "categories.help_request.resolve_within.weeks: Extra inputs are not permitted",
        ),
        (
            lambda d: d["categories"]["help_request"].update(volunteer_elegible=True),
            "categories.help_request.volunteer_elegible: Extra inputs are not permitted",
        ),
        (lambda d: d["categories"].pop("callback"), "missing categories: callback"),
        (
            lambda d: d["categories"]["complaint"].update(volunteer_eligible=True),
            "categories.complaint.volunteer_eligible must be false",
        ),
        (
            lambda d: d["categories"]["emergency"].update(default_priority=2),
            "categories.emergency.default_priority must be 1",
        ),
        (
            lambda d: d["priority"]["factors"].update(age_70_plus={"raise": 1}),
            "priority.factors.age_70_plus",
        ),
    ],
)
def test_each_mistake_is_named(tmp_path: Path, change, message: str) -> None:
    data = shipped()
    change(data)
    with pytest.raises(ConfigError) as info:
        load_categories(write(tmp_path, data))
    assert str(info.value).startswith(str(tmp_path / "categories.yml"))
    assert message in str(info.value)


def test_settings_default_to_sqlite_in_the_data_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HOTLINE_DATABASE_URL", raising=False)
    monkeypatch.setenv("HOTLINE_DATA_DIR", str(tmp_path))
    settings = Settings(_env_file=None)
    assert settings.effective_database_url == f"sqlite:///{tmp_path.resolve()}/hotline.db"
    assert settings.is_sqlite
    monkeypatch.setenv("HOTLINE_DATABASE_URL", "postgresql://u@db/hotline")
    assert Settings(_env_file=None).effective_database_url == "postgresql://u@db/hotline"


def test_settings_typo_is_refused(monkeypatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("HOTLINE_PORT", "eighty")
    with pytest.raises(ValidationError, match="port"):
        Settings(_env_file=None)
