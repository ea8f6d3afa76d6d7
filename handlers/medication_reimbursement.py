"""Medication-cost reimbursement (报销药费): what the bills are for, a rough amount if known, and
whether staff collect the receipts at home or the retiree brings them."""

from __future__ import annotations

from handlers.base import Handler, Option, Slot, SlotKind


class MedicationReimbursementHandler(Handler):
    name = "medication_reimbursement"
    intents = ("medication_reimbursement",)
    category = "medication_reimbursement"
    word_lists = ("bills_for", "receipts")
    slots = (
        Slot("bills_for", SlotKind.TEXT, word_list="medication_reimbursement.bills_for"),
        Slot("amount", SlotKind.AMOUNT, optional=True),
        Slot(
            "receipts",
            SlotKind.OPTION,
            options=(Option("collect"), Option("bring")),
            word_group="medication_reimbursement.receipts",
        ),
    )


HANDLER = MedicationReimbursementHandler()
