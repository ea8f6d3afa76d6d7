"""A case's priority: its category's default, raised for retirees who need it most (重点服务对象)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from config.categories import Category, PriorityRules
from storage.models import Hardship, Retiree, SelfCare


def vulnerability_factors(retiree: Retiree | None, today: date) -> list[str]:
    """The names of the priority factors that hold for ``retiree`` on ``today``."""
    if retiree is None:
        return []
    factors: list[str] = []
    age = retiree.age_on(today)
    if age is not None and age >= 80:
        factors.append("age_80_plus")
    if age is not None and age >= 90:
        factors.append("age_90_plus")
    if retiree.lives_alone:
        factors.append("lives_alone")
    if retiree.self_care in (SelfCare.PARTLY_DEPENDENT, SelfCare.DEPENDENT):
        factors.append("not_self_caring")
    if retiree.hardship == Hardship.DIBAO:
        factors.append("dibao_household")
    return factors


def case_priority(
    category: Category,
    rules: PriorityRules,
    retiree: Retiree | None,
    today: date,
    raise_for: Sequence[str] = (),
) -> tuple[int, list[str]]:
    """(priority, the factors that raised it). Lower numbers are more urgent; 1 is emergencies.

    raise_for: reasons of the request itself (say, a transfer needed today), one level each,
    within the same ceiling as the person's factors.
    """
    base = category.default_priority
    if base == 1:
        return 1, []
    applied = [f for f in vulnerability_factors(retiree, today) if f in rules.factors]
    raised = sum(rules.factors[f].raise_ for f in applied) + len(raise_for)
    applied += list(raise_for)
    if raised == 0:
        return base, []
    return max(base - raised, rules.ceiling, 1), applied
