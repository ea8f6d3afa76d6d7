"""Emergency safety rules: every trigger fires, every exception cancels, bad files are refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.loader import ConfigError
from config.settings import CONFIG_DIR
from nlu.rules import EmergencyRules

RULES_PATH = CONFIG_DIR / "nlu" / "emergency_rules.yml"
RULES = EmergencyRules.load(RULES_PATH)
SPEC = RULES.spec
LATIN = re.compile("[a-zA-Z]")


@pytest.mark.parametrize("phrase", SPEC.triggers.phrases)
def test_every_trigger_phrase_fires(phrase: str) -> None:
    assert RULES.match(phrase) is not None
    sentence = f"喂，{phrase}，快来" if not LATIN.search(phrase) else f"please, {phrase}, quick"
    assert RULES.match(sentence) is not None, sentence


@pytest.mark.parametrize(
    "text",
    [
        "救命啊",
        "我老伴摔倒了，起不来",
        "俺家老头子在厕所跌倒了",
        "我妈晕倒了叫不醒",
        "喘不上气，胸口疼",
        "厨房着火了",
        "著火了，快來人",  # traditional
        "家裡煤氣洩漏了",  # traditional
        "他嘴歪了，说不出话",
        "好像中风了",
        "手割破了流了好多血",
        "有人撬门",
        "救 命",  # spaced out by the recogniser
        "Help me!",
        "help",
        "My husband fell down in the bathroom",
        "I can't breathe",
        "I can’t breathe",  # curly apostrophe
        "chest pain",
        "FIRE in the kitchen",
        "there is a gas leak",
        "I think she is having a stroke",
        "他是不是中风了",  # a question about a stroke is still an emergency
        "有没有可能是中风",
        "我上次摔倒了，现在又摔倒了",  # the second fall counts
        "来人啊",
        "喂，来人呀，我起不来",
        "Somebody help!",
    ],
)
def test_emergencies_fire(text: str) -> None:
    assert RULES.match(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "不是急事",
        "不是急事，就是问问",
        "我没摔",
        "我没摔倒，就是腿疼",
        "上次摔倒的医药费报销",
        "摔倒那次的住院报销怎么办",
        "前几天摔倒了，医药费能报吗",
        "去年中风住院的钱能报销吗",
        "我老伴中风好几年了，有什么补贴",
        "我想交煤气费",
        "煤气灶打不着火了",
        "手机摔了",
        "我怕摔倒，想装个扶手",
        "防止摔倒的扶手谁给装",
        "万一摔倒了怎么办",
        "There is no fire",
        "We had a fire drill",
        "Can you help me with my pension?",
        "my wife had a stroke last year, is there a subsidy?",
        "我想问问养老金",
        "上回说的修水管，啥时候来人啊",
        "Can someone help my father with groceries",
        "could you help me.",
    ],
)
def test_exceptions_and_ordinary_texts_do_not_fire(text: str) -> None:
    assert RULES.match(text) is None, RULES.hits(text)


@pytest.mark.parametrize("phrase", SPEC.exceptions.phrases)
def test_every_exception_phrase_cancels_the_trigger_inside_it(phrase: str) -> None:
    hits = RULES.hits(phrase)
    assert all(not hit.counted for hit in hits), hits
    assert RULES.match(phrase) is None


@pytest.mark.parametrize("word", SPEC.exceptions.not_after)
def test_every_negation_cancels_a_trigger_right_after_it(word: str) -> None:
    trigger = "fire" if LATIN.search(word) else "摔倒"
    text = f"{word} {trigger}" if LATIN.search(word) else f"{word}{trigger}"
    assert RULES.match(text) is None, RULES.hits(text)
    # ...but not a trigger further away
    later = f"{text}. help me!" if LATIN.search(word) else f"{text}，现在晕倒了"
    assert RULES.match(later) is not None


@pytest.mark.parametrize("question", SPEC.exceptions.questions)
def test_questions_are_not_negations(question: str) -> None:
    assert RULES.match(f"他{question}中风了") == "中风"


def _past_claim_cases() -> list[tuple[str, str]]:
    assert SPEC.exceptions.past_claim is not None
    claim = SPEC.exceptions.past_claim
    return [(past, claim.claims[0]) for past in claim.past]


@pytest.mark.parametrize(("past", "claim"), _past_claim_cases())
def test_every_past_word_with_a_claim_cancels(past: str, claim: str) -> None:
    if LATIN.search(past):
        assert RULES.match(f"i fell down {past}, how do i {claim}") is None
        assert RULES.match(f"i fell down {past}") is not None  # no claim: still counts
    else:
        assert RULES.match(f"{past}摔倒的{claim}怎么办") is None
        assert RULES.match(f"{past}摔倒了") is not None  # no claim: still counts


@pytest.mark.parametrize(
    "claim", SPEC.exceptions.past_claim.claims if SPEC.exceptions.past_claim else []
)
def test_every_claim_word_with_a_past_word_cancels(claim: str) -> None:
    if LATIN.search(claim):
        assert RULES.match(f"she fell down last year, {claim}") is None
    else:
        assert RULES.match(f"上次摔倒，{claim}") is None


@pytest.mark.parametrize(
    ("text", "trigger"),
    [
        # calling for an ambulance
        ("帮我叫120", "叫120"),
        ("快给我叫个120", "叫个120"),
        ("麻烦叫个救护车", "叫个救护车"),
        # falls
        ("我老伴腿一软，站不起来了", "站不起来了"),
        ("老头子摔地上了，脑袋出血了", "摔地上"),
        ("他在院里栽倒了", "栽倒"),
        ("老伴从凳子上栽下来了", "栽下来"),
        # fainting, seizures, unconsciousness
        ("我老伴抽过去了，快来", "抽过去"),
        ("俺妈一着急背过气去了", "背过气"),
        ("他疼得昏死过去了", "昏死过去"),
        ("人突然失去知觉了", "失去知觉"),
        ("病人失去意识了", "失去意识"),
        ("倒在地上人事不省", "人事不省"),
        ("倒在地上了，叫不应", "叫不应"),
        ("怎么喊都喊不醒", "喊不醒"),
        ("孩子翻白眼，口吐白沫", "口吐白沫"),
        ("他浑身抽搐", "抽搐"),
        ("俺姥爷羊角风犯了", "羊角风犯了"),
        ("他羊癫疯犯了", "羊癫疯犯了"),
        # choking, breathing
        ("孙子吃东西噎住了", "噎住了"),
        ("老伴吃汤圆噎着了", "噎着了"),
        ("憋得喘不上来了", "喘不上来"),
        # bleeding
        ("腿上的口子血流不止", "血流不止"),
        ("鼻子流血不止", "流血不止"),
        ("止不住血了", "止不住血"),
        ("他摔得满脸是血", "满脸是血"),
        ("磕得满头是血", "满头是血"),
        ("弄了一脸血", "一脸血"),
        ("地上全是血，快来", "地上全是血"),
        # gas
        ("家里天然气味儿好大", "天然气味"),
        ("燃气泄露了", "燃气泄露"),
        ("楼道里天然气泄露了", "天然气泄露"),
        ("厨房漏天然气了", "漏天然气"),
        ("一股液化气味", "液化气味"),
        ("液化气泄漏了", "液化气泄漏"),
        ("罐子漏液化气", "漏液化气"),
        # poisoning, overdose
        ("我老伴吃错药了，一直吐", "吃错药"),
        ("他想不开喝了半瓶农药", "喝了半瓶农药"),
        ("老伴误吃了老鼠药", "吃了老鼠药"),
        ("孩子误服了降压药", "误服"),
        ("有人服毒了", "服毒"),
        ("我妈安眠药吃多了", "安眠药吃多了"),
        ("他吃多了安眠药，叫不醒", "吃多了安眠药"),
        # a missing person
        ("我老伴有老年痴呆，走丢了", "走丢了"),
        ("老人走失了，一上午没回来", "走失了"),
        # break-ins
        ("有人撬我家门", "有人撬"),
        ("小偷是撬窗户进来的", "撬窗"),
        ("有人闯进来了", "有人闯进"),
        ("一个男的闯进屋里了", "闯进屋"),
        ("有个醉汉闯进我家了", "闯进我家"),
        ("陌生人硬往屋里闯", "往屋里闯"),
        ("那人非要往家里闯", "往家里闯"),
        ("这是私闯民宅", "私闯民宅"),
        ("后院有人翻墙", "有人翻墙"),
        ("刚才有人翻窗户", "有人翻窗"),
        ("外头有人扒窗户", "有人扒窗"),
        ("后面有人扒着窗户往里看", "有人扒着窗"),
        ("家里入室盗窃了", "入室盗窃"),
        ("有个男的扒着我家窗户", "有个男的扒着我家窗"),
        ("门口有人拿家伙在撬锁", "有人拿家伙在撬"),
        ("有人翻进院子里来了", "有人翻进"),
        ("有個人在陽台上往屋裡爬", "有个人在阳台上往屋里爬"),  # traditional
        # violence
        ("楼下有人抢劫", "抢劫"),
        ("外头有人砍人", "砍人"),
        ("他说要杀我", "要杀我"),
        ("有人拿着刀在楼道里追人", "拿着刀在楼道里追"),
        # English
        ("my grandma is having a seizure", "seizure"),
        ("my husband is choking", "choking"),
        ("there is an intruder downstairs", "intruder"),
        ("I think she took an overdose", "overdose"),
        ("he overdosed on sleeping pills", "overdosed"),
        ("someone wants to break in", "break in"),
        ("my wife won't wake up", "won't wake up"),
        ("someone is trying to get in through the window", "trying to get in"),
        ("a man tried to break into my flat", "tried to break into"),
    ],
)
def test_new_triggers_fire_in_context(text: str, trigger: str) -> None:
    assert RULES.match(text) == trigger, RULES.hits(text)


@pytest.mark.parametrize(
    "text",
    [
        "老伴走了，后事咋办",  # death is bereavement, not fainting
        "我老伴过去了，想问问丧葬费",
        "那个工作人员跟吃错药似的冲我嚷嚷",  # an insult, not an overdose
        "你吃错药了吧，这么跟我说话",
        "我眼皮抽搐，针灸能报销吗",
        "我家狗走丢了",
        "钥匙丢了，有人能帮我撬一下锁吗",  # a locksmith for one's own door
        "有没有人会撬锁",
        "怕老人走丢，想领个定位手环",
        "慢点吃别噎着",
        "上次噎着了住院的费用能报吗",
        "手机摔地上了",
        "门锁坏了，想找人换个锁",
        "I'm trying to get in touch with my case worker",
    ],
)
def test_look_alikes_of_the_new_triggers_do_not_fire(text: str) -> None:
    assert RULES.match(text) is None, RULES.hits(text)


def test_hits_explain_why() -> None:
    hits = RULES.hits("我没摔倒，可是老伴晕倒了")
    assert [(h.phrase, h.counted) for h in hits] == [("摔倒", False), ("晕倒", True)]
    assert "没摔" in hits[0].reason


BASE = """\
version: 1
triggers:
  phrases: [救命]
"""


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (BASE + "  patterns: ['(unclosed']\n", "triggers.patterns"),
        (BASE + "  extra: [x]\n", "triggers.extra"),
        ("version: 1\ntriggers:\n  phrases: []\n", "triggers.phrases"),
        ("version: 1\ntriggers:\n  phrases: [救命, 救命]\n", "triggers.phrases"),
        ("version: 2\ntriggers:\n  phrases: [救命]\n", "version"),
        (
            BASE + "exceptions:\n  not_after: [no]\n",
            "exceptions.not_after.0",
        ),  # YAML reads no as false
        (BASE + "exceptions:\n  phrases: ['  ']\n", "exceptions.phrases"),
        (BASE + "exceptions:\n  past_claim:\n    past: [上次]\n", "exceptions.past_claim.claims"),
    ],
)
def test_invalid_rules_are_refused_naming_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "emergency_rules.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        EmergencyRules.load(path)
    assert str(path) in str(caught.value)
    assert key in str(caught.value)


def test_missing_rules_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        EmergencyRules.load(tmp_path / "nope.yml")
