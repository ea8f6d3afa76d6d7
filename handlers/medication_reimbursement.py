"""Medication-cost reimbursement (报销药费): what the bills are for, a rough amount if known, and
whether staff collect the receipts at home or the retiree brings them."""

from __future__ import annotations

from handlers.base import Handler, Option, Slot, SlotKind

# Words that show the first sentence already says what the bills are for.
BILL_WORDS = (
    *("住院", "门诊", "看病", "药店", "药房", "买的药", "开的药", "拿药", "开药", "检查", "化验"),
    *(
        "手术",
        "降压药",
        "胰岛素",
        "慢性病",
        "慢病",
        "hospital",
        "clinic",
        "pharmacy",
        "prescription",
    ),
)


class MedicationReimbursementHandler(Handler):
    name = "medication_reimbursement"
    intents = ("medication_reimbursement",)
    category = "medication_reimbursement"
    slots = (
        Slot("bills_for", SlotKind.TEXT, words=BILL_WORDS),
        Slot("amount", SlotKind.AMOUNT, optional=True),
        Slot(
            "receipts",
            SlotKind.OPTION,
            options=(
                Option(
                    "collect",
                    (
                        "上门",
                        "来拿",
                        "来取",
                        "来收",
                        "过来拿",
                        "到家",
                        "家里",
                        "派人",
                        "collect",
                        "pick up",
                        "come",
                    ),
                ),
                Option(
                    "bring",
                    (
                        "送过去",
                        "送去",
                        "自己拿",
                        "自己送",
                        "带过去",
                        "拿过去",
                        "我去",
                        "自己去",
                        "bring",
                        "drop",
                    ),
                ),
            ),
        ),
    )


HANDLER = MedicationReimbursementHandler()
