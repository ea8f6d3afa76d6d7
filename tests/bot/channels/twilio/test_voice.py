"""The one-key phone line on Twilio Voice, called by a fake caller over real HTTP the way Twilio
calls: signed webhooks to the public URL (https://hotline.example.org) that reach the app on
127.0.0.1 (the proxy case), TwiML followed verb by verb. On SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from bot.conversation.messages import speak_digits
from bot.conversation.state import DialogueState
from bot.runtime.app import create_app
from config.settings import Settings
from storage import family
from storage.db import transaction
from storage.models import (
    Case,
    ConversationState,
    EmergencyContact,
    Message,
    Retiree,
    RetireeStatus,
    Role,
    Unit,
)
from storage.types import utcnow
from tests.factories import make_retiree, make_staff, make_unit_tree
from tests.fakes.caller import (
    VOICEMAIL,
    Call,
    FakeCaller,
    HangUp,
    Press,
    Silence,
    Speak,
    Voicemail,
    serve,
)

PUBLIC_URL = "https://hotline.example.org"
TOKEN = "test-token"
WANG = "+8613800000001"  # 王秀英, community A1
MARY = "+8613800000005"  # Mary Lee, English
STRANGER = "+8613911112222"
STAFF_A1 = "+8613700000002"  # on duty in the community
STAFF_SA = "+8613700000001"  # on duty in the station above
OFF_DUTY = "+8613700000003"
SON = "+8613900000002"  # 王秀英's emergency contact
RECORDING = "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE123"


@dataclass
class Line:
    caller: FakeCaller
    engine: Engine
    local_url: str


def settings_for(db_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": db_url,
        "public_url": PUBLIC_URL,
        "twilio_account_sid": "AC" + "0" * 32,
        "twilio_auth_token": TOKEN,
        "twilio_from_number": "+15005550006",
        "run_worker": False,  # the outbox is not sent in these tests
    }
    values.update(overrides)
    return Settings(**values, _env_file=None)  # type: ignore[arg-type]


def world(engine: Engine) -> None:
    """王秀英 (A1, a son as emergency contact), Mary Lee (English), and staff: on duty in A1 and
    in the station above, one off duty, a volunteer."""
    with transaction(engine) as session:
        tree = make_unit_tree(session)
        wang = make_retiree(session, tree.community_a1, name="王秀英", phone=WANG, age=75)
        wang.emergency_contacts.append(EmergencyContact(name="李强", phone=SON, relation="儿子"))
        make_retiree(
            session,
            tree.community_b1,
            name="Mary Lee",
            phone=MARY,
            age=78,
            preferred_language="en",
        )
        make_staff(
            session, Role.STAFF, [tree.station_a], name="赵站长", on_duty=True, phone=STAFF_SA
        )
        make_staff(
            session, Role.STAFF, [tree.community_a1], name="钱社工", on_duty=True, phone=STAFF_A1
        )
        make_staff(
            session, Role.STAFF, [tree.community_a1], name="孙社工", on_duty=False, phone=OFF_DUTY
        )
        make_staff(
            session,
            Role.VOLUNTEER,
            [tree.community_a1],
            name="周志愿",
            on_duty=True,
            phone="+8613700000004",
        )


@pytest.fixture
def line(db_url: str, engine: Engine, trained_nlu_dir: Path, tmp_path: Path) -> Iterator[Line]:
    shutil.copytree(trained_nlu_dir / "nlu-cache", tmp_path / "nlu-cache")
    world(engine)
    app = create_app(settings_for(db_url, tmp_path), engine)
    with serve(app) as local, httpx.Client(timeout=60) as client:
        yield Line(FakeCaller(local, PUBLIC_URL, TOKEN, client=client), engine, local)


def cases(engine: Engine) -> list[Case]:
    with transaction(engine) as session:
        found = session.scalars(select(Case).order_by(Case.id)).all()
        for case in found:
            _ = case.retiree, case.unit
        return list(found)


def count(engine: Engine, model: type) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def spoken(number: str) -> str:
    """A case number as the phone says it: 2026-000001 → 2 0 2 6 杠 0 0 0 0 0 1."""
    return speak_digits(number, "zh")


def said_in_order(call: Call, *expected: str) -> None:
    text, position = call.text, 0
    for part in expected:
        found = text.find(part, position)
        assert found >= 0, f"expected {part!r} (in this order); the app said:\n{text}"
        position = found + len(part)


# -- calls that file a request -------------------------------------------------------------------


def test_a_known_caller_is_greeted_by_name_and_files_a_request_by_voice(line: Line) -> None:
    call = line.caller.call(
        [
            Speak("我要报销上个月住院的药费，一千二百块，请你们上门来取票据"),
            Press("1"),
            Speak("没有了，谢谢"),
        ],
        caller=WANG,
    )
    assert call.said[0] == "王秀英您好，这里是社区一键通。请问有什么可以帮您？"
    [case] = cases(line.engine)
    assert (case.category, case.channel, case.priority) == ("medication_reimbursement", "phone", 3)
    assert case.retiree.name == "王秀英" and case.details["slots"]["amount"] == 1200
    said_in_order(
        call,
        "我核对一下：报销药费",
        "对吗？ 对请按1，不对请按2。",
        f"已经为您登记了药费报销，编号是{spoken(case.number)}。",
        "和平社区的工作人员会在",
        "再见",
    )
    assert call.ended_by == "app"
    # How the app listens and speaks: Mandarin speech and keys, hints, one key for a yes/no.
    first = call.gathers[0]
    assert first["input"] == "speech dtmf" and first["language"] == "cmn-Hans-CN"
    assert first["speechTimeout"] == "auto" and first["actionOnEmptyResult"] == "true"
    assert "报销" in first["hints"].split(",") and "转人工" in first["hints"].split(",")
    assert "numDigits" not in first and call.gathers[1]["numDigits"] == "1"
    assert {(s["voice"], s["language"]) for s in call.says} == {("Polly.Zhiyu", "cmn-CN")}
    # The turns are the call's: provider ids are CallSid:n, and the status was recorded.
    with transaction(line.engine) as session:
        ids = session.scalars(
            select(Message.provider_id).where(Message.provider_id.is_not(None))
        ).all()
    sid = call.call_sid
    assert {f"{sid}:call", f"{sid}:1", f"{sid}:2", f"{sid}:3", f"{sid}:status:completed"} == set(
        ids
    )


def test_her_son_calls_for_her_and_the_case_is_hers(line: Line) -> None:
    """Her son, linked with her consent and allowed to ask, calls from his own phone: he is
    greeted as himself, asking for her, and the request is filed as hers, saying he asked."""
    with transaction(line.engine) as session:
        wang = session.scalars(select(Retiree).where(Retiree.name == "王秀英")).one()
        family.add(
            session,
            wang,
            name="李强",
            relation="儿子",
            channel="sms",
            address=SON,
            may_know=["outcomes"],
            may_ask=True,
            consent="本人电话里同意",
            consented_on=date(2026, 6, 1),
            recorded_by_id=None,
            now=utcnow(),
        )
        wang_id = wang.id
    call = line.caller.call(
        [Speak("我妈家里水龙头坏了，明天上午能来人修一下不"), Speak("对"), HangUp()], caller=SON
    )
    assert call.said[0] == "您好，这里是社区一键通。您是替王秀英办事吧？请问有什么需要帮忙的？"
    [case] = cases(line.engine)
    assert case.retiree_id == wang_id and case.category == "help_request"
    assert case.details["on_behalf"]["name"] == "李强"


def test_other_kinds_of_request_by_voice(line: Line) -> None:
    call = line.caller.call(
        [Speak("家里水龙头坏了，明天上午能来人修一下不"), Speak("对"), HangUp()], caller=WANG
    )
    [case] = cases(line.engine)
    assert case.category == "help_request" and case.details["slots"]["kind"] == "repair"
    said_in_order(
        call, "您要的帮忙是：修东西", f"编号是{spoken(case.number)}", "请问还有别的事吗？"
    )
    assert call.ended_by == "caller"

    # Asking how it is going: read back by voice, number digit by digit, nothing filed.
    status = line.caller.call([Speak("我上次说的那个事办得怎么样了"), HangUp()], caller=WANG)
    said_in_order(status, f"编号{spoken(case.number)}")
    assert len(cases(line.engine)) == 1


# Each kind of request by voice, as a caller would say it, each answer confirmed by voice or key.
EVERY_KIND = [
    (
        "medication_reimbursement",
        [Speak("我要报销上个月住院的药费，三百块，请上门来取"), Press("1")],
    ),
    (
        "hospital_transfer",
        [Speak("我老伴明天要从市一院转到省人民医院"), Press("1"), Press("1")],
    ),
    ("complaint", [Speak("我要投诉楼上装修太吵了，从上周开始天天吵"), Press("1")]),
    ("help_request", [Speak("家里灯坏了，明天上午能来人修一下吗"), Press("1")]),
    ("bereavement", [Speak("我老伴昨天去世了"), Press("1")]),
    ("policy_question", [Speak("养老金今年什么时候涨")]),
]


@pytest.mark.parametrize(("category", "script"), EVERY_KIND, ids=[k for k, _ in EVERY_KIND])
def test_each_kind_of_request_by_voice(line: Line, category: str, script: list) -> None:
    call = line.caller.call([*script, HangUp()], caller=WANG)
    filed = cases(line.engine)
    assert [c.category for c in filed] == [category], call.said
    assert filed[0].channel == "phone" and filed[0].retiree is not None
    said_in_order(call, f"编号是{spoken(filed[0].number)}")


def test_an_english_speaker_is_answered_in_english(line: Line) -> None:
    call = line.caller.call(
        [Speak("I want to claim back my medicine costs from the pharmacy"), HangUp()],
        caller=MARY,
    )
    assert call.said[0] == "Hello Mary Lee, this is Community Hotline. How can I help you?"
    assert "Roughly how much is it?" in call.text
    assert all(g["language"] == "en-US" for g in call.gathers)
    assert {(s["voice"], s["language"]) for s in call.says} == {("Polly.Joanna", "en-US")}
    assert "reimbursement" in call.gathers[0]["hints"].split(",")
    # Hung up half-way: the request is filed with what is known.
    [case] = cases(line.engine)
    assert case.category == "medication_reimbursement" and case.details.get("incomplete")


def test_an_unknown_caller_registers_and_the_request_is_taken_after(line: Line) -> None:
    call = line.caller.call(
        [
            Speak("我想报销药费，大概三百块，是上个月住院的"),
            Speak("我叫李桂兰"),
            Speak("住在光明社区"),
            Press("1"),
            Speak("上门来取吧"),
            Press("1"),
            HangUp(),
        ],
        caller=STRANGER,
    )
    assert call.said[0] == "您好，这里是社区一键通。请问有什么可以帮您？"
    said_in_order(
        call,
        "我们还没有您的登记信息",
        "请问您怎么称呼？",
        # the caller's number is known: not asked, read back digit by digit
        "您是李桂兰，住在光明社区，电话1 3 9 1 1 1 1 2 2 2 2。对吗？",
        "登记好了",
        "票据是请工作人员上门来取",
        "已经为您登记了药费报销",
    )
    registration, medication = cases(line.engine)
    assert registration.category == "registration" and registration.unit.code == "B1"
    assert medication.category == "medication_reimbursement"
    assert (
        medication.retiree.name == "李桂兰" and medication.retiree.status == RetireeStatus.PENDING
    )
    with transaction(line.engine) as session:
        person = session.scalars(select(Retiree).where(Retiree.name == "李桂兰")).one()
        assert [p.number for p in person.phones] == [STRANGER]


# -- emergencies ---------------------------------------------------------------------------------


def test_an_emergency_dials_the_staff_on_duty_then_the_next_then_the_emergency_contact(
    line: Line,
) -> None:
    call = line.caller.call(
        [Speak("我摔倒了，起不来"), Speak("在卫生间，腿很疼"), HangUp()], caller=WANG
    )
    # No menu: the case is filed, 120 is said, and the phones ring at once, in order.
    assert call.dialed == [STAFF_A1, STAFF_SA, SON]
    first_turn = call.exchange("/twilio/voice/turn")[0].body
    assert first_turn.index("拨打120") < first_turn.index("<Dial")
    assert "<Gather" not in first_turn.split("<Dial")[0] and "请按" not in first_turn
    said_in_order(
        call,
        "我们已经通知值班人员，马上联系您。",
        "如有危险，请立即拨打120。",
        "请稍等，正在为您接通下一位工作人员。",
        "请稍等，正在为您联系您的家人。",
        "电话暂时没有接通",
        "请告诉我，您现在在哪里，发生了什么事？",
        "我已经告诉工作人员",
    )
    [case] = cases(line.engine)
    assert (case.category, case.priority, case.retiree.name) == ("emergency", 1, "王秀英")
    # The answer to the question is on the case; a second URGENT turn dials nobody again.
    assert call.dialed.count(STAFF_A1) == 1
    with transaction(line.engine) as session:
        dials = session.execute(
            select(Message.status, Message.payload).where(Message.provider_id.like("%:dial:%"))
        ).all()
        notes = [e.note for e in session.get(Case, case.id).events]  # type: ignore[union-attr]
    assert [(s, p["number"]) for s, p in dials] == [
        ("no-answer", STAFF_A1),
        ("no-answer", STAFF_SA),
        ("no-answer", SON),
    ]
    assert any("在卫生间" in str(note) for note in notes)


def test_an_emergency_answered_by_staff_stops_the_chain(line: Line) -> None:
    call = line.caller.call(
        [Speak("救命，我老伴晕倒了")], caller=WANG, answers={STAFF_A1: "completed"}
    )
    assert call.dialed == [STAFF_A1]
    assert call.said[-1] == "好的，再见。有事随时找我们。" and call.ended_by == "app"
    [case] = cases(line.engine)
    assert case.category == "emergency"


def test_emergency_words_heard_with_low_confidence_are_acted_on_at_once(line: Line) -> None:
    call = line.caller.call([Speak("救命，我摔倒了", confidence=0.2), HangUp()], caller=WANG)
    assert "您是说" not in call.text and call.dialed[:1] == [STAFF_A1]
    assert [c.category for c in cases(line.engine)] == ["emergency"]


# -- a person, and nobody answers --------------------------------------------------------------


def test_zero_dials_staff_and_unanswered_a_voicemail_becomes_a_callback_case(line: Line) -> None:
    call = line.caller.call([Speak("我想报销药费"), Press("0"), Voicemail(RECORDING)], caller=WANG)
    assert call.dialed == [STAFF_A1, STAFF_SA]  # on duty only: never the off-duty or volunteers
    medication, callback = cases(line.engine)
    assert medication.category == "medication_reimbursement" and medication.details["incomplete"]
    assert (callback.category, callback.priority) == ("callback", 2)
    assert callback.details["reason"] == "handover"
    assert callback.details["recording_url"] == RECORDING
    said_in_order(
        call,
        "正在为您转接工作人员",
        "请稍等，正在为您接通下一位工作人员。",
        "请在提示音后留言",
        "我请工作人员给您回电话",
        f"编号是{spoken(callback.number)}",
        "会在",  # when someone rings back
    )
    assert call.ended_by == "app"
    # Put through at once: no "anything else?" before the phones ring.
    assert "还有别的事" not in call.text


def test_saying_zhuan_ren_gong_hands_over_and_staff_answer(line: Line) -> None:
    call = line.caller.call([Speak("转人工")], caller=WANG, answers={STAFF_A1: "completed"})
    assert call.dialed == [STAFF_A1] and "正在为您转接工作人员" in call.text
    assert cases(line.engine) == []  # staff took the call: nothing to ring back


def test_a_staff_phones_voicemail_is_not_taken_for_staff(line: Line) -> None:
    """钱社工's phone goes to its voicemail: it picks up but presses no key at the screening,
    so the next on-duty number rings, and her message becomes our own call-back case."""
    call = line.caller.call(
        [Press("0"), Voicemail(RECORDING)], caller=WANG, answers={STAFF_A1: VOICEMAIL}
    )
    assert call.dialed == [STAFF_A1, STAFF_SA]
    assert call.screened == ["这里是社区一键通，和平社区的王秀英来电需要帮助。请按任意键接听。"] * 2
    [callback] = cases(line.engine)
    assert callback.details["reason"] == "handover"
    assert callback.details["recording_url"] == RECORDING
    with transaction(line.engine) as session:
        dials = session.scalars(
            select(Message.status).where(Message.provider_id.like("%:dial:%")).order_by(Message.id)
        ).all()
    assert dials == ["not-accepted", "no-answer"]


def test_staff_who_press_a_key_at_the_screening_take_the_call(line: Line) -> None:
    call = line.caller.call([Press("0")], caller=WANG, answers={STAFF_SA: "completed"})
    assert call.dialed == [STAFF_A1, STAFF_SA]
    assert call.screened == ["这里是社区一键通，和平社区的王秀英来电需要帮助。请按任意键接听。"]
    assert cases(line.engine) == []  # a person took the call: nothing to ring back
    assert "再见" in call.said[-1]


def test_the_screening_names_a_registered_caller_only(line: Line) -> None:
    """Whoever picks up hears who is calling when the number is registered (above: 和平社区的
    王秀英); a number the registry does not know is "an older person"."""
    desk = "+8613700000009"
    with transaction(line.engine) as session:
        center = session.scalars(select(Unit).where(Unit.parent_id.is_(None))).one()
        make_staff(session, Role.STAFF, [center], name="吴主任", on_duty=True, phone=desk)
    call = line.caller.call([Press("0")], caller=STRANGER, answers={desk: "completed"})
    assert call.dialed == [desk]
    assert call.screened == ["这里是社区一键通，有老人来电需要帮助。请按任意键接听。"]


def test_hanging_up_while_the_staff_phones_ring_files_a_callback(line: Line) -> None:
    call = line.caller.call([Press("0"), HangUp()], caller=WANG)
    assert call.dialed == [STAFF_A1] and call.ended_by == "caller"
    [callback] = cases(line.engine)
    assert callback.category == "callback" and callback.details["reason"] == "handover"
    assert "recording_url" not in callback.details


def test_no_voicemail_left_still_files_the_callback(line: Line) -> None:
    call = line.caller.call([Press("0"), Silence()], caller=WANG)
    assert call.dialed == [STAFF_A1, STAFF_SA]
    [callback] = cases(line.engine)
    assert callback.details["reason"] == "handover" and "recording_url" not in callback.details
    assert "我请工作人员给您回电话" in call.text


# -- silence and hanging up --------------------------------------------------------------------


def test_a_silent_one_key_call_becomes_a_callback_case(line: Line) -> None:
    call = line.caller.call([Silence(), Silence()], caller=WANG)
    said_in_order(call, "您还在吗？", "我们会请工作人员给您回电话", "再见")
    assert call.ended_by == "app"
    [case] = cases(line.engine)  # the status callback afterwards files nothing more
    assert (case.category, case.priority, case.channel) == ("callback", 2, "phone")
    assert case.details["reason"] == "silent" and case.retiree.name == "王秀英"


def test_hanging_up_at_once_files_a_callback_case(line: Line) -> None:
    call = line.caller.call([HangUp()], caller=WANG)
    assert call.ended_by == "caller" and len(call.said) == 1
    [case] = cases(line.engine)
    assert (case.category, case.priority, case.details["reason"]) == ("callback", 2, "silent")
    # Twilio repeats the status callback: nothing is filed twice, the status recorded once.
    again = line.caller.status(call.call_sid, WANG, "completed", CallDuration="2")
    assert again.status_code == 200
    assert len(cases(line.engine)) == 1
    with transaction(line.engine) as session:
        statuses = session.scalars(
            select(Message.status).where(Message.provider_id.like(f"{call.call_sid}:status:%"))
        ).all()
    assert statuses == ["completed"]


def test_an_unknown_caller_who_hangs_up_at_once_is_rung_back_too(line: Line) -> None:
    line.caller.call([HangUp()], caller=STRANGER)
    [case] = cases(line.engine)
    assert case.category == "callback" and case.retiree is None and case.unit.code == "C"


def test_withheld_numbers_get_a_conversation_each(line: Line) -> None:
    first = line.caller.call([Speak("我想报销住院的药费"), HangUp()], caller="anonymous")
    second = line.caller.call([HangUp()], caller="anonymous")
    assert "我们还没有您的登记信息" in first.text and len(second.said) == 1
    unfinished, silent = cases(line.engine)
    assert unfinished.details["reason"] == "registration_unfinished"
    assert unfinished.details["caller"] == f"withheld:{first.call_sid}"
    assert silent.details["reason"] == "silent"
    with transaction(line.engine) as session:
        addresses = session.scalars(select(ConversationState.address)).all()
    assert sorted(addresses) == sorted(f"withheld:{c.call_sid}" for c in (first, second))


def test_a_request_left_half_way_is_filed_at_hang_up(line: Line) -> None:
    line.caller.call([Speak("我想报销住院的药费"), HangUp()], caller=WANG)
    [case] = cases(line.engine)
    assert case.category == "medication_reimbursement" and case.details["incomplete"]


def test_a_finished_call_files_no_callback(line: Line) -> None:
    line.caller.call([Speak("我的事办到哪了"), Speak("没有了")], caller=WANG)
    assert cases(line.engine) == []


def conversation_row(engine: Engine) -> tuple[dict, object]:
    with transaction(engine) as session:
        row = session.scalars(
            select(ConversationState).where(ConversationState.address == WANG)
        ).one()
        return dict(row.state), row.updated_at


def test_a_new_call_files_what_an_earlier_call_left_half_way(line: Line) -> None:
    # The first call's status callback never came: its request waits, half-way.
    line.caller.call([Speak("我想报销住院的药费"), HangUp()], caller=WANG, status_callback=False)
    assert cases(line.engine) == []
    line.caller.call([HangUp()], caller=WANG, status_callback=False)
    [case] = cases(line.engine)  # filed when the second call came in
    assert case.category == "medication_reimbursement" and case.details["incomplete"]
    state, _ = conversation_row(line.engine)
    assert DialogueState.load(state).unfinished() == []


def test_a_call_after_a_finished_one_leaves_the_conversation_alone(line: Line) -> None:
    line.caller.call([Speak("我的事办到哪了"), Speak("没有了")], caller=WANG)
    before = conversation_row(line.engine)
    assert DialogueState.nothing_to_close(before[0])  # it ended with goodbye
    line.caller.call([HangUp()], caller=WANG, status_callback=False)
    # Nothing to close: the arrival spared the closing transaction (the row is as it was).
    assert conversation_row(line.engine) == before


# -- low confidence ------------------------------------------------------------------------------


def test_low_confidence_speech_is_confirmed_by_keypad_before_acting(line: Line) -> None:
    call = line.caller.call(
        [
            Speak("我要报销药费", confidence=0.31),
            Press("2"),
            Speak("我要报销门诊的药费", confidence=0.35),
            Press("1"),
            HangUp(),
        ],
        caller=WANG,
    )
    said_in_order(
        call,
        "您是说：我要报销药费，对吗？对请按1，不对请按2。",
        "请您再说一遍",
        "您是说：我要报销门诊的药费，对吗？",
        "大概多少钱？",
    )
    confirm = call.gathers[1]
    assert confirm["input"] == "dtmf" and confirm["numDigits"] == "1"
    with transaction(line.engine) as session:
        turns = session.execute(
            select(Message.text, Message.payload).where(Message.provider_id == f"{call.call_sid}:1")
        ).all()
    # Only the confirmed words reached the engine, as turn 1, with how they were confirmed.
    assert [text for text, _ in turns] == ["我要报销门诊的药费"]
    assert turns[0][1]["metadata"] == {"speech_confidence": 0.35, "confirmed": "keypad"}


# -- signatures, the proxy, repeats, status callbacks ----------------------------------------------


def test_a_bad_or_missing_signature_gets_403_and_nothing_is_stored(line: Line) -> None:
    caller = line.caller
    params = caller.base_params("CA" + "1" * 32, WANG, "+15005550006", "ringing")
    paths = ["", "/turn?n=1&lang=zh", "/confirm?n=1&said=x", "/dial?kind=handover&i=0"]
    paths += ["/recording?h=1", "/status"]
    for path in paths:
        url = f"{PUBLIC_URL}/twilio/voice{path}"
        turn = params | {"SpeechResult": "我摔倒了", "CallStatus": "completed"}
        assert caller.post(url, turn, signature=None).status_code == 403
        assert caller.post(url, turn, signature="bm90IGEgc2lnbmF0dXJl").status_code == 403
        # Signed for other words than those sent (a tampered request)
        forged = caller.signature(url, params)
        assert caller.post(url, turn, signature=forged).status_code == 403
        # Signed over the URL the app itself sees behind the proxy: not what Twilio signs
        local = f"{line.local_url}/twilio/voice{path}"
        assert caller.post(url, turn, signature=caller.signature(local, turn)).status_code == 403
    for model in (Message, ConversationState, Case):
        assert count(line.engine, model) == 0


def test_behind_a_proxy_the_public_url_is_validated(line: Line) -> None:
    # The server is http://127.0.0.1:<port>; Twilio calls and signs https://hotline.example.org.
    assert line.local_url.startswith("http://127.0.0.1:")
    call = line.caller.call([Speak("我想报销住院的药费"), HangUp()], caller=WANG)
    assert all(e.status_code == 200 for e in call.exchanges)
    assert all(e.public_url.startswith(PUBLIC_URL + "/twilio/voice") for e in call.exchanges)
    # The action URLs in the TwiML are relative: Twilio resolves them against the public URL.
    assert call.exchange("/twilio/voice/turn")[0].public_url.startswith(
        f"{PUBLIC_URL}/twilio/voice/turn?n=1"
    )


def test_a_repeated_webhook_is_answered_the_same_and_nothing_is_done_twice(line: Line) -> None:
    call = line.caller.call(
        [Speak("我要报销上个月住院的药费，一千二百块，请你们上门来取票据"), Press("1"), HangUp()],
        caller=WANG,
    )
    [case] = cases(line.engine)
    messages = count(line.engine, Message)
    for exchange in call.exchanges:
        again = line.caller.replay(exchange)
        assert again.status_code == 200
        assert again.text == exchange.body, exchange.public_url
    assert [c.number for c in cases(line.engine)] == [case.number]
    assert count(line.engine, Message) == messages


def test_repeats_along_a_hand_over_and_voicemail_file_one_callback(line: Line) -> None:
    call = line.caller.call([Press("0"), Voicemail(RECORDING)], caller=WANG)
    [callback] = cases(line.engine)
    messages = count(line.engine, Message)
    for exchange in call.exchanges:
        assert line.caller.replay(exchange).text == exchange.body, exchange.public_url
    assert [c.number for c in cases(line.engine)] == [callback.number]
    assert count(line.engine, Message) == messages


def test_a_repeated_emergency_webhook_dials_the_same_and_files_once(line: Line) -> None:
    call = line.caller.call([Speak("我摔倒了，起不来"), HangUp()], caller=WANG)
    turn = call.exchange("/twilio/voice/turn")[0]
    assert line.caller.replay(turn).text == turn.body
    assert [c.category for c in cases(line.engine)] == ["emergency"]


def test_call_status_callbacks_are_recorded(line: Line) -> None:
    sid = line.caller.new_sid()
    for status in ("ringing", "in-progress", "in-progress"):
        assert line.caller.status(sid, WANG, status).status_code == 200
    # Calls the app places itself (Direction outbound-api) are recorded and nothing more.
    outbound = line.caller.new_sid()
    for status in ("busy", "no-answer", "failed", "completed"):
        response = line.caller.status(outbound, STAFF_A1, status, Direction="outbound-api")
        assert response.status_code == 200
    with transaction(line.engine) as session:
        rows = session.execute(
            select(Message.provider_id, Message.status, Message.channel, Message.retiree_id)
            .where(Message.provider_id.like("%:status:%"))
            .order_by(Message.id)
        ).all()
    assert [(p.split(":", 1)[1], s, c) for p, s, c, _ in rows] == [
        ("status:ringing", "ringing", "phone"),
        ("status:in-progress", "in-progress", "phone"),
        ("status:busy", "busy", "phone"),
        ("status:no-answer", "no-answer", "phone"),
        ("status:failed", "failed", "phone"),
        ("status:completed", "completed", "phone"),
    ]
    assert rows[0].retiree_id is not None
    assert cases(line.engine) == []  # nothing closed or filed for those


def test_the_voice_line_is_off_without_twilio_settings(db_url: str, tmp_path: Path) -> None:
    app = create_app(Settings(database_url=db_url, data_dir=tmp_path, _env_file=None))
    status = {c.name: c for c in app.state.channels}
    assert not status["twilio_voice"].enabled and "TWILIO" in status["twilio_voice"].why
    no_url = create_app(settings_for(db_url, tmp_path, public_url=""))
    status = {c.name: c for c in no_url.state.channels}
    assert "HOTLINE_PUBLIC_URL" in status["twilio_voice"].why
