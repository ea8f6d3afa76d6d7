"""`hotline chat` as a person uses it: lines piped in, the bot's replies and the filed cases out,
against a migrated SQLite database with the demo data."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.db import make_engine
from storage.models import Case, Direction, Message, Retiree, RetireePhone, RetireeStatus

HOTLINE = Path(sys.executable).with_name("hotline")
KNOWN = "+8613800000002"  # a demo retiree of 幸福社区 (C-XF)
STRANGER = "+8613912345670"  # nobody in the demo data
CASE_LINE = re.compile(
    r"\[case (?P<number>\d{4}-\d{6}) (?P<how>filed|filed at hang-up): (?P<category>\w+), "
    r"priority (?P<priority>\d), queue (?P<unit>[\w-]+) (?P<unit_name>\S+)\]"
)


def run_hotline(env: dict[str, str], *args: str, input: str = "", code: int = 0) -> str:
    done = subprocess.run(
        [str(HOTLINE), *args],
        input=input,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    return done.stdout if code == 0 else done.stderr


def environment(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    return {
        **env,
        "HOTLINE_DATA_DIR": str(data_dir),
        "HOTLINE_DATABASE_URL": f"sqlite:///{data_dir / 'hotline.db'}",
    }


def data_dir_with_model(folder: Path, trained_nlu_dir: Path) -> Path:
    """A data folder with the NLU model already trained (saves training it in each command)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(trained_nlu_dir / "nlu-cache", folder / "nlu-cache")
    return folder


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory, trained_nlu_dir: Path) -> Path:
    """A data folder, migrated and seeded once by `hotline db upgrade` and `hotline seed-demo`."""
    folder = data_dir_with_model(tmp_path_factory.mktemp("chat-template") / "data", trained_nlu_dir)
    env = environment(folder)
    run_hotline(env, "db", "upgrade")
    assert "30 retirees" in run_hotline(env, "seed-demo")
    assert not (folder / "hotline.db-wal").exists()
    return folder


