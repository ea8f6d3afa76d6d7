"""Settings a deployment types in: a mistake is refused with the setting and the value named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.settings import Settings


def test_outage_numbers_are_a_comma_separated_list() -> None:
    numbers = " +8602188880000, +8613700000001,"
    settings = Settings(_env_file=None, twilio_outage_numbers=numbers)  # type: ignore[call-arg]
    assert settings.outage_number_list == ["+8602188880000", "+8613700000001"]
    assert Settings(_env_file=None).outage_number_list == []  # type: ignore[call-arg]


def test_a_mistyped_outage_number_is_refused_with_the_setting_named() -> None:
    with pytest.raises(ValidationError) as refused:
        numbers = "+8602188880000, 8880000"
        Settings(_env_file=None, twilio_outage_numbers=numbers)  # type: ignore[call-arg]
    assert "twilio_outage_numbers" in str(refused.value) and "'8880000'" in str(refused.value)
