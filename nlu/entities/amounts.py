"""Money amounts: 350块, 三百五十元, 一万二, 两千多块钱 (approximate), ￥350, 350 yuan, RMB 200.

A number counts as money only with a money word: a unit (块/元/yuan...), a currency sign, a money
noun after it (三百五的药费) or before it (药费三百五), or 万 (1.5万: money on this hotline).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

import cn2an

from nlu.entities.common import CN_NUMERAL_CHARS, ascii_digits, make_entity

# An Arabic number: 350, 1,500, 1.5 (at most 9 integer digits, so a phone number is never money).
_ARABIC = (
    r"(?<![0-9０-９.．])(?<![0-9０-９],)"
    r"(?P<ar>(?:[1-9１-９][0-9０-９]{0,2}(?:,[0-9０-９]{3})+|[1-9１-９][0-9０-９]{0,8}|[0０])"
    r"(?:[.．][0-9０-９]{1,4})?)"
    r"(?P<armag>[百千]?[万萬亿億]|[百千])?"
)
# A Chinese number: 三百五十, 三百五, 一万二, 十几 (approx), 一点五万; never starts inside another.
_CHINESE = (
    rf"(?<![{CN_NUMERAL_CHARS}点點])"
    r"(?P<cn>[一二两兩三四五六七八九十][零〇一二两兩三四五六七八九十百千万萬亿億]*"
    r"(?:[点點][零〇一二三四五六七八九]+[万萬亿億]?)?)"
)
_NUMBER = rf"(?P<num>{_ARABIC}|{_CHINESE})"
_APPROX = r"(?P<approx>多|来|來|余|餘|几|幾)?"
# What may not follow a number that has no unit: a classifier, a time word, more digits.
_NOT_A_SUM = (
    rf"(?!\s*(?:[个個天次号號月年岁歲周週回趟楼樓层層户戶位名人张張盒瓶片粒斤克米分秒点點时時里公倍句"
    rf"页頁遍顿頓步字块塊元圆圓毛角%％多来來余餘几幾0-9０-９{CN_NUMERAL_CHARS}]|火急|小时))"
)

_WITH_UNIT = re.compile(
    _NUMBER + _APPROX + r"\s*(?P<unit>块钱|塊錢|块|塊|元钱|元錢|元|圆|圓|人民币|人民幣"
    r"|(?i:rmb|cny|yuan|kuai)\b)"
    r"(?:(?<=[块塊元圆圓])(?P<jiao>[一二两兩三四五六七八九1-9１-９])(?:毛|角)?"
    rf"(?![0-9０-９{CN_NUMERAL_CHARS}个個天次号號]))?"
)
_WITH_SIGN = re.compile(
    r"(?P<sign>[￥¥]|(?i:rmb|cny)(?![a-z]))\s*" + _ARABIC + r"(?:\s*(?:元|块|塊|(?i:yuan)\b))?"
)
_MONEY_NOUN = (
    "(?:(?:医药|醫藥|药|藥|医疗|醫療|住院|手术|手術|挂号|掛號|检查|檢查|护理|護理|治疗|治療|门诊|門診"
    "|交通|伙食|丧葬|喪葬|物业|物業|水电|水電|电|電|水|燃气|燃氣|暖气|暖氣|取暖|话|話)?(?:费用|費用|费|費)"
    "|(?:药|藥)?(?:钱|錢)|款|账单|賬單)"
)
_WITH_MONEY_NOUN_AFTER = re.compile(_NUMBER + _APPROX + rf"(?=\s*的?\s*{_MONEY_NOUN})")
# Words that hedge an amount ("大概一千二", "差不多三百五").
_HEDGE = r"(?:大概|大约|大約|差不多|估计|估計|可能|约|約|好像|左右)"
_WITH_MONEY_WORD_BEFORE = re.compile(
    r"(?:[费費钱錢]|金额|金額|花了|花费|花費|一共|总共|總共|总计|總計|合计|合計|报销了|報銷了|报销|報銷)"
    rf"[\s，,]*{_HEDGE}?\s*(?:是|有|要|共|了|为|為)?\s*" + _NUMBER + _APPROX + _NOT_A_SUM
)
_TEN_THOUSANDS = re.compile(_NUMBER + _APPROX + _NOT_A_SUM)

# Cheap tests that let most utterances skip the expensive expressions.
_ANY_NUMERAL = re.compile("[0-9０-９一二两兩三四五六七八九十]")
_UNIT_HINT = re.compile("[块塊元圆圓币幣￥¥]|(?i:rmb|cny|yuan|kuai)")
_MONEY_NOUN_HINT = re.compile("[费費钱錢款额額花共计計报報]")
_TEN_THOUSAND_HINT = re.compile("[万萬亿億]")
_MONEY_HINT_BEFORE = re.compile("[花费費钱錢价價收交付贵貴宜报報买買卖賣给給找斤]")

# 块 and 元 are also classifiers and parts of words: 一块儿 (together), 一块地, 元宵, 元旦.
_NOT_AFTER_KUAI = set("儿兒去走来來玩住坐骨肉地砖磚布糖蛋饼餅糕表錶石头頭板玻田钢鋼木")
_NOT_AFTER_YUAN = set("宵旦素老帅帥件器首化月")
_MAGNITUDE = {
    None: Decimal(1),
    "百": Decimal(100),
    "千": Decimal(1000),
    "万": Decimal(10_000),
    "萬": Decimal(10_000),
    "百万": Decimal(1_000_000),
    "百萬": Decimal(1_000_000),
    "千万": Decimal(10_000_000),
    "千萬": Decimal(10_000_000),
    "亿": Decimal(100_000_000),
    "億": Decimal(100_000_000),
}
_TO_SIMPLIFIED = str.maketrans("兩萬億點〇", "两万亿点零")
_RANGE = re.compile("([一二两三四五六七八九])[一二两三四五六七八九]([十百千万亿].*)")
_JIAO = {"一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7}
_JIAO.update({"八": 8, "九": 9})


def _chinese_value(text: str) -> tuple[Decimal, bool] | None:
    """Value of a Chinese numeral and whether it is a range taken at its low end (两三百 -> 200)."""
    text = text.translate(_TO_SIMPLIFIED)
    try:
        return Decimal(str(cn2an.cn2an(text, "smart"))), False
    except ValueError:
        pass
    if text[-1] in "万亿" and len(text) > 1:  # 一点五万: cn2an does not take a decimal before 万
        inner = _chinese_value(text[:-1])
        if inner is not None:
            return inner[0] * _MAGNITUDE[text[-1]], inner[1]
    match = _RANGE.fullmatch(text)
    if match:
        low = _chinese_value(match.group(1) + match.group(2))
        if low is not None:
            return low[0], True
    return None


def _number_value(match: re.Match[str]) -> tuple[Decimal, bool] | None:
    if match.group("ar") is not None:
        digits = ascii_digits(match.group("ar")).replace(",", "")
        try:
            value = Decimal(digits)
        except InvalidOperation:
            return None
        return value * _MAGNITUDE[match.group("armag")], False
    return _chinese_value(match.group("cn"))


def _is_money_unit(text: str, match: re.Match[str]) -> bool:
    """Whether 块/元 here is money: not 一块儿 (together), 一块地, 元宵; and a lone digit before
    块 (碎了一块, a piece) counts only after a money word (花了一块)."""
    unit, end = match.group("unit"), match.end()
    following = text[end] if end < len(text) else ""
    if unit in ("块", "塊"):
        if following and following in _NOT_AFTER_KUAI:
            return False
        number = match.group("num")
        if len(number) == 1 and not match.group("approx"):
            return (
                _MONEY_HINT_BEFORE.search(text, max(0, match.start() - 6), match.start())
                is not None
            )
    return not (unit in ("元", "圆", "圓") and following and following in _NOT_AFTER_YUAN)


def _is_significant(match: re.Match[str]) -> bool:
    """Big enough to be money without a unit: two Arabic digits, or a Chinese 十/百/千/万."""
    if match.group("ar") is not None:
        return len(match.group("ar")) >= 2 or match.group("armag") is not None
    return any(ch in "十百千万萬亿億" for ch in match.group("cn"))


def _plain(value: Decimal) -> int | float:
    value = value.quantize(Decimal("0.01")) if value != value.to_integral_value() else value
    return int(value) if value == value.to_integral_value() else float(value)


class AmountExtractor:
    """Money amounts in Arabic or Chinese numerals; the value is a number of yuan."""

    name = "AmountExtractor"

    def extract(self, text: str) -> list[dict[str, Any]]:
        if _ANY_NUMERAL.search(text) is None:
            return []
        found: dict[tuple[int, int], dict[str, Any]] = {}
        if _UNIT_HINT.search(text):
            for match in _WITH_UNIT.finditer(text):
                if match.group("jiao") is None and not _is_money_unit(text, match):
                    continue
                jiao = match.group("jiao")
                self._add(found, text, match, match.start("num"), match.end(), jiao)
            for match in _WITH_SIGN.finditer(text):
                self._add(found, text, match, match.start(), match.end(), None)
        if _MONEY_NOUN_HINT.search(text):
            for regex in (_WITH_MONEY_NOUN_AFTER, _WITH_MONEY_WORD_BEFORE):
                for match in regex.finditer(text):
                    if _is_significant(match):
                        self._add(found, text, match, match.start("num"), _number_end(match), None)
        if _TEN_THOUSAND_HINT.search(text):
            for match in _TEN_THOUSANDS.finditer(text):
                if _TEN_THOUSAND_HINT.search(match.group("num")):
                    self._add(found, text, match, match.start("num"), _number_end(match), None)
        return list(found.values())

    def _add(
        self,
        found: dict[tuple[int, int], dict[str, Any]],
        text: str,
        match: re.Match[str],
        start: int,
        end: int,
        jiao: str | None,
    ) -> None:
        if (start, end) in found:
            return
        parsed = _number_value(match)
        if parsed is None:
            return
        value, approximate = parsed
        if jiao is not None:
            value += Decimal(_JIAO.get(jiao) or int(ascii_digits(jiao))) / 10
        extra: dict[str, Any] = {}
        if approximate or _group(match, "approx") or text.startswith("左右", end):
            extra["approximate"] = True
        found[start, end] = make_entity("amount", _plain(value), start, end, self.name, **extra)


def _group(match: re.Match[str], name: str) -> str | None:
    return match.groupdict().get(name)


def _number_end(match: re.Match[str]) -> int:
    """Where the number (with 多/来 when there) ends."""
    return max(match.end("num"), match.end("approx"))


# What may stand around a bare number given as the answer to "how much?": "大概一千二吧".
_AROUND_A_BARE_AMOUNT = re.compile(
    rf"^[\s，,。.]*(?:{_HEDGE}|是|就是|有|要)*[\s，,]*(?P<rest>.*?)"
    r"[\s，,。.!！]*(?:左右|的样子|的樣子|吧|呢|啊|嘛)*[\s，,。.!！]*$"
)
_BARE_NUMBER = re.compile(rf"^{_NUMBER}{_APPROX}$")


def bare_amount(text: str) -> tuple[int | float, bool] | None:
    """The amount in an answer to "how much?" that names no unit: "三百五" (350), "一千二百五"
    (1250), "一千二" (1200), "大概两千三吧" (2300, approximate), "300". None when the answer is
    not one number (a unit or money word is the extractor's; see `AmountExtractor`)."""
    around = _AROUND_A_BARE_AMOUNT.match(text.strip())
    if around is None:
        return None
    number = _BARE_NUMBER.match(around.group("rest"))
    if number is None:
        return None
    parsed = _number_value(number)
    if parsed is None or parsed[0] <= 0:
        return None
    hedged = around.group("rest") != text.strip()
    return _plain(parsed[0]), parsed[1] or hedged or bool(number.group("approx"))
