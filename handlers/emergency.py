"""Emergencies: no questions first. File a priority-1 case at once, alert the on-duty staff and
the emergency contacts through the outbox, tell the caller to dial 120 if in danger; then ask one
question (where are you, what happened) and add the answer to the case. Symptoms that need an
ambulance now (chest pain, breathlessness, a stroke's signs, no response, heavy bleeding:
config/words/emergency.yml) get a clear "call 120 now", not the hedged "if in danger"."""

from __future__ import annotations

from handlers.base import RETIREE, CaseStatus, Handler, Hint, Task, Turn, actions, alert_emergency

WHERE = "where"


class EmergencyHandler(Handler):
    name = "emergency"
    intents = ("emergency",)
    category = "emergency"
    confirm = False
    word_lists = ("needs_120",)

    def start(self, turn: Turn, task: Task) -> None:
        turn.hint(Hint.URGENT)
        said = turn.heard.said
        earlier = self._open_emergency(turn)
        if earlier is not None:
            # Already filed in this conversation: add what was said, never a second alarm.
            actions.add_note(turn.session, earlier, RETIREE, said or "-", now=turn.now)
            turn.case_ids.append(earlier.id)
            task.case, task.done = earlier.number, True
            turn.say("emergency.noted")
            return
        case = turn.file_case(
            self.category,
            summary=turn.text("emergency.summary", turn.staff_lang, said=said),
            details={"said": said, "language": turn.lang},
            original_text=said,
        )
        alert_emergency(
            turn.session,
            case,
            turn.retiree,
            said,
            turn.inbound.address,
            turn.deployment.catalogs,
            turn.staff_lang,
        )
        task.case = case.number
        turn.state.emergency_case = case.number
        turn.say("emergency.filed")
        if self._needs_120(turn):
            task.data["told_120"] = True
            turn.say("emergency.call_120_now")
        else:
            turn.say("emergency.call_120")
        task.asking = WHERE
        turn.ask("emergency.ask_where")

    def answer(self, turn: Turn, task: Task) -> None:
        turn.hint(Hint.URGENT)
        case = actions.get_case(turn.session, task.case) if task.case else None
        if case is not None and turn.heard.said:
            actions.add_note(turn.session, case, RETIREE, turn.heard.said, now=turn.now)
            turn.case_ids.append(case.id)
        task.done = True
        task.asking = None
        turn.say("emergency.noted")
        if not task.data.get("told_120") and self._needs_120(turn):
            turn.say("emergency.call_120_now")

    def _needs_120(self, turn: Turn) -> bool:
        return turn.heard.says_any(self.words_of(turn).list_of("needs_120"))

    def _open_emergency(self, turn: Turn):  # type: ignore[no-untyped-def]
        number = turn.state.emergency_case
        if number is None:
            return None
        case = actions.get_case(turn.session, number)
        return case if case.status in (CaseStatus.OPEN, CaseStatus.CLAIMED) else None


HANDLER = EmergencyHandler()
