"""A speech recogniser plugged into the SIP line's port (HOTLINE_SIP_RECOGNISER) by the tests: it
cannot understand speech, but it reads the recording it is given and says how long it is, so a
test sees that the line handed over the whole recording and filed its words."""

from __future__ import annotations

import wave
from pathlib import Path


def transcribe(audio: Path, language: str) -> str:
    with wave.open(str(audio)) as recording:
        seconds = recording.getnframes() / recording.getframerate()
    return f"录音{seconds:.0f}秒（{language}）"


def broken(audio: Path, language: str) -> str:
    raise RuntimeError("the recogniser's service is down")
