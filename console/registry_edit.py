"""The profile form: what staff typed, checked field by field, and the changes it makes.

What was typed is kept as typed: a form with a mistake comes back with every field as it was and
the reason next to the field. Phone numbers are stored as the importer stores them (E.164, by
storage.registry_format.to_e164), so a number typed as 138-1234-5678 finds its caller. The audit
log gets the names of the changed fields, never their values. Verifying a registration (status
pending → active, after the first visit) is an edit like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from config.i18n import LANGUAGES
from console.registry import Scope
from console.web import form_text
from storage.audit import record_access
from storage.models import (
    EmergencyContact,
    Hardship,
    Retiree,
    RetireePhone,
    RetireeStatus,
    SelfCare,
    Staff,
)
from storage.phones import InvalidPhoneNumber
from storage.registry_format import CellError, parse_birth_date, to_e164
from storage.types import utcnow

# Free-text fields of the Retiree row and their longest length.
TEXTS = {"name": 100, "address": 300, "health_class": 40}
# The six clears (六清楚) of the file.
NOTES = (
    "family_notes",
    "health_notes",
    "income_notes",
    "wishes_notes",
    "skills_notes",
    "service_needs_notes",
)
NOTES_LIMIT = 4000
CHOICES: dict[str, tuple[str, ...]] = {
    "self_care": tuple(m.value for m in SelfCare),
    "hardship": tuple(m.value for m in Hardship),
    "status": tuple(m.value for m in RetireeStatus),
    "preferred_language": LANGUAGES,
}
FLAGS = ("lives_alone", "party_member")
LIMITS = {"phone_label": 20, "contact_name": 100, "contact_relation": 40}


@dataclass(frozen=True)
class FieldError:
    key: str  # catalog key
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class PhoneRow:
    number: str = ""
    label: str = ""


@dataclass
class ContactRow:
    name: str = ""
    relation: str = ""
    phone: str = ""


@dataclass
class ProfileForm:
    """The form's fields as text, as shown or as typed."""

    fields: dict[str, str]
    phones: list[PhoneRow]
    contacts: list[ContactRow]
    version: str  # the profile's updated_at when the form was shown
    errors: dict[str, FieldError] = field(default_factory=dict)

    @classmethod
    def of(cls, retiree: Retiree) -> ProfileForm:
        fields = {name: str(getattr(retiree, name) or "") for name in (*TEXTS, *NOTES)}
        fields["birth_date"] = retiree.birth_date.isoformat() if retiree.birth_date else ""
        fields["community_id"] = str(retiree.community_id or "")
        for name in CHOICES:
            fields[name] = str(getattr(retiree, name))
        for name in FLAGS:
            fields[name] = "1" if getattr(retiree, name) else ""
        return cls(
            fields=fields,
            phones=[PhoneRow(p.number, p.label) for p in retiree.phones],
            contacts=[ContactRow(c.name, c.relation, c.phone) for c in retiree.emergency_contacts],
            version=version_of(retiree),
        )

    @classmethod
    def submitted(cls, form: FormData) -> ProfileForm:
        names = (*TEXTS, *NOTES, "birth_date", "community_id", *CHOICES, *FLAGS)
        fields = {name: form_text(form, name) for name in names}
        phones = [
            PhoneRow(number, label)
            for number, label in _columns(form, "phone_number", "phone_label")
        ]
        contacts = [
            ContactRow(name, relation, phone)
            for name, relation, phone in _columns(
                form, "contact_name", "contact_relation", "contact_phone"
            )
        ]
        return cls(fields, phones, contacts, form_text(form, "version"))

    def rows_to_show(self) -> tuple[list[PhoneRow], list[ContactRow]]:
        """The rows with one empty row each to add a phone or a contact."""
        return [*self.phones, PhoneRow()], [*self.contacts, ContactRow()]


def version_of(retiree: Retiree) -> str:
    return retiree.updated_at.isoformat() if retiree.updated_at else ""


