"""Domain errors raised by the case actions. Each says what was refused and why."""

from __future__ import annotations


class CaseError(Exception):
    """Base of every refusal by the case actions; ``code`` is stable for programs to test."""

    code = "case_error"


class IllegalTransition(CaseError):
    code = "illegal_transition"

    def __init__(self, number: str, action: str, status: str, allowed: tuple[str, ...]) -> None:
        self.number, self.action, self.status, self.allowed = number, action, status, allowed
        wanted = " or ".join(allowed) if allowed else "no status"
        super().__init__(
            f"case {number} cannot be {_past(action)}: it is {status} (must be {wanted})"
        )


class NotPermitted(CaseError):
    code = "not_permitted"

    def __init__(self, who: str, action: str, why: str) -> None:
        self.who, self.action, self.why = who, action, why
        super().__init__(f"{who} may not {action}: {why}")


class CaseConflict(CaseError):
    """Somebody else changed the case at the same moment; reload and try again."""

    code = "conflict"

    def __init__(self, number: str) -> None:
        self.number = number
        super().__init__(f"case {number} was changed by someone else at the same time; reload it")


class InvalidCaseInput(CaseError):
    """Something given is missing or wrong. ``key`` (with ``params``), when given, is the
    catalog text a person reads; the message is for programs and the log."""

    code = "invalid_input"

    def __init__(self, message: str, *, key: str = "", **params: object) -> None:
        self.key, self.params = key, params
        super().__init__(message)


class NotFound(CaseError):
    code = "not_found"


_PAST = {
    "claim": "claimed",
    "release": "released",
    "transfer": "transferred",
    "resolve": "resolved",
    "close": "closed",
    "reopen": "reopened",
    "cancel": "cancelled",
    "escalate": "escalated",
}


def _past(action: str) -> str:
    return _PAST.get(action, action)
