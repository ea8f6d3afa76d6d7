"""The SIP line end to end with real peers on 127.0.0.1: `hotline sip` registers with Kamailio,
SIPp calls it through Kamailio as a one-key phone, presses keys (SIP INFO and RFC 2833), speaks
and hangs up; the cases filed, their recordings and the alert chain are read from the database."""

from __future__ import annotations

import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.db import transaction
from storage.models import OutboxItem
from tests.bot.channels.serving import with_trained_model
from tests.bot.channels.sip.support import (
    Line,
    attachments,
    cases,
    phone_on_duty,
    running_line,
    skip_without_peers,
)
from tests.bot.channels.twilio.test_outage import eventually
from tests.sip_peers import (
    Audio,
    AwaitBye,
    HangUpCall,
    Info,
    Kamailio,
    Pause,
    Rfc2833,
    SipLine,
    StaffPhone,
    call,
    spoken,
)

pytestmark = pytest.mark.slow
skip_without_peers()


def seconds_of(data: bytes, folder: Path) -> float:
    path = folder / "kept.wav"
    path.write_bytes(data)
    with wave.open(str(path)) as audio:
        return audio.getnframes() / audio.getframerate()


def test_a_request_by_key_is_filed_with_what_the_caller_said(sip: Line) -> None:
    said = spoken(sip.folder, "我想报销药费，上个月住院花了三百块。")
    result = call(
        sip.proxy,
        sip.folder,
        [Pause(1500), Info("1"), Pause(5000), Audio(said), Pause(4000), Info("#"), AwaitBye()],
    )
    assert result.code == 0, result.output
    [case] = cases(sip.engine)
    assert case.category == "medication_reimbursement"
    assert case.retiree_id is not None and case.channel == "phone"
    assert case.details["reason"] == "keypad"
    [kept] = attachments(sip.engine)
    assert kept.case_id == case.id and kept.content_type == "audio/wav"
    assert seconds_of(kept.data, sip.folder) >= 2.0  # what she said is in it
    logged = sip.line.wait_for('"sip_call_over"', 10)
    assert '"digit": "1", "method": "info"' in logged and '"digits": "1#"' in logged


def test_keys_by_rfc_2833_work_too_and_nine_is_an_emergency(sip: Line) -> None:
    """The staff phone on duty rings out: the alert calls go, and she says where she is."""
    phone_on_duty(sip, "+8613900000009")
    with StaffPhone(sip.proxy, sip.folder, answers=False):
        result = call(
            sip.proxy, sip.folder, [Pause(1500), Rfc2833("9"), Pause(24000), HangUpCall()]
        )
    assert result.code == 0, result.output
    [case] = eventually(lambda: cases(sip.engine), lambda found: len(found) > 0)
    assert case.category == "emergency" and case.priority == 1
    with transaction(sip.engine) as session:
        kinds = {i.payload.get("kind") for i in session.scalars(select(OutboxItem))}
    assert "emergency_call" in kinds or "emergency_alert" in kinds  # the alert chain started
    logged = sip.line.wait_for('"sip_call_over"', 10)
    assert '"digit": "9", "method": "rfc2833"' in logged
    assert '"answered": false' in logged  # put through, rang out
    # She hung up while saying where she is: what she said is on the case.
    [note] = eventually(lambda: attachments(sip.engine), lambda found: len(found) > 0)
    assert note.case_id == case.id and note.source.endswith(":note")
    assert seconds_of(note.data, sip.folder) > 0.5  # a whole WAV file


def test_a_call_hung_up_before_any_key_is_a_call_back(sip: Line) -> None:
    result = call(sip.proxy, sip.folder, [Pause(2500), HangUpCall()])
    assert result.code == 0, result.output
    sip.line.wait_for('"sip_call_over"', 10)
    filed = eventually(lambda: cases(sip.engine), lambda found: len(found) > 0)
    assert [c.category for c in filed] == ["callback"]
    assert filed[0].details.get("reason") == "silent"


def test_an_emergency_is_put_through_to_the_staffphone_on_duty(sip: Line) -> None:
    from storage.models import CaseEvent

    with StaffPhone(sip.proxy, sip.folder, answers=True) as phone:
        result = call(sip.proxy, sip.folder, [Pause(1500), Info("9"), AwaitBye(60)])
        code, printed = phone.rang()
    assert result.code == 0, result.output
    assert code == 0, printed  # it rang, answered, talked and hung up
    [case] = cases(sip.engine)
    assert case.category == "emergency"
    with transaction(sip.engine) as session:
        notes = session.scalars(select(CaseEvent.note).where(CaseEvent.case_id == case.id)).all()
    assert any("13700000001" in (note or "") for note in notes), notes  # who took it on the line
    logged = sip.line.wait_for('"sip_put_through_ended"', 10)
    assert '"answered": true' in logged


def test_a_hand_over_nobody_answers_ends_in_a_voicemail_on_a_call_back(sip: Line) -> None:
    phone_on_duty(sip, "+8613900000009")  # a phone that rings and rings (139... on the proxy)
    said = spoken(sip.folder, "请给我回个电话。")
    with StaffPhone(sip.proxy, sip.folder, answers=False):
        result = call(
            sip.proxy,
            sip.folder,
            [Pause(1500), Info("0"), Pause(20000), Audio(said), Pause(3000), HangUpCall()],
        )
    assert result.code == 0, result.output
    sip.line.wait_for('"sip_put_through_ended"', 10)
    [case] = eventually(lambda: cases(sip.engine), lambda found: len(found) > 0)
    assert case.category == "callback" and case.details["reason"] == "handover"
    [kept] = eventually(lambda: attachments(sip.engine), lambda found: len(found) > 0)
    assert kept.case_id == case.id and seconds_of(kept.data, sip.folder) >= 1.0