def _columns(form: FormData, *names: str) -> list[tuple[str, ...]]:
    """Repeated fields side by side (row i of each), padded with "" where one is short."""
    lists = [[v.strip() if isinstance(v, str) else "" for v in form.getlist(n)] for n in names]
    rows = max((len(values) for values in lists), default=0)
    return [tuple(values[i] if i < len(values) else "" for values in lists) for i in range(rows)]


@dataclass
class Cleaned:
    """A valid form: the Retiree attributes, phones (E.164, label), contacts (name, relation,
    E.164)."""

    attributes: dict[str, Any]
    phones: list[tuple[str, str]]
    contacts: list[tuple[str, str, str]]


class ProfileChecker:
    """Checks a submitted form for one retiree; puts every problem in ``form.errors``."""

    def __init__(
        self,
        session: Session,
        retiree: Retiree,
        scope: Scope,
        community_ids: set[int],
        today: date,
    ) -> None:
        self.session, self.retiree, self.scope = session, retiree, scope
        self.community_ids, self.today = community_ids, today

    def check(self, form: ProfileForm) -> Cleaned | None:
        errors = form.errors
        attributes: dict[str, Any] = {}
        for name, limit in TEXTS.items():
            attributes[name] = self._limited(form, name, limit)
        if not form.fields["name"]:
            errors["name"] = FieldError("console.registry.errors.required")
        for name in NOTES:
            attributes[name] = self._limited(form, name, NOTES_LIMIT)
        for name, allowed in CHOICES.items():
            value = form.fields[name]
            if value not in allowed:
                errors[name] = FieldError("console.registry.errors.bad_choice")
            attributes[name] = value
        for name in FLAGS:
            attributes[name] = bool(form.fields[name])
        attributes["birth_date"] = self._birth_date(form)
        attributes["community_id"] = self._community(form)
        phones = self._phones(form)
        contacts = self._contacts(form)
        if form.version != version_of(self.retiree):
            errors["_form"] = FieldError("console.registry.errors.changed_meanwhile")
            form.version = version_of(self.retiree)  # saving again overwrites, knowingly
        if errors:
            return None
        attributes["self_care"] = SelfCare(attributes["self_care"])
        attributes["hardship"] = Hardship(attributes["hardship"])
        attributes["status"] = RetireeStatus(attributes["status"])
        return Cleaned(attributes, phones, contacts)

    def _limited(self, form: ProfileForm, name: str, limit: int) -> str:
        value = form.fields[name]
        if len(value) > limit:
            form.errors[name] = FieldError("console.registry.errors.too_long", {"limit": limit})
        return value

    def _birth_date(self, form: ProfileForm) -> date | None:
        text = form.fields["birth_date"]
        try:
            return parse_birth_date(text, self.today)
        except CellError:
            form.errors["birth_date"] = FieldError("console.registry.errors.bad_date")
            return None

    def _community(self, form: ProfileForm) -> int | None:
        text = form.fields["community_id"]
        if not text:
            if not self.scope.everything:
                # Staff would lose sight of the person: only an admin may leave it empty.
                form.errors["community_id"] = FieldError(
                    "console.registry.errors.community_required"
                )
            return None
        if not text.isdecimal() or int(text) not in self.community_ids:
            form.errors["community_id"] = FieldError("console.registry.errors.bad_community")
            return None
        return int(text)

    def _phones(self, form: ProfileForm) -> list[tuple[str, str]]:
        phones: list[tuple[str, str]] = []
        seen: set[str] = set()
        for i, row in enumerate(form.phones):
            if not row.number:
                continue  # an emptied number removes the phone
            where = f"phone.{i}"
            if len(row.label) > LIMITS["phone_label"]:
                limit = LIMITS["phone_label"]
                form.errors[where] = FieldError(
                    "console.registry.errors.too_long", {"limit": limit}
                )
            try:
                number = to_e164(row.number)
            except InvalidPhoneNumber:
                form.errors[where] = FieldError("console.registry.errors.bad_phone")
                continue
            if number in seen:
                form.errors[where] = FieldError("console.registry.errors.phone_repeated")
                continue
            seen.add(number)
            phones.append((number, row.label))
        taken = self._taken({number for number, _ in phones})
        for i, row in enumerate(form.phones):
            if row.number and _e164_or_none(row.number) in taken:
                form.errors[f"phone.{i}"] = FieldError("console.registry.errors.phone_taken")
        return phones

    def _taken(self, numbers: set[str]) -> set[str]:
        """The numbers that belong to another retiree (a phone identifies one person)."""
        if not numbers:
            return set()
        query = select(RetireePhone.number).where(
            RetireePhone.number.in_(sorted(numbers)), RetireePhone.retiree_id != self.retiree.id
        )
        return set(self.session.scalars(query))

    def _contacts(self, form: ProfileForm) -> list[tuple[str, str, str]]:
        contacts: list[tuple[str, str, str]] = []
        for i, row in enumerate(form.contacts):
            if not (row.name or row.relation or row.phone):
                continue  # an emptied row removes the contact
            where = f"contact.{i}"
            if not row.name or not row.phone:
                form.errors[where] = FieldError("console.registry.errors.contact_incomplete")
                continue
            for name, value in (("contact_name", row.name), ("contact_relation", row.relation)):
                if len(value) > LIMITS[name]:
                    form.errors[where] = FieldError(
                        "console.registry.errors.too_long", {"limit": LIMITS[name]}
                    )
            try:
                contacts.append((row.name, row.relation, to_e164(row.phone)))
            except InvalidPhoneNumber:
                form.errors[where] = FieldError("console.registry.errors.bad_phone")
        return contacts


