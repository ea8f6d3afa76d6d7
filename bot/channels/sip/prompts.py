"""What the SIP line says, as telephone audio (8 kHz, mono, 16-bit WAV).

Each of the line's sentences is a catalog text (``sip.*`` in config/messages/). A deployment may
record it in a human voice: config/prompts/<language>/<key>.wav (say config/prompts/zh/sip.menu.wav)
is played instead, when it is telephone audio. Anything without a recording (a name, the
conversation's answer) is spoken by espeak-ng (``voice`` and ``speed`` of config/sip.yml) and
made telephone audio by sox; each text is rendered once and kept in data_dir/prompts/, named
by a hash of what was said and how. Numbers (a case number) are joined from one clip per digit
(``sip.digits.*``, ``sip.dash``), so a recorded voice can say them too. A call's sentences in a
row are joined into one file, which the call plays.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import struct
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from config.i18n import Catalogs
from config.sip import SipConfig

RATE, WIDTH, CHANNELS = 8000, 2, 1
BEEP_HZ, BEEP_S = 1000, 0.35
GAP_S = 0.12  # between the sentences and digits joined


class PromptError(RuntimeError):
    """A prompt could not be made (espeak-ng or sox missing or failing, a recording that is not
    telephone audio); says which and why."""


@dataclass(frozen=True)
class Key:
    """A catalog sentence, by key (a recording may stand for it)."""

    key: str
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Speak:
    """Words with no recording (a name, the conversation's answer): spoken by espeak-ng."""

    text: str


@dataclass(frozen=True)
class Number:
    """A number said digit by digit from clips ("2026-000007")."""

    digits: str


@dataclass(frozen=True)
class Beep:
    pass


Part = Key | Speak | Number | Beep


def tools_missing() -> list[str]:
    return [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]


class Prompts:
    def __init__(
        self, catalogs: Catalogs, config: SipConfig, config_dir: Path, cache_dir: Path
    ) -> None:
        self.catalogs = catalogs
        self.config = config
        self.recorded = config_dir / "prompts"
        self.cache = cache_dir
        self.cache.mkdir(parents=True, exist_ok=True)

    def join(self, parts: Sequence[Part], language: str) -> Path:
        """One file saying ``parts`` in a row (made once for the same parts)."""
        files = [f for part in parts for f in self._files(part, language)]
        name = hashlib.sha256("\0".join(str(f) for f in files).encode()).hexdigest()[:24]
        out = self.cache / f"joined-{name}.wav"
        if not out.exists():
            gap = b"\0" * int(RATE * GAP_S) * WIDTH
            _write(out, gap.join(_frames(f) for f in files))
        return out

    def _files(self, part: Part, language: str) -> list[Path]:
        if isinstance(part, Beep):
            return [self._beep()]
        if isinstance(part, Number):
            return [self._clip(_digit_key(c), language) for c in part.digits if _digit_key(c)]
        if isinstance(part, Key):
            if not part.params:
                return [self._clip(part.key, language)]
            return [
                self.speak(self.catalogs.text(part.key, language, **dict(part.params)), language)
            ]
        return [self.speak(part.text, language)]

    def _clip(self, key: str, language: str) -> Path:
        recorded = self.recorded / language / f"{key}.wav"
        if recorded.exists():
            _check(recorded)
            return recorded
        return self.speak(self.catalogs.text(key, language), language)

    def speak(self, text: str, language: str) -> Path:
        """``text`` spoken by espeak-ng, as telephone audio (rendered once)."""
        voice = self.config.voice if language == "zh" else "en"
        how = f"{voice}\0{self.config.speed}\0{text}"
        out = self.cache / f"tts-{hashlib.sha256(how.encode()).hexdigest()[:24]}.wav"
        if out.exists():
            return out
        missing = tools_missing()
        if missing:
            raise PromptError(f"cannot speak without {' and '.join(missing)} (apt install them)")
        with tempfile.TemporaryDirectory(dir=self.cache) as folder:
            raw = Path(folder) / "raw.wav"
            made = Path(folder) / "out.wav"
            _run(["espeak-ng", "-v", voice, "-s", str(self.config.speed), "-w", str(raw), text])
            # Telephone audio, the silence espeak-ng leaves before and after cut off.
            trim = [
                "silence",
                "1",
                "0.02",
                "0.5%",
                "reverse",
                "silence",
                "1",
                "0.02",
                "0.5%",
                "reverse",
            ]
            _run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(made), *trim])
            made.replace(out)
        return out

    def _beep(self) -> Path:
        out = self.cache / "beep.wav"
        if not out.exists():
            count = int(RATE * BEEP_S)
            samples = (int(9000 * math.sin(2 * math.pi * BEEP_HZ * n / RATE)) for n in range(count))
            _write(out, b"".join(struct.pack("<h", s) for s in samples))
        return out


def _digit_key(char: str) -> str:
    if char.isdigit():
        return f"sip.digits.{char}"
    return "sip.dash" if char in "-－" else ""


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise PromptError(
            f"{command[0]} failed: {exc} {detail.decode(errors='replace')[:200]}"
        ) from exc


def _check(path: Path) -> None:
    with wave.open(str(path), "rb") as audio:
        shape = (audio.getframerate(), audio.getsampwidth(), audio.getnchannels())
    if shape != (RATE, WIDTH, CHANNELS):
        raise PromptError(
            f"{path}: {shape[0]} Hz, {shape[1] * 8}-bit, {shape[2]} channel(s); the line plays "
            f"{RATE} Hz 16-bit mono (sox in.wav -r 8000 -c 1 -b 16 {path.name})"
        )


def _frames(path: Path) -> bytes:
    _check(path)
    with wave.open(str(path), "rb") as audio:
        return audio.readframes(audio.getnframes())


def _write(path: Path, frames: bytes) -> None:
    partial = path.with_suffix(f".{os.getpid()}.part")  # processes may write it at once
    with wave.open(str(partial), "wb") as audio:
        audio.setnchannels(CHANNELS)
        audio.setsampwidth(WIDTH)
        audio.setframerate(RATE)
        audio.writeframes(frames)
    partial.replace(path)
