"""How many of our files a one-key call crosses, from Twilio's webhook to the queued case: the
project files outside nlu/ whose code runs while the app answers a call that comes in and the
caller's first words, which file the case (an emergency: one turn files it). The understanding
(nlu/) and start-up are left out: a warm-up call runs first, then the measured one.

Every thread of the app is profiled (threading.setprofile before the app starts), and a file
counts when a function of it is entered while the measured call is being answered. Two figures:
every file entered, and the files that hand the call on (a function of theirs calls a function
of another of our files itself, not through a library: SQLAlchemy running our column types or
FastAPI our route does not count): those a reader follows from the webhook to the queued case,
where the rest are leaves looked up on the way (column types, texts, the phone number format).
Issue 17's target is at most 12.

Run: .venv/bin/python benchmarks/call_path.py [--say 我摔倒了起不来] [--list]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository root

from bot.runtime.app import create_app  # noqa: E402
from config.settings import Settings  # noqa: E402
from storage.db import make_engine, transaction  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Case, Role  # noqa: E402
from tests.factories import make_retiree, make_staff, make_unit_tree  # noqa: E402
from tests.fakes.caller import FakeCaller, serve  # noqa: E402

PACKAGES = ("bot", "config", "console", "handlers", "storage")
PUBLIC_URL = "https://hotline.example.org"
TOKEN = "bench-token"
CALLER = "+8613800000001"


class FileTrace:
    """The project files whose functions are entered while ``recording``, with counts."""

    def __init__(self) -> None:
        self.recording = False
        self.entered: Counter[str] = Counter()
        self.calls: set[tuple[str, str]] = set()  # (caller's file, callee's file), ours both
        self._ours = tuple(str(ROOT / package) + "/" for package in PACKAGES)

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and self.recording:
            name = frame.f_code.co_filename
            if name.startswith(self._ours):
                callee = str(Path(name).relative_to(ROOT))
                self.entered[callee] += 1
                caller = frame.f_back.f_code.co_filename if frame.f_back is not None else ""
                if caller.startswith(self._ours) and caller != name:
                    self.calls.add((str(Path(caller).relative_to(ROOT)), callee))

    def handing_on(self) -> list[str]:
        """The files that call another of ours while the call is answered."""
        return sorted({caller for caller, _ in self.calls})


def world(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        make_retiree(session, tree.community_a1, name="王秀英", phone=CALLER, age=82)
        make_staff(session, Role.STAFF, [tree.community_a1], name="钱社工", on_duty=True)
    engine.dispose()


def first_words(caller: FakeCaller, local: str, said: str, call_sid: str) -> None:
    """The call comes in, then the caller's first words (the Gather's action)."""
    import xml.etree.ElementTree as ET

    params = caller.base_params(call_sid, CALLER, "+15005550006", "ringing")
    greeting = caller.post(f"{PUBLIC_URL}/twilio/voice", params)
    greeting.raise_for_status()
    action = ET.fromstring(greeting.text).find(".//Gather").get("action")  # type: ignore[union-attr]
    url = action if action.startswith("http") else PUBLIC_URL + action
    turn = caller.post(url, {**params, "CallStatus": "in-progress", "SpeechResult": said})
    turn.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--say", default="我摔倒了，起不来了", help="the caller's first words")
    parser.add_argument("--list", action="store_true", help="list the files and their calls")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db_url = f"sqlite:///{folder}/hotline.db"
        world(db_url)
        settings = Settings(
            data_dir=Path(folder),
            database_url=db_url,
            public_url=PUBLIC_URL,
            twilio_account_sid="AC" + "0" * 32,
            twilio_auth_token=TOKEN,
            twilio_from_number="+15005550006",
            run_worker=False,
            _env_file=None,
        )
        trace = FileTrace()
        threading.setprofile(trace)
        sys.setprofile(trace)
        with serve(create_app(settings)) as local:
            caller = FakeCaller(local, PUBLIC_URL, TOKEN)
            first_words(caller, local, args.say, "CA-warm-up")
            trace.recording = True
            first_words(caller, local, args.say, "CA-measured")
            trace.recording = False
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
        engine = make_engine(db_url)
        with transaction(engine) as session:
            filed = [(c.number, c.category, c.priority) for c in session.query(Case)]
        engine.dispose()
    files = sorted(trace.entered)
    print(f"said: {args.say}; cases filed (warm-up and measured): {filed}")
    handing = trace.handing_on()
    print(f"project files outside nlu/ entered by one call: {len(files)}")
    print(f"of them handing the call on (a reader follows): {len(handing)} (target: at most 12)")
    by_package = Counter(
        name.split("/")[0] + ("/" + name.split("/")[1] if name.startswith("bot/") else "")
        for name in files
    )
    print("by package: " + ", ".join(f"{p} {n}" for p, n in sorted(by_package.items())))
    if args.list:
        for name in files:
            role = "hands on" if name in handing else "leaf"
            print(f"  {trace.entered[name]:6d}  {role:8s}  {name}")


if __name__ == "__main__":
    main()
