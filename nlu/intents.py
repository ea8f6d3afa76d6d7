"""The intent and entity names the NLU gives; the conversation and the queues depend on them."""

from __future__ import annotations

# The kinds of request, then the conversation moves. Below the confidence threshold the
# parser answers FALLBACK instead (Rasa's name).
REQUEST_INTENTS = (
    "medication_reimbursement",
    "hospital_transfer",
    "complaint",
    "help_request",
    "emergency",
    "bereavement",
    "policy_question",
    "status_inquiry",
)
CONVERSATION_INTENTS = (
    "talk_to_human",
    "cancel",
    "greet",
    "affirm",
    "deny",
    "goodbye",
    "out_of_scope",
)
INTENTS = REQUEST_INTENTS + CONVERSATION_INTENTS
FALLBACK = "nlu_fallback"

ENTITIES = ("amount", "date", "hospital", "phone_number", "case_number", "relation")
