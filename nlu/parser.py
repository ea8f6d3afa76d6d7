"""The one interface the bot uses to understand a text, and the choice of backend: the embedded
parser (default) or a Rasa server with the embedded parser as its fallback."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from config.settings import Settings


@runtime_checkable
class NluParser(Protocol):
    def parse(self, text: str, *, reference: datetime | None = None) -> dict[str, Any]:
        """Rasa /model/parse JSON: text (cleaned), intent {name, confidence}, intent_ranking
        (highest first, up to 10), entities [{entity, value, start, end, extractor, ...}],
        text_tokens [[start, end], ...]; "truncated": true only when the text was cut.
        reference: an aware datetime that relative dates resolve against (default: now)."""
        ...


def get_parser(settings: Settings) -> NluParser:
    """The parser settings.nlu_backend names; "rasa" falls back to the embedded parser."""
    from nlu.embedded import EmbeddedParser

    if settings.nlu_backend == "rasa":
        from nlu.rasa_backend import RasaParser

        return RasaParser(
            settings.rasa_url, settings.rasa_timeout_s, fallback=EmbeddedParser.load(settings)
        )
    return EmbeddedParser.load(settings)