@pytest.fixture
def data_dir(demo_template: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(demo_template, folder)
    return folder


@pytest.fixture
def chat(data_dir: Path):
    env = environment(data_dir)

    def run(lines: list[str], *options: str, code: int = 0) -> str:
        text = "".join(f"{line}\n" for line in lines)
        return run_hotline(env, "chat", *options, input=text, code=code)

    return run


@pytest.fixture
def db(data_dir: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{data_dir / 'hotline.db'}")
    with Session(engine) as session:
        yield session
    engine.dispose()


def case_lines(output: str) -> list[dict[str, str]]:
    return [m.groupdict() for m in CASE_LINE.finditer(output)]


def inbound_count(db: Session, address: str) -> int:
    return db.scalar(
        select(func.count())
        .select_from(Message)
        .where(Message.address == address, Message.direction == Direction.INBOUND)
    )


def test_a_known_retiree_files_a_reimbursement(chat, db: Session) -> None:
    out = chat(
        [
            "我想报销药费，大概三百块，是上个月住院的",
            "上门来取吧",
            "1",
            "没有了，谢谢",
            "这一行在再见之后，不再读",
        ],
        "--phone",
        "138 0000 0002",
    )
    assert "> " not in out  # no prompt when the input is piped
    assert "票据是请工作人员上门来取" in out
    assert "1. 上门来取\n2. 自己送去\n请回复数字选择。" in out  # the text rendering
    assert "金额300元" in out and "再见" in out
    [filed] = case_lines(out)
    assert filed["how"] == "filed"
    assert filed["category"] == "medication_reimbursement"
    assert (filed["unit"], filed["unit_name"]) == ("C-XF", "幸福社区退管站")
    assert out.index("再见") > out.index(f"[case {filed['number']}")
    case = db.scalars(select(Case).where(Case.number == filed["number"])).one()
    assert case.category == "medication_reimbursement" and case.channel == "cli"
    assert case.priority == int(filed["priority"]) and case.unit.code == "C-XF"
    assert KNOWN in [p.number for p in case.retiree.phones]
    assert case.details["slots"]["amount"] == 300
    assert inbound_count(db, KNOWN) == 4  # the line after the goodbye was not sent


def test_an_unknown_caller_is_registered_then_helped(chat, db: Session) -> None:
    out = chat(
        ["我想报销药费", "张三", "和平社区5号楼", "1", "门诊开的药", "两百块", "2", "1", "没有了"],
        "--phone",
        STRANGER,
    )
    assert "我们还没有您的登记信息" in out
    assert [(c["category"], c["unit"]) for c in case_lines(out)] == [
        ("registration", "C-HP"),
        ("medication_reimbursement", "C-HP"),
    ]
    person = db.scalars(select(Retiree).join(RetireePhone).where(RetireePhone.number == STRANGER))
    retiree = person.one()
    assert retiree.name == "张三" and retiree.status == RetireeStatus.PENDING
    cases = db.scalars(select(Case).where(Case.retiree_id == retiree.id).order_by(Case.id)).all()
    assert [c.category for c in cases] == ["registration", "medication_reimbursement"]
    assert cases[1].details["slots"]["receipts"] == "bring"


def test_without_phone_an_unknown_caller_and_an_empty_line_is_silence(chat) -> None:
    out = chat(["我想报销药费", ""])
    assert "我们还没有您的登记信息" in out and "请问您怎么称呼" in out
    assert "您还在吗" in out.split("请问您怎么称呼", 1)[1]


def test_end_of_input_half_way_files_the_request(chat, db: Session) -> None:
    out = chat(["我想报销药费，大概三百块"], "--phone", KNOWN)
    assert "哪方面的药费" in out
    [filed] = case_lines(out)
    assert filed["how"] == "filed at hang-up"
    assert filed["category"] == "medication_reimbursement" and filed["unit"] == "C-XF"
    case = db.scalars(select(Case).where(Case.number == filed["number"])).one()
    assert case.channel == "cli" and case.details["slots"]["amount"] == 300
    db.rollback()  # SQLite: every transaction, reads too, begins IMMEDIATE and holds the lock
    # A second run starts afresh: the request is not filed twice.
    assert case_lines(chat([], "--phone", KNOWN)) == []


def test_phone_channel_speaks_the_choices(chat, db: Session) -> None:
    out = chat(
        ["我想报销药费，大概三百块，是上个月住院的", "1"], "--phone", KNOWN, "--channel", "phone"
    )
    assert "上门来取请按1" in out and "请回复数字选择" not in out
    assert "金额300元" in out  # the key press picked the first choice
    digits = db.scalars(
        select(Message.payload).where(
            Message.address == KNOWN, Message.direction == Direction.INBOUND
        )
    ).all()
    assert [d.get("digits") for d in digits] == [None, "1"]


def test_refuses_a_database_that_is_not_migrated(tmp_path: Path, trained_nlu_dir: Path) -> None:
    env = environment(data_dir_with_model(tmp_path / "data", trained_nlu_dir))
    err = run_hotline(env, "chat", input="你好\n", code=1)
    assert "hotline db upgrade" in err
    run_hotline(env, "db", "upgrade")
    err = run_hotline(env, "chat", input="你好\n", code=1)
    assert "hotline seed-demo" in err


def test_refuses_a_bad_phone_number(chat) -> None:
    assert "12345" in chat(["你好"], "--phone", "12345", code=1)


def test_the_demo_phones_the_help_names_are_the_demo_retirees(data_dir: Path, db: Session) -> None:
    """`hotline chat --help` names the first and the last demo phone: both are retirees'."""
    shown = run_hotline(environment(data_dir), "chat", "--help")
    named = re.findall(r"\+861380000\d{4}", " ".join(shown.split()))
    assert len(named) == 2
    for phone in named:
        assert db.scalar(select(RetireePhone.retiree_id).where(RetireePhone.number == phone))
