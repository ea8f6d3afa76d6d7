"""Which approved SMS template each kind of message goes as (config/sms_templates.yml), for
providers that send templates only (Alibaba Cloud SMS). Checked when the channel starts: every
kind that may go by SMS has a template, and each template takes only fields its kind has."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.loader import load_yaml_model

FILE = "sms_templates.yml"
# What each kind of SMS carries for a template (the outbox payload's "case", "code" and
# "fields"): the contract between the writers of these messages and the templates.
FIELDS: dict[str, frozenset[str]] = {
    "link_code": frozenset({"code"}),
    "case_claimed": frozenset({"case", "who", "by"}),
    "case_resolved": frozenset({"case"}),
    "staff_reply": frozenset({"case"}),
    "follow_up": frozenset({"case"}),
    "follow_up_reopened": frozenset({"case"}),
    "emergency_alert": frozenset({"case"}),
    "escalation_notice": frozenset({"case"}),
    "check_in": frozenset({"name"}),
    "check_in_family": frozenset({"name", "community"}),
    "family_emergency": frozenset({"name", "community", "case_number"}),
    "family_outcome": frozenset({"name", "community", "case_number"}),
    "campaign": frozenset({"name"}),
}


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str = Field(pattern=r"^SMS_\d+$")
    params: dict[str, str] = Field(default_factory=dict)


class SmsTemplates(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    templates: dict[str, Template]

    @model_validator(mode="after")
    def _every_kind_and_field_known(self) -> SmsTemplates:
        problems = []
        unknown = sorted(set(self.templates) - set(FIELDS))
        if unknown:
            problems.append(f"no such kind of SMS: {', '.join(unknown)}")
        missing = sorted(set(FIELDS) - set(self.templates))
        if missing:
            problems.append(f"no template for {', '.join(missing)}")
        for kind, template in self.templates.items():
            for variable, field in template.params.items():
                if kind in FIELDS and field not in FIELDS[kind]:
                    has = ", ".join(sorted(FIELDS[kind]))
                    problems.append(
                        f"{kind}.params.{variable}: {field!r} is not a field of {kind} ({has})"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def load_sms_templates(config_dir: Path) -> SmsTemplates:
    return load_yaml_model(config_dir / FILE, SmsTemplates)