def _e164_or_none(text: str) -> str | None:
    try:
        return to_e164(text)
    except InvalidPhoneNumber:
        return None


def apply_changes(session: Session, staff: Staff, retiree: Retiree, cleaned: Cleaned) -> list[str]:
    """Write what differs; returns the names of the changed fields (audited, without values)."""
    changed = [
        name for name, value in cleaned.attributes.items() if getattr(retiree, name) != value
    ]
    for name in changed:
        setattr(retiree, name, cleaned.attributes[name])
    if _set_phones(retiree, cleaned.phones):
        changed.append("phones")
    if _set_contacts(retiree, cleaned.contacts):
        changed.append("emergency_contacts")
    if not changed:
        return []
    retiree.updated_at = utcnow()  # also when only phones or contacts changed: the form's version
    record_access(
        session,
        actor=staff,
        actor_label=staff.role.value,
        action="update_retiree",
        subject_type="retiree",
        subject_id=retiree.id,
        detail={"fields": sorted(changed)},
    )
    session.flush()
    return changed


def _set_phones(retiree: Retiree, wanted: list[tuple[str, str]]) -> bool:
    """Keep the rows of numbers still wanted (a number is unique: it is never deleted and
    inserted again in one flush), drop the others, add the new ones."""
    if sorted((p.number, p.label) for p in retiree.phones) == sorted(wanted):
        return False
    labels = dict(wanted)
    for phone in list(retiree.phones):
        if phone.number in labels:
            phone.label = labels.pop(phone.number)
        else:
            retiree.phones.remove(phone)
    for number, label in wanted:
        if number in labels:
            retiree.phones.append(RetireePhone(number=number, label=label))
    return True


def _set_contacts(retiree: Retiree, wanted: list[tuple[str, str, str]]) -> bool:
    current = retiree.emergency_contacts
    if [(c.name, c.relation, c.phone) for c in current] == wanted:
        return False
    for contact, (name, relation, phone) in zip(current, wanted, strict=False):
        contact.name, contact.relation, contact.phone = name, relation, phone
    for name, relation, phone in wanted[len(current) :]:
        current.append(EmergencyContact(name=name, relation=relation, phone=phone))
    del current[len(wanted) :]
    return True