def test_a_trunk_that_refuses_the_line_is_said_plainly_and_the_line_stays_up(
    tmp_path: Path, trained_nlu_dir: Path
) -> None:
    with_trained_model(trained_nlu_dir, tmp_path)
    url = f"sqlite:///{tmp_path / 'hotline.db'}"
    env = {
        "HOTLINE_DATABASE_URL": url,
        "HOTLINE_DATA_DIR": str(tmp_path),
        "HOTLINE_SIP_USER": "refused",
    }
    with (
        Kamailio(tmp_path) as proxy,
        SipLine(proxy, tmp_path, env, ready='"sip_registration_refused"') as line,
    ):
        logged = line.wait_for('"code": 403', 5)
        assert '"retry_s": 30' in logged
        assert line.process is not None and line.process.poll() is None  # pjsua2 retries in 30 s


def test_a_pbx_that_restarts_mid_call_loses_nothing_and_finds_the_line_again(
    tmp_path: Path, trained_nlu_dir: Path
) -> None:
    """Kamailio is killed and started again while a caller is speaking: it forgets the line's
    registration. The call goes on (in-dialog requests follow their Route headers) and is filed
    with the whole recording; the line registers again within HOTLINE_SIP_REGISTER_S, and the
    next call is answered."""
    env = {"HOTLINE_SIP_REGISTER_S": "6"}
    with running_line(tmp_path, trained_nlu_dir, env) as sip:
        said = spoken(sip.folder, "我想报销药费，上个月住院花了三百块。")
        steps = [Pause(1500), Info("1"), Pause(5000), Audio(said), Pause(4000), Info("#")]
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(call, sip.proxy, sip.folder, [*steps, AwaitBye()])
            time.sleep(8)  # she is speaking
            registered = sip.line.log.read_text().count('"sip_registered"')
            sip.proxy.restart()
            result = first.result(timeout=120)
        assert result.code == 0, result.output
        [case] = cases(sip.engine)
        assert case.category == "medication_reimbursement"
        [kept] = attachments(sip.engine)
        assert kept.case_id == case.id and seconds_of(kept.data, sip.folder) >= 2.0
        # Registered again (the restarted proxy knows the line), and the next call is answered.
        eventually(
            lambda: sip.line.log.read_text().count('"sip_registered"'),
            lambda count: count > registered,
            15,
        )
        again = call(sip.proxy, sip.folder, [Pause(2500), HangUpCall()])
        assert again.code == 0, again.output
        filed = eventually(lambda: cases(sip.engine), lambda found: len(found) == 2)
        assert [c.category for c in filed] == ["medication_reimbursement", "callback"]


@pytest.mark.parametrize(
    ("password", "ready"),
    [("s3cret", '"sip_registered"'), ("wrong", '"sip_registration_refused"')],
    ids=["right", "wrong"],
)
def test_an_extension_with_a_password_registers_by_digest(
    tmp_path: Path, trained_nlu_dir: Path, password: str, ready: str
) -> None:
    """The PBX challenges the REGISTER (401 with a digest nonce): the right password registers,
    a wrong one is said plainly and tried again later."""
    with_trained_model(trained_nlu_dir, tmp_path)
    env = {
        "HOTLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'hotline.db'}",
        "HOTLINE_DATA_DIR": str(tmp_path),
        "HOTLINE_SIP_USER": "secure",
        "HOTLINE_SIP_PASSWORD": password,
    }
    with Kamailio(tmp_path) as proxy, SipLine(proxy, tmp_path, env, ready=ready) as line:
        logged = line.log.read_text()
        if password == "s3cret":
            assert '"sip_registration_refused"' not in logged
        else:
            assert '"code": 401' in logged and '"sip_registered"' not in logged


@pytest.mark.parametrize("plugged", ["transcribe", "broken"])
def test_a_speech_recogniser_plugged_in_writes_down_what_the_caller_said(
    tmp_path: Path, trained_nlu_dir: Path, plugged: str
) -> None:
    """HOTLINE_SIP_RECOGNISER names a function: its words are the case's text beside the
    recording. One that fails leaves the case as it would be without it."""
    env = {
        "HOTLINE_SIP_RECOGNISER": f"tests.bot.channels.sip.recogniser:{plugged}",
        "PYTHONPATH": str(Path(__file__).resolve().parents[4]),  # where `tests` is
    }
    with running_line(tmp_path, trained_nlu_dir, env) as sip:
        said = spoken(sip.folder, "我想报销药费，上个月住院花了三百块。")
        steps = [Pause(1500), Info("1"), Pause(5000), Audio(said), Pause(3000), Info("#")]
        result = call(sip.proxy, sip.folder, [*steps, AwaitBye()])
        assert result.code == 0, result.output
        [case] = cases(sip.engine)
        [kept] = attachments(sip.engine)
    assert case.category == "medication_reimbursement" and kept.case_id == case.id
    if plugged == "transcribe":
        assert case.original_text.startswith("录音") and case.original_text.endswith("秒（zh）")
        heard = int(case.original_text[2:].split("秒")[0])
        assert heard >= 1 and abs(heard - seconds_of(kept.data, sip.folder)) <= 0.5  # all of it
    else:
        assert case.original_text == ""
        assert '"sip_recogniser_failed"' in sip.line.log.read_text()
