"""The intent and entity names the NLU gives; the conversation and the queues depend on them.

The kinds of request are the intents of the training data (``nlu/data/intents/<intent>.yml``,
one file each) other than the conversation's own moves: a new kind of request is its handler,
its data and its category, with no list here to edit. Below the confidence threshold the
parser answers FALLBACK instead (Rasa's name)."""

from __future__ import annotations

from pathlib import Path

INTENTS_DIR = Path(__file__).resolve().parent / "data" / "intents"

CONVERSATION_INTENTS = (
    "talk_to_human",
    "cancel",
    "greet",
    "affirm",
    "deny",
    "goodbye",
    "out_of_scope",
)
REQUEST_INTENTS = tuple(
    sorted(path.stem for path in INTENTS_DIR.glob("*.yml") if path.stem not in CONVERSATION_INTENTS)
)
INTENTS = REQUEST_INTENTS + CONVERSATION_INTENTS
FALLBACK = "nlu_fallback"

ENTITIES = ("amount", "date", "hospital", "phone_number", "case_number", "relation")


def rasa_domain() -> str:
    """The domain.yml of a Rasa project trained on nlu/data (nlu/rasa/compare.sh writes it)."""
    lines = [
        "# Made from nlu/intents.py by nlu/rasa/compare.sh: the NLU contract.",
        'version: "3.1"',
    ]
    lines += ["", "intents:", *(f"  - {name}" for name in INTENTS)]
    lines += ["", "entities:", *(f"  - {name}" for name in ENTITIES), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(rasa_domain(), end="")
