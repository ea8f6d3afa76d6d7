"""The case database: units, retirees, staff, cases and their audit trail, messages, outbox."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from storage.types import UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    """Enums are stored as short strings with a CHECK constraint (portable, easy to extend)."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=24,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class UnitLevel(enum.StrEnum):
    CENTER = "center"
    STATION = "station"
    COMMUNITY = "community"


class SelfCare(enum.StrEnum):
    INDEPENDENT = "independent"
    PARTLY_DEPENDENT = "partly_dependent"
    DEPENDENT = "dependent"


class Hardship(enum.StrEnum):
    NONE = "none"
    HARDSHIP = "hardship"
    DIBAO = "dibao"


class RetireeStatus(enum.StrEnum):
    PENDING = "pending"  # registered by an unknown caller, to be verified by staff
    ACTIVE = "active"
    INACTIVE = "inactive"  # deceased or moved away; kept for the record


class Role(enum.StrEnum):
    ADMIN = "admin"
    STAFF = "staff"
    VOLUNTEER = "volunteer"


class CaseStatus(enum.StrEnum):
    OPEN = "open"  # waiting in its unit's queue
    CLAIMED = "claimed"  # somebody is working on it
    RESOLVED = "resolved"  # done, waiting for follow-up and closing
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class MessageStatus(enum.StrEnum):
    """Where a message stands (storage/messages.py writes every one)."""

    # A conversation turn: what the person said, what the bot answered.
    RECEIVED = "received"
    REPLIED = "replied"
    # An inbound message no turn ran for.
    FOLLOW_UP = "follow_up"  # the answer to a follow-up question (回访)
    CHECK_IN = "check_in"  # the answer to a check-in (storage/check_ins.py: 1 well, 2 help)
    OPTED_OUT = "opted_out"  # an SMS "STOP"
    UNREADABLE = "unreadable"  # a picture, a voice note, a location with no text
    EMPTY = "empty"
    # A case posted to staff, kept up with its case (bot/channels/telegram/staff.py): it has a
    # Claim button (posted), it says who took the case (taken: it may come back to the queue);
    # settled once the case is done with.
    POSTED = "posted"
    TAKEN = "taken"
    SETTLED = "settled"
    # The delivery of a message we sent, moving forward only (messages.DELIVERY_RANK).
    ACCEPTED = "accepted"  # also: a key pressed at a call screening (a call's record)
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"  # also: a post recorded before posts were kept up (migration 0007)
    CANCELED = "canceled"
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    PARTIALLY_DELIVERED = "partially_delivered"
    DELIVERED = "delivered"
    READ = "read"
    # A phone call's record: its statuses and those of the numbers it was put through to.
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    ANSWERED = "answered"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    NOT_ACCEPTED = "not-accepted"  # a number picked up (a voicemail?) and pressed no key
    # A provider's status word we do not know (kept as it came in the payload's "status").
    UNKNOWN = "unknown"


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"  # gave up after the last attempt; shown to staff
    CANCELLED = "cancelled"  # called off before it was sent (kept for the record, never sent)


