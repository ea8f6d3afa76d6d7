"""Call-backs: staff ring the person back. Filed when a caller says nothing (older people often
press the key and wait, or hang up), and when nobody could take a hand-over."""

from __future__ import annotations

from typing import Any

from handlers.base import Case, Handler, Turn


class CallbackFiler(Handler):
    name = "callback"
    intents = ()
    category = "callback"
    confirm = False

    def file_callback(
        self, turn: Turn, reason: str, *, said: str | None = None, **details: Any
    ) -> Case:
        """A call-back case; ``reason`` is a key under callback.reason (silent, handover, ...);
        ``said``: what the person said (default: what was not understood)."""
        return turn.file_case(
            self.category,
            summary=turn.text(f"callback.reason.{reason}", turn.staff_lang),
            details={"reason": reason, "language": turn.lang, **details},
            original_text=said if said is not None else "\n".join(turn.state.unclear),
        )

    def file_silent(self, turn: Turn) -> Case:
        return self.file_callback(turn, "silent", caller=turn.inbound.address)


HANDLER = CallbackFiler()
