"""Entity extraction: amounts, dates, hospitals, relations, phone and case numbers, overlaps."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from nlu.entities import DEFAULT_RELATIONS, EntityTables, extract_entities, load_hospital_table
from nlu.entities.amounts import bare_amount

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A Wednesday, mid-morning in Shanghai.
REFERENCE = datetime(2026, 6, 3, 10, 0, tzinfo=SHANGHAI)
REAL_HOSPITALS = Path(__file__).resolve().parents[2] / "config" / "nlu" / "hospitals.yml"

HOSPITALS_YAML = """\
version: "3.1"
nlu:
- lookup: hospital
  examples: |
    - 市第一人民医院
    - 北京协和医院
    - Peking Union Hospital
    # a comment line inside the block is not a name
- synonym: 市第一人民医院
  examples: |
    - 市一院
    - 一院
- synonym: 北京协和医院
  examples: |
    - 协和
    - 协和医院
"""


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> EntityTables:
    path = tmp_path_factory.mktemp("nlu") / "hospitals.yml"
    path.write_text(HOSPITALS_YAML, encoding="utf-8")
    return EntityTables(hospitals=load_hospital_table(path), relations=dict(DEFAULT_RELATIONS))


def extract(text: str, tables: EntityTables, reference: datetime = REFERENCE) -> list[dict]:
    return extract_entities(text, reference, tables)


def only(text: str, tables: EntityTables, kind: str, reference: datetime = REFERENCE) -> dict:
    """The one entity found in ``text``, which must be of ``kind``."""
    found = extract(text, tables, reference)
    assert [e["entity"] for e in found] == [kind], (text, found)
    return found[0]


def spans(text: str, found: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    return [(e["entity"], text[e["start"] : e["end"]], e["value"]) for e in found]


# (text, value, the words of the span, approximate)
AMOUNTS = [
    ("350块", 350, "350块", False),
    ("药费三百五十块", 350, "三百五十块", False),
    ("三百五十元", 350, "三百五十元", False),
    ("三百五块", 350, "三百五块", False),
    ("一共三百五的药费", 350, "三百五", False),
    ("两千八的住院费", 2800, "两千八", False),
    ("一千二的药钱", 1200, "一千二", False),
    ("药费三百五", 350, "三百五", False),
    ("我要报销药费，一千二百五", 1250, "一千二百五", False),
    ("药费大概一千二", 1200, "一千二", False),
    ("花了七十五", 75, "七十五", False),
    ("住院花了一万二", 12000, "一万二", False),
    ("报了1.5万", 15000, "1.5万", False),
    ("两千多块钱", 2000, "两千多块钱", True),
    ("一千来块", 1000, "一千来块", True),
    ("十几块钱", 10, "十几块钱", True),
    ("两三百块", 200, "两三百块", True),
    ("三百块左右", 300, "三百块", True),
    ("药费是1200多", 1200, "1200多", True),
    ("¥350", 350, "¥350", False),
    ("￥350", 350, "￥350", False),
    ("¥ 1,500", 1500, "¥ 1,500", False),
    ("1,500元", 1500, "1,500元", False),
    ("I paid 350 yuan", 350, "350 yuan", False),
    ("RMB 200 please", 200, "RMB 200", False),
    ("it was 200 RMB", 200, "200 RMB", False),
    ("三块五", 3.5, "三块五", False),
    ("花了一块", 1, "一块", False),
    ("白菜一斤三块", 3, "三块", False),
    ("五块钱", 5, "五块钱", False),
    ("3元5角", 3.5, "3元5角", False),
    ("2.5元", 2.5, "2.5元", False),
    ("一点五万块", 15000, "一点五万块", False),
    ("两万块", 20000, "两万块", False),
    ("兩千塊錢", 2000, "兩千塊錢", False),
    ("３５０元", 350, "３５０元", False),
    ("0.5元", 0.5, "0.5元", False),
]


@pytest.mark.parametrize(("text", "value", "words", "approximate"), AMOUNTS)
def test_amounts(
    tables: EntityTables, text: str, value: float, words: str, approximate: bool
) -> None:
    entity = only(text, tables, "amount")
    assert entity["value"] == value
    assert type(entity["value"]) is type(value)
    assert text[entity["start"] : entity["end"]] == words
    assert entity.get("approximate", False) is approximate
    assert entity["extractor"] == "AmountExtractor"


@pytest.mark.parametrize(
    "text",
    [
        "我今年七十五了",  # a bare number is not money
        "三百五",
        "花了三天",
        "花了五",  # too small to be money without a unit
        "总共十五天",
        "三百五十个人的费用",
        "一共三个人",
        "我们一块去医院",  # 一块 = together
        "窗户玻璃碎了一块",  # a piece
        "两块砖",
        "正月十五元宵节",
        "十万火急",
        "两万人参加",
        "等了350天",
        "2026000123",  # a case number, not money
    ],
)
def test_no_amount(tables: EntityTables, text: str) -> None:
    assert [e for e in extract(text, tables) if e["entity"] == "amount"] == []


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("三百五", (350, False)),
        ("一千二百五", (1250, False)),
        ("一千二", (1200, False)),
        ("两千三", (2300, False)),
        ("一百零五", (105, False)),
        ("大概两千三吧", (2300, True)),
        ("五百多", (500, True)),
        ("300", (300, False)),
        ("1,500", (1500, False)),
        ("三天", None),
        ("我三百五", None),
        ("明天", None),
    ],
)
def test_a_bare_amount_answers_how_much(answer: str, expected: tuple[int, bool] | None) -> None:
    """Said for "how much?", a number is money without a unit: colloquial shortened numerals
    (三百五 is 350, 一千二百五 is 1250) too."""
    assert bare_amount(answer) == expected


# (text, value, grain, the words of the span); the reference day is Wednesday 2026-06-03.
DATES = [
    ("今天", "2026-06-03", "day", "今天"),
    ("明天去", "2026-06-04", "day", "明天"),
    ("明儿个", "2026-06-04", "day", "明儿个"),
    ("后天", "2026-06-05", "day", "后天"),
    ("大后天", "2026-06-06", "day", "大后天"),
    ("昨天", "2026-06-02", "day", "昨天"),
    ("前天", "2026-06-01", "day", "前天"),
    ("大前天", "2026-05-31", "day", "大前天"),
    ("下周三复查", "2026-06-10", "day", "下周三"),
    ("下星期三", "2026-06-10", "day", "下星期三"),
    ("下礼拜三", "2026-06-10", "day", "下礼拜三"),
    ("下个星期一", "2026-06-08", "day", "下个星期一"),
    ("这周五", "2026-06-05", "day", "这周五"),
    ("这周一", "2026-06-01", "day", "这周一"),
    ("上周一", "2026-05-25", "day", "上周一"),
    ("下下周一", "2026-06-15", "day", "下下周一"),
    ("周五", "2026-06-05", "day", "周五"),
    ("周三", "2026-06-03", "day", "周三"),  # the reference day itself
    ("周二", "2026-06-09", "day", "周二"),
    ("周日", "2026-06-07", "day", "周日"),
    ("星期天", "2026-06-07", "day", "星期天"),
    ("下周", "2026-06-08", "week", "下周"),
    ("这周", "2026-06-01", "week", "这周"),
    ("上个星期", "2026-05-25", "week", "上个星期"),
    ("上个月的药费", "2026-05-01", "month", "上个月"),
    ("下个月", "2026-07-01", "month", "下个月"),
    ("这个月", "2026-06-01", "month", "这个月"),
    ("上上个月", "2026-04-01", "month", "上上个月"),
    ("月底", "2026-06-30", "day", "月底"),
    ("下个月底", "2026-07-31", "day", "下个月底"),
    ("上个月5号", "2026-05-05", "day", "上个月5号"),
    ("3月5号", "2026-03-05", "day", "3月5号"),
    ("3月5日", "2026-03-05", "day", "3月5日"),
    ("三月五号", "2026-03-05", "day", "三月五号"),
    ("十二月二十五号", "2025-12-25", "day", "十二月二十五号"),  # nearer than 2026-12-25
    ("2026年3月5日", "2026-03-05", "day", "2026年3月5日"),
    ("二〇二五年十二月一日", "2025-12-01", "day", "二〇二五年十二月一日"),
    ("2026-03-05", "2026-03-05", "day", "2026-03-05"),
    ("2026/3/5", "2026-03-05", "day", "2026/3/5"),
    ("2026年7月", "2026-07-01", "month", "2026年7月"),
    ("5号来", "2026-06-05", "day", "5号"),
    ("3号", "2026-06-03", "day", "3号"),  # today counts as the next 3rd
    ("2号", "2026-07-02", "day", "2号"),  # already past this month
    ("31号", "2026-07-31", "day", "31号"),  # June has no 31st
    ("二十号", "2026-06-20", "day", "二十号"),
    ("三天前摔了一跤", "2026-05-31", "day", "三天前"),
    ("两个星期后复查", "2026-06-17", "day", "两个星期后"),
    ("三个月前", "2026-03-03", "day", "三个月前"),
    ("年底", "2026-12-31", "day", "年底"),
    ("明年年底", "2027-12-31", "day", "明年年底"),
    ("下週三", "2026-06-10", "day", "下週三"),
    ("today", "2026-06-03", "day", "today"),
    ("Tomorrow morning", "2026-06-04", "day", "Tomorrow"),
    ("yesterday", "2026-06-02", "day", "yesterday"),
    ("the day after tomorrow", "2026-06-05", "day", "the day after tomorrow"),
    ("next Monday", "2026-06-08", "day", "next Monday"),
    ("this Friday", "2026-06-05", "day", "this Friday"),
    ("on Friday", "2026-06-05", "day", "Friday"),
    ("on March 5", "2026-03-05", "day", "March 5"),
    ("March 5th, 2027", "2027-03-05", "day", "March 5th, 2027"),
    ("the 5th of March", "2026-03-05", "day", "5th of March"),
    ("next week", "2026-06-08", "week", "next week"),
    ("last month", "2026-05-01", "month", "last month"),
    ("3 days ago", "2026-05-31", "day", "3 days ago"),
    ("in two weeks", "2026-06-17", "day", "in two weeks"),
]


@pytest.mark.parametrize(("text", "value", "grain", "words"), DATES)
def test_dates(tables: EntityTables, text: str, value: str, grain: str, words: str) -> None:
    entity = only(text, tables, "date")
    assert (entity["value"], entity["grain"]) == (value, grain)
    assert text[entity["start"] : entity["end"]] == words
    assert entity["extractor"] == "DateExtractor"


@pytest.mark.parametrize(
    "text",
    [
        "2月30号",
        "2026年2月30日",
        "2026-02-30",
        "13月5号",
        "2月 30号",  # not 30号 alone either
        "2月29号",  # no 29 February in 2025, 2026 or 2027
        "年后再说",  # too vague
        "过几天吧",
        "我住5号楼",
        "坐3号线",
        "12号床的病人",
        "一周三次",
        "一日三餐",
        "3日内办好",
        "这周围有药店吗",
        "这个月饼真好吃",
        "在5号站台等",
    ],
)
def test_no_date(tables: EntityTables, text: str) -> None:
    assert [e for e in extract(text, tables) if e["entity"] == "date"] == []


def test_dates_resolve_in_shanghai_whatever_the_reference_zone(tables: EntityTables) -> None:
    late_utc = datetime(2026, 6, 3, 20, 0, tzinfo=ZoneInfo("UTC"))  # 04:00 on the 4th in Shanghai
    assert only("今天", tables, "date", late_utc)["value"] == "2026-06-04"
    assert only("明天", tables, "date", late_utc)["value"] == "2026-06-05"


def test_month_and_day_take_the_nearest_year(tables: EntityTables) -> None:
    december = datetime(2026, 12, 28, 9, 0, tzinfo=SHANGHAI)
    assert only("1月5号", tables, "date", december)["value"] == "2027-01-05"
    assert only("12月5号", tables, "date", december)["value"] == "2026-12-05"
    assert only("下个月", tables, "date", december)["value"] == "2027-01-01"
    assert only("5号", tables, "date", december)["value"] == "2027-01-05"


def test_hospital_table_loads_lookup_and_synonyms(tmp_path: Path) -> None:
    path = tmp_path / "hospitals.yml"
    path.write_text(HOSPITALS_YAML, encoding="utf-8")
    assert load_hospital_table(path) == {
        "市第一人民医院": "市第一人民医院",
        "北京协和医院": "北京协和医院",
        "Peking Union Hospital": "Peking Union Hospital",
        "市一院": "市第一人民医院",
        "一院": "市第一人民医院",
        "协和": "北京协和医院",
        "协和医院": "北京协和医院",
    }


def test_hospital_table_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_hospital_table(tmp_path / "absent.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text("nlu: [unclosed", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_hospital_table(broken)
    wrong = tmp_path / "wrong.yml"
    wrong.write_text("- just a list\n", encoding="utf-8")
    with pytest.raises(ValueError, match="nlu"):
        load_hospital_table(wrong)


@pytest.mark.parametrize(
    ("text", "value", "words"),
    [
        ("我想转到市一院去", "市第一人民医院", "市一院"),
        ("市第一人民医院", "市第一人民医院", "市第一人民医院"),
        ("在协和医院看的", "北京协和医院", "协和医院"),  # the longest form
        ("去协和", "北京协和医院", "协和"),
        ("at peking union hospital", "Peking Union Hospital", "peking union hospital"),
    ],
)
def test_hospitals(tables: EntityTables, text: str, value: str, words: str) -> None:
    entity = only(text, tables, "hospital")
    assert entity["value"] == value
    assert text[entity["start"] : entity["end"]] == words


@pytest.mark.skipif(not REAL_HOSPITALS.is_file(), reason="config/nlu/hospitals.yml not written yet")
def test_real_hospital_table_loads() -> None:
    table = load_hospital_table(REAL_HOSPITALS)
    assert len(table) >= 10
    canonical = set(table.values())
    assert all(table[name] == name for name in canonical)
    tables = EntityTables(hospitals=table)
    spoken = next(form for form, name in table.items() if form != name)
    found = extract_entities(f"我要去{spoken}看病", REFERENCE, tables)
    assert [(e["entity"], e["value"]) for e in found] == [("hospital", table[spoken])]


@pytest.mark.parametrize(
    ("text", "value", "words"),
    [
        ("我老伴摔倒了", "spouse", "老伴"),
        ("我老伴儿病了", "spouse", "老伴儿"),
        ("我老婆子没了", "spouse", "老婆子"),
        ("我家那口子", "spouse", "那口子"),
        ("我爱人住院了", "spouse", "爱人"),
        ("我家老头子", "spouse", "老头子"),
        ("老太婆不舒服", "spouse", "老太婆"),
        ("我老婆", "spouse", "老婆"),
        ("她老公", "spouse", "老公"),
        ("我儿子", "son", "儿子"),
        ("我大儿子", "son", "大儿子"),
        ("我女儿", "daughter", "女儿"),
        ("我闺女", "daughter", "闺女"),
        ("我孙子", "grandchild", "孙子"),
        ("我孙女儿", "grandchild", "孙女儿"),  # not 女儿
        ("外孙女", "grandchild", "外孙女"),
        ("外孙", "grandchild", "外孙"),
        ("儿媳妇", "daughter_in_law", "儿媳妇"),  # not 媳妇 alone
        ("我儿媳", "daughter_in_law", "儿媳"),
        ("我媳妇", "daughter_in_law", "媳妇"),
        ("我女婿", "son_in_law", "女婿"),
        ("我哥哥", "sibling", "哥哥"),
        ("弟弟", "sibling", "弟弟"),
        ("兄弟", "sibling", "兄弟"),
        ("邻居家", "neighbour", "邻居"),
        ("隔壁那家", "neighbour", "隔壁"),
        ("对门养的狗", "neighbour", "对门"),
        ("我兒子", "son", "兒子"),
        ("My wife fell", "spouse", "wife"),  # the noun, like 老伴 in 我老伴
        ("for my husband", "spouse", "husband"),
        ("call our son", "son", "son"),
        ("my daughter", "daughter", "daughter"),
        ("my son-in-law", "son_in_law", "son-in-law"),  # not my son
        ("the neighbour upstairs", "neighbour", "neighbour"),
    ],
)
def test_relations(tables: EntityTables, text: str, value: str, words: str) -> None:
    entity = only(text, tables, "relation")
    assert entity["value"] == value
    assert text[entity["start"] : entity["end"]] == words


@pytest.mark.parametrize(
    "text",
    [
        "我自己本人",
        "楼下一个老头儿晕倒了",  # an old man, not a husband
        "a son of the soil",  # English family words need my/our
        "是我",
        "去老公园散步",
        "一个老婆婆",
        "he is a person",
        "my sonata",
        "the neighbourhood",
    ],
)
def test_no_relation(tables: EntityTables, text: str) -> None:
    assert extract(text, tables) == []


def test_sibling_words_side_by_side(tables: EntityTables) -> None:
    text = "姐姐妹妹都来了"
    assert spans(text, extract(text, tables)) == [
        ("relation", "姐姐", "sibling"),
        ("relation", "妹妹", "sibling"),
    ]


@pytest.mark.parametrize(
    ("text", "value", "words"),
    [
        ("电话13812345678", "+8613812345678", "13812345678"),
        ("138 1234 5678", "+8613812345678", "138 1234 5678"),
        ("138-1234-5678", "+8613812345678", "138-1234-5678"),
        ("+86 13812345678", "+8613812345678", "+86 13812345678"),
        ("+8613812345678", "+8613812345678", "+8613812345678"),
        ("0086 138 1234 5678", "+8613812345678", "0086 138 1234 5678"),
        ("座机010-62345678", "+861062345678", "010-62345678"),
        ("(021) 6234 5678", "+862162345678", "(021) 6234 5678"),
        ("0755-83456789", "+8675583456789", "0755-83456789"),
    ],
)
def test_phone_numbers(tables: EntityTables, text: str, value: str, words: str) -> None:
    entity = only(text, tables, "phone_number")
    assert entity["value"] == value
    assert text[entity["start"] : entity["end"]] == words
    assert entity["extractor"] == "RegexEntityExtractor"


@pytest.mark.parametrize("text", ["12345678901", "138123456789", "1381234567", "110"])
def test_no_phone_number(tables: EntityTables, text: str) -> None:
    assert [e for e in extract(text, tables) if e["entity"] == "phone_number"] == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("案件号2026-000123", "2026-000123"),
        ("2026 000123", "2026 000123"),
        ("2026杠000123", "2026杠000123"),
        ("2026横000123", "2026横000123"),
        ("编号是2026000123吗", "2026000123"),
    ],
)
def test_case_numbers(tables: EntityTables, text: str, words: str) -> None:
    entity = only(text, tables, "case_number")  # no phone number, amount or date inside it
    assert entity["value"] == "2026-000123"
    assert text[entity["start"] : entity["end"]] == words


@pytest.mark.parametrize("text", ["2026-0001234", "202600012", "1234-000123"])
def test_no_case_number(tables: EntityTables, text: str) -> None:
    assert [e for e in extract(text, tables) if e["entity"] == "case_number"] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3月5号花了350块", [("date", "3月5号", "2026-03-05"), ("amount", "350块", 350)]),
        ("2026年3月5日", [("date", "2026年3月5日", "2026-03-05")]),  # not also 3月5日 or 5日
        ("13812345678元", [("phone_number", "13812345678", "+8613812345678")]),
        ("下周三", [("date", "下周三", "2026-06-10")]),  # not also 下周 or 周三
        ("孙女儿", [("relation", "孙女儿", "grandchild")]),
        (
            "我 老 伴 明 天 去 市 一 院 花 了 三 百 五 十 块",  # a recogniser's spaces
            [
                ("relation", "老 伴", "spouse"),
                ("date", "明 天", "2026-06-04"),
                ("hospital", "市 一 院", "市第一人民医院"),
                ("amount", "三 百 五 十 块", 350),
            ],
        ),
    ],
)
def test_overlaps_keep_the_longer(
    tables: EntityTables, text: str, expected: list[tuple[str, str, Any]]
) -> None:
    assert spans(text, extract(text, tables)) == expected


def test_a_long_utterance(tables: EntityTables) -> None:
    text = (
        "哎呀那个，我老伴上个月在市一院住院，药费花了两千多块钱，"
        "案件号2026-000123，下周三能报销吗？我电话138 1234 5678"
    )
    found = extract(text, tables)
    assert spans(text, found) == [
        ("relation", "老伴", "spouse"),
        ("date", "上个月", "2026-05-01"),
        ("hospital", "市一院", "市第一人民医院"),
        ("amount", "两千多块钱", 2000),
        ("case_number", "2026-000123", "2026-000123"),
        ("date", "下周三", "2026-06-10"),
        ("phone_number", "138 1234 5678", "+8613812345678"),
    ]
    assert [e["start"] for e in found] == sorted(e["start"] for e in found)
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(found))
    assert set(found[0]) == {"entity", "value", "start", "end", "confidence_entity", "extractor"}
    assert found[0]["confidence_entity"] == 1.0
    assert found[1]["grain"] == "month"
    assert found[3]["approximate"] is True


def test_empty_and_plain_texts(tables: EntityTables) -> None:
    assert extract("", tables) == []
    assert extract("你好，我想问问政策", tables) == []


def test_default_tables() -> None:
    tables = EntityTables()
    assert tables.relations == DEFAULT_RELATIONS
    assert tables.hospitals == {}
    assert spans("我闺女", extract_entities("我闺女", REFERENCE, tables)) == [
        ("relation", "闺女", "daughter")
    ]
