"""What the bot could not understand, after asking again: a `general` case with everything the
person said, so staff read it and call back. A request is never dropped."""

from __future__ import annotations

from handlers.base import Case, Handler, Task, Turn


class GeneralHandler(Handler):
    name = "general"
    intents = ()  # the dialogue sends what it does not understand here
    category = "general"
    confirm = False

    def start(self, turn: Turn, task: Task) -> None:
        self.finish(turn, task)

    def summary(self, turn: Turn, task: Task) -> str:
        said = " / ".join(task.said) or "-"
        return turn.text("general.summary", turn.staff_lang, said=said)

    def acknowledge(self, turn: Turn, task: Task, case: Case) -> None:
        turn.say("fallback.filed")
        turn.acknowledge(case)


HANDLER = GeneralHandler()
