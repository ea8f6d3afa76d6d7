"""A recording handed over before PJSIP wrote its WAV header's sizes is kept whole."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

from bot.channels.sip.line import finished_wav


def test_a_recording_whose_header_was_not_finished_gets_its_sizes(tmp_path: Path) -> None:
    path = tmp_path / "partial.wav"
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\x01\x00" * 12000)
    whole = path.read_bytes()
    assert finished_wav(path, wait_s=0.1) == whole  # a finished one as it is
    unfinished = bytearray(whole)
    struct.pack_into("<I", unfinished, 4, 0)  # as PJSIP leaves it until the recorder closes
    struct.pack_into("<I", unfinished, 40, 0)
    path.write_bytes(bytes(unfinished))
    assert finished_wav(path, wait_s=0.3) == whole
    path.write_bytes(b"not audio")
    assert finished_wav(path, wait_s=0.1) == b"not audio"  # nothing invented