class Unit(Base):
    """A center, station or community: each has its own staff and its own queue of cases."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    level: Mapped[UnitLevel] = mapped_column(_enum(UnitLevel, "unit_level"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), index=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    # The unit's Telegram group chat, where its new cases are posted with a Claim button.
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)

    parent: Mapped[Unit | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Unit]] = relationship(back_populates="parent")

    def name(self, language: str) -> str:
        return self.name_en if language == "en" else self.name_zh

    def __repr__(self) -> str:
        return f"<Unit {self.code} {self.level}>"


staff_units = Table(
    "staff_units",
    Base.metadata,
    Column("staff_id", ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True),
    Column("unit_id", ForeignKey("units.id", ondelete="CASCADE"), primary_key=True),
)


class Retiree(Base):
    __tablename__ = "retirees"
    # A community's retirees, and counts of them by status (reports, visit lists) from the
    # index alone.
    __table_args__ = (Index("ix_retirees_community_status", "community_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[date | None] = mapped_column(Date)
    community_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    address: Mapped[str] = mapped_column(String(300), default="")
    lives_alone: Mapped[bool] = mapped_column(Boolean, default=False)
    self_care: Mapped[SelfCare] = mapped_column(
        _enum(SelfCare, "self_care"), default=SelfCare.INDEPENDENT
    )
    hardship: Mapped[Hardship] = mapped_column(_enum(Hardship, "hardship"), default=Hardship.NONE)
    health_class: Mapped[str] = mapped_column(String(40), default="")
    party_member: Mapped[bool] = mapped_column(Boolean, default=False)
    preferred_language: Mapped[str] = mapped_column(String(2), default="zh")
    status: Mapped[RetireeStatus] = mapped_column(
        _enum(RetireeStatus, "retiree_status"), default=RetireeStatus.ACTIVE
    )
    # Consent flags, e.g. {"contact_by_message": true, "share_with_volunteers": false}.
    consents: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The "six clears" (六清楚) of the retiree's file.
    family_notes: Mapped[str] = mapped_column(Text, default="")
    health_notes: Mapped[str] = mapped_column(Text, default="")
    income_notes: Mapped[str] = mapped_column(Text, default="")
    wishes_notes: Mapped[str] = mapped_column(Text, default="")
    skills_notes: Mapped[str] = mapped_column(Text, default="")
    service_needs_notes: Mapped[str] = mapped_column(Text, default="")
    registered_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    community: Mapped[Unit | None] = relationship()
    phones: Mapped[list[RetireePhone]] = relationship(
        back_populates="retiree", cascade="all, delete-orphan", order_by="RetireePhone.id"
    )
    emergency_contacts: Mapped[list[EmergencyContact]] = relationship(
        back_populates="retiree", cascade="all, delete-orphan", order_by="EmergencyContact.id"
    )
    identities: Mapped[list[MessagingIdentity]] = relationship(
        back_populates="retiree", cascade="all, delete-orphan"
    )
    visits: Mapped[list[Visit]] = relationship(
        back_populates="retiree", cascade="all, delete-orphan", order_by="Visit.visited_on"
    )

    def age_on(self, day: date) -> int | None:
        if self.birth_date is None:
            return None
        born = self.birth_date
        return day.year - born.year - ((day.month, day.day) < (born.month, born.day))

    def __repr__(self) -> str:  # no personal data in logs or tracebacks
        return f"<Retiree #{self.id}>"


class RetireePhone(Base):
    """A phone number (E.164) that identifies its retiree when they call or text."""

    __tablename__ = "retiree_phones"

    id: Mapped[int] = mapped_column(primary_key=True)
    retiree_id: Mapped[int] = mapped_column(
        ForeignKey("retirees.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[str] = mapped_column(String(20), unique=True)
    label: Mapped[str] = mapped_column(String(20), default="")

    retiree: Mapped[Retiree] = relationship(back_populates="phones")


class EmergencyContact(Base):
    __tablename__ = "emergency_contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    retiree_id: Mapped[int] = mapped_column(
        ForeignKey("retirees.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    relation: Mapped[str] = mapped_column(String(40), default="")
    phone: Mapped[str] = mapped_column(String(20))

    retiree: Mapped[Retiree] = relationship(back_populates="emergency_contacts")


class MessagingIdentity(Base):
    """A retiree's account on a messaging channel (Telegram user id, WhatsApp number, ...)."""

    __tablename__ = "messaging_identities"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    retiree_id: Mapped[int] = mapped_column(
        ForeignKey("retirees.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(100))
    linked_at: Mapped[datetime] = mapped_column(default=utcnow)

    retiree: Mapped[Retiree] = relationship(back_populates="identities")


class Visit(Base):
    __tablename__ = "visits"
    # A retiree's visits in date order: the last visit of each is read from the index alone.
    __table_args__ = (Index("ix_visits_retiree_visited", "retiree_id", "visited_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    retiree_id: Mapped[int] = mapped_column(ForeignKey("retirees.id", ondelete="CASCADE"))
    visited_on: Mapped[date] = mapped_column(Date)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    notes: Mapped[str] = mapped_column(Text, default="")

    retiree: Mapped[Retiree] = relationship(back_populates="visits")
    staff: Mapped[Staff | None] = relationship()


class Staff(Base):
    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role] = mapped_column(_enum(Role, "staff_role"))
    phone: Mapped[str] = mapped_column(String(20), default="")
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    # Their UserID in the community's WeCom (企业微信) app (bot/channels/wecom/).
    wecom_user_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    on_duty: Mapped[bool] = mapped_column(Boolean, default=False)
    username: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Console sign-in: failed attempts in a row, and the lock they cause.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    units: Mapped[list[Unit]] = relationship(secondary=staff_units)

    def __repr__(self) -> str:
        return f"<Staff #{self.id} {self.role}>"


class CaseNumberCounter(Base):
    """The last case number handed out in each year; numbers are never reused."""

    __tablename__ = "case_number_counters"

    year: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer, default=0)


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint("priority BETWEEN 1 AND 3", name="priority_range"),
        # Listing a unit's cases by status.
        Index("ix_cases_queue", "status", "unit_id", "priority", "claim_deadline", "created_at"),
        # Reports: the cases filed in a period.
        Index("ix_cases_created_at", "created_at"),
        # The claim query on PostgreSQL: open cases already in claim order (storage/queues.py),
        # so the best case is the first index entry in scope instead of a sort of the queue.
        # Not on SQLite: its planner cannot use it for NULLS LAST and it only slows writes.
        Index(
            "ix_cases_open_queue",
            "priority",
            "claim_deadline",
            "created_at",
            "id",
            postgresql_where=text("status = 'open'"),
            info={"only_on": "postgresql"},
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    retiree_id: Mapped[int | None] = mapped_column(ForeignKey("retirees.id"), index=True)
    category: Mapped[str] = mapped_column(String(40))
    priority: Mapped[int] = mapped_column(Integer)
    status: Mapped[CaseStatus] = mapped_column(_enum(CaseStatus, "case_status"))
    channel: Mapped[str] = mapped_column(String(20))
    summary: Mapped[str] = mapped_column(String(300), default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    original_text: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(Text, default="")
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    first_contact_owner_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    escalations: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    claim_deadline: Mapped[datetime | None]
    resolve_deadline: Mapped[datetime | None]
    # Optimistic lock: every UPDATE says "where version = what I read", so a change that
    # raced with another one fails instead of overwriting it.
    version: Mapped[int] = mapped_column(Integer, default=1)

    retiree: Mapped[Retiree | None] = relationship()
    unit: Mapped[Unit] = relationship()
    assignee: Mapped[Staff | None] = relationship(foreign_keys=[assignee_id])
    first_contact_owner: Mapped[Staff | None] = relationship(foreign_keys=[first_contact_owner_id])
    events: Mapped[list[CaseEvent]] = relationship(
        back_populates="case", order_by="CaseEvent.id", viewonly=True
    )

    __mapper_args__ = {"version_id_col": version}

    def __repr__(self) -> str:
        return f"<Case {self.number} {self.status}>"


class CaseEvent(Base):
    """One line of a case's audit trail. Rows are only ever added."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    actor_label: Mapped[str] = mapped_column(String(40), default="")  # "system", "retiree", ...
    action: Mapped[str] = mapped_column(String(30))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str | None] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(Text, default="")
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    case: Mapped[Case] = relationship(back_populates="events")
    actor: Mapped[Staff | None] = relationship()


# The posts kept up with their cases (MessageStatus).
_WATCHED_POSTS = text("status IN ('posted', 'taken')")


class Message(Base):
    """Every message in or out, on every channel; the provider's id recognises redeliveries."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel", "provider_id"),
        # The posts kept up with their cases: few rows (those of open and claimed cases),
        # looked at by every maintenance of the outbox worker.
        Index(
            "ix_messages_posts",
            "case_id",
            postgresql_where=_WATCHED_POSTS,
            sqlite_where=_WATCHED_POSTS,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    direction: Mapped[Direction] = mapped_column(_enum(Direction, "direction"))
    address: Mapped[str] = mapped_column(String(100), index=True)
    provider_id: Mapped[str | None] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[MessageStatus] = mapped_column(_enum(MessageStatus, "message_status"))
    retiree_id: Mapped[int | None] = mapped_column(ForeignKey("retirees.id"), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConversationState(Base):
    """Where the dialogue with one (channel, address) stands; survives restarts."""

    __tablename__ = "conversation_states"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(100))
    retiree_id: Mapped[int | None] = mapped_column(ForeignKey("retirees.id"))
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Set by each turn to the message's time (not the clock), which idle detection compares.
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxItem(Base):
    """A notification waiting to be sent; written in the same transaction as what caused it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    priority: Mapped[int] = mapped_column(Integer, default=3)
    status: Mapped[OutboxStatus] = mapped_column(
        _enum(OutboxStatus, "outbox_status"), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # An attempt whose outcome nobody learnt (its worker died, or the database went away while
    # it was recorded) began then: the provider may have it already (storage/outbox.py).
    unsure_since: Mapped[datetime | None]


class FollowUpStatus(enum.StrEnum):
    PENDING = "pending"  # to be asked (or asked again) at next_attempt_at
    ASKED = "asked"  # the question is out; an answer is awaited until next_attempt_at
    ANSWERED = "answered"
    UNANSWERED = "unanswered"  # every attempt went unanswered: a call-back case was filed
    CANCELLED = "cancelled"  # the case was reopened or cancelled before an answer


class FollowUp(Base):
    """回访: after a case is resolved the retiree is asked whether it was done and whether they
    are satisfied. One row per resolution (a reopened and again resolved case is asked again)."""

    __tablename__ = "follow_ups"
    __table_args__ = (
        UniqueConstraint("case_id", "round"),
        Index("ix_follow_ups_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    round: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[FollowUpStatus] = mapped_column(
        _enum(FollowUpStatus, "follow_up_status"), default=FollowUpStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    channel: Mapped[str] = mapped_column(String(20), default="")
    address: Mapped[str] = mapped_column(String(100), default="")
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    asked_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    done: Mapped[bool | None] = mapped_column(Boolean)
    satisfied: Mapped[bool | None] = mapped_column(Boolean)
    callback_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship(foreign_keys=[case_id])


class CarePlan(Base):
    """A retiree's check-in plan as set in the registry (config/care.py ``PlanRule`` in ``rule``:
    how often, which window, which channels). Without a row, config/care.yml's defaults give
    the plan from the person's profile; ``enabled`` False means "no check-ins" for them."""

    __tablename__ = "care_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    retiree_id: Mapped[int] = mapped_column(
        ForeignKey("retirees.id", ondelete="CASCADE"), unique=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    rule: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Days with no check-in: weekday names ("sun") or dates ("2026-12-25").
    quiet_days: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class FamilyMember(Base):
    """Family linked to a retiree with the retiree's recorded consent (storage/family.py): who,
    how to reach them, what they may be told (``may_know``: "emergencies", "check_ins",
    "outcomes") and whether they may ask for help on the retiree's behalf."""

    __tablename__ = "family_members"
    __table_args__ = (UniqueConstraint("retiree_id", "channel", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    retiree_id: Mapped[int] = mapped_column(
        ForeignKey("retirees.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    relation: Mapped[str] = mapped_column(String(40), default="")
    channel: Mapped[str] = mapped_column(String(20))  # sms, wechat, telegram, whatsapp
    address: Mapped[str] = mapped_column(String(100), index=True)  # E.164, or the account
    may_know: Mapped[list[str]] = mapped_column(JSON, default=list)
    may_ask: Mapped[bool] = mapped_column(Boolean, default=False)
    # The retiree's consent: how it was given, when, and who recorded it.
    consent: Mapped[str] = mapped_column(Text, default="")
    consented_on: Mapped[date]
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    retiree: Mapped[Retiree] = relationship()

    def __repr__(self) -> str:  # no personal data in logs or tracebacks
        return f"<FamilyMember #{self.id} of retiree #{self.retiree_id}>"


class CheckInStatus(enum.StrEnum):
    SCHEDULED = "scheduled"  # not asked yet: due at due_at
    ASKED = "asked"  # the question is out; the next rung is due at due_at
    WELL = "well"  # 1: all is well
    NEEDS_HELP = "needs_help"  # 2: talked with as a caller; a visit at due_at if nothing filed
    HELPED = "helped"  # 2, and a request of theirs was filed
    VISIT = "visit"  # nobody answered (or help was asked and nothing filed): a visit case
    CANCELLED = "cancelled"  # the plan was switched off, or the person is inactive


class CheckIn(Base):
    """One day's check-in of one retiree (storage/check_ins.py): at most one a day."""

    __tablename__ = "check_ins"
    __table_args__ = (
        UniqueConstraint("retiree_id", "day"),
        Index("ix_check_ins_due", "status", "due_at"),
        Index("ix_check_ins_asked_at", "asked_at"),  # the rate: how many asked in a minute
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    retiree_id: Mapped[int] = mapped_column(ForeignKey("retirees.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    status: Mapped[CheckInStatus] = mapped_column(
        _enum(CheckInStatus, "check_in_status"), default=CheckInStatus.SCHEDULED
    )
    rung: Mapped[int] = mapped_column(Integer, default=0)  # the next rung of the ladder
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # questions put
    channel: Mapped[str] = mapped_column(String(20), default="")  # where the last one went
    address: Mapped[str] = mapped_column(String(100), default="")
    due_at: Mapped[datetime]
    window_end: Mapped[datetime]
    asked_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    retiree: Mapped[Retiree] = relationship()


class CheckInDay(Base):
    """A day whose check-ins were planned (the first worker to insert it plans it)."""

    __tablename__ = "check_in_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    planned_at: Mapped[datetime]


class CheckInEvent(Base):
    """A line of a check-in's timeline: each question, answer and rung of the ladder."""

    __tablename__ = "check_in_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    check_in_id: Mapped[int] = mapped_column(
        ForeignKey("check_ins.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(24))
    at: Mapped[datetime]
    channel: Mapped[str] = mapped_column(String(20), default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class CampaignKind(enum.StrEnum):
    GREETING = "greeting"  # a holiday greeting (节日问候)
    NOTICE = "notice"  # a policy notice (政策通知)
    VISITS = "visits"  # a round of home visits (季度走访)


class CampaignStatus(enum.StrEnum):
    ACTIVE = "active"  # sending, or visits to make
    DONE = "done"  # everybody sent to (or skipped), or visited
    CANCELLED = "cancelled"


class TargetStatus(enum.StrEnum):
    WAITING = "waiting"  # not sent yet
    SENT = "sent"  # in the outbox (delivered or not: the outbox row says)
    SKIPPED = "skipped"  # no consent, no channel, or no longer active (skipped_why)
    ASSIGNED = "assigned"  # a visit to make
    VISITED = "visited"
    CANCELLED = "cancelled"  # the campaign was stopped first


class Campaign(Base):
    """A greeting, a notice or a visit round for a group of retirees (storage/campaigns.py)."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[CampaignKind] = mapped_column(_enum(CampaignKind, "campaign_kind"))
    title: Mapped[str] = mapped_column(String(100))
    status: Mapped[CampaignStatus] = mapped_column(
        _enum(CampaignStatus, "campaign_status"), default=CampaignStatus.ACTIVE
    )
    audience: Mapped[dict[str, Any]] = mapped_column(default=dict)  # campaigns.Audience
    texts: Mapped[dict[str, Any]] = mapped_column(default=dict)  # language -> text
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    per_minute: Mapped[int] = mapped_column(Integer, default=60)
    sms_template: Mapped[str] = mapped_column(String(40), default="")
    starts_at: Mapped[datetime]
    due_on: Mapped[date | None] = mapped_column(Date)  # a visit round's last day
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]

    created_by: Mapped[Staff | None] = relationship()


class CampaignTarget(Base):
    """One person of a campaign: what was sent them (the outbox row), or their visit."""

    __tablename__ = "campaign_targets"
    __table_args__ = (
        UniqueConstraint("campaign_id", "retiree_id"),
        Index("ix_campaign_targets_status", "campaign_id", "status"),
        Index("ix_campaign_targets_assignee", "assignee_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    retiree_id: Mapped[int] = mapped_column(ForeignKey("retirees.id", ondelete="CASCADE"))
    status: Mapped[TargetStatus] = mapped_column(_enum(TargetStatus, "campaign_target_status"))
    skipped_why: Mapped[str] = mapped_column(String(20), default="")
    channel: Mapped[str] = mapped_column(String(20), default="")
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id", ondelete="SET NULL"))
    sent_at: Mapped[datetime | None]  # sent, skipped or visited
    answer_by: Mapped[datetime | None]  # a message from them until then is an answer
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id", ondelete="SET NULL"))

    campaign: Mapped[Campaign] = relationship()
    retiree: Mapped[Retiree] = relationship()
    assignee: Mapped[Staff | None] = relationship()
    visit: Mapped[Visit | None] = relationship()


class ApiToken(Base):
    """A personal token for the JSON API (integrations act as the person who made it). Only a
    hash is stored; the token itself is shown once, when it is made."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    staff: Mapped[Staff] = relationship()


class ConsoleSession(Base):
    """A console sign-in: the session cookie carries its token, only a hash is stored. It ends
    (``ended_at``, ``ended_why``) at sign-out, at a password reset, when the account is switched
    off or when an admin ends it: every server reads this table, so a saved cookie stops
    working everywhere at once."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    ended_why: Mapped[str] = mapped_column(String(20), default="")

    staff: Mapped[Staff] = relationship()


class Attachment(Base):
    """A file that came with a case: a voice message, a recording of what a caller said. Kept in
    the database, so every server has it and it is backed up with the case (storage/attachments.py
    writes them; the console plays them to those who may open the case, audited)."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), index=True
    )
    source: Mapped[str] = mapped_column(String(200), unique=True)  # where it came from, once
    kind: Mapped[str] = mapped_column(String(20))  # audio
    content_type: Mapped[str] = mapped_column(String(100))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LinkCode(Base):
    """A code sent by SMS to a registered phone, that links a messaging account (a WeChat
    OpenID, ...) to the retiree with that phone once the account sends it back
    (storage/identities.py). One pending per account; only a hash is stored."""

    __tablename__ = "link_codes"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(100))
    retiree_id: Mapped[int] = mapped_column(ForeignKey("retirees.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(20))
    code_hash: Mapped[str] = mapped_column(String(64))
    tries: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProviderToken(Base):
    """A provider's access token shared by every server (WeChat's: fetching a new one ends the
    old one five minutes later, so servers with a token each would end each other's)."""

    __tablename__ = "provider_tokens"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None]


class AuditEntry(Base):
    """Who looked at or changed a retiree's personal data, and when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    actor_label: Mapped[str] = mapped_column(String(40), default="")
    action: Mapped[str] = mapped_column(String(40))  # view_retiree, update_retiree, import, ...
    subject_type: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[int | None] = mapped_column(Integer, index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


@event.listens_for(Session, "before_flush")
def _case_events_are_append_only(session: Session, _context: Any, _instances: Any) -> None:
    """The audit trail is only ever added to: refuse to change or delete a CaseEvent."""
    for obj in session.deleted:
        if isinstance(obj, CaseEvent):
            raise ValueError(f"case events are append-only: cannot delete event #{obj.id}")
    for obj in session.dirty:
        if isinstance(obj, CaseEvent) and session.is_modified(obj):
            raise ValueError(f"case events are append-only: cannot change event #{obj.id}")
