"""Phone numbers (mobiles, landlines with area code) and case numbers (2026-000123) in digits."""

from __future__ import annotations

import re
from typing import Any

from nlu.entities.common import NOT_AFTER_DIGIT, NOT_BEFORE_DIGIT, ascii_digits, make_entity
from storage.phones import InvalidPhoneNumber, normalize_phone

_DIGIT = re.compile("[0-9０-９]")
_SEP = r"[\s\-－]"
_COUNTRY = rf"(?:(?:[+＋]|00)\s*86{_SEP}*|\(\s*[+＋]?86\s*\){_SEP}*)"
# 138 1234 5678, 138-1234-5678, +86 13812345678, 0086 138...: eleven digits, single separators.
_MOBILE = re.compile(
    rf"(?<![0-9０-９+＋])(?:{_COUNTRY})?1[3-9３-９][0-9０-９](?:{_SEP}?[0-9０-９]){{8}}{NOT_BEFORE_DIGIT}"
)
# 010-62345678, (021) 6234 5678, 0755 12345678: area code 0XX(X), seven or eight local digits.
_LANDLINE = re.compile(
    rf"(?<![0-9０-９+＋])(?:{_COUNTRY})?(?:\(\s*0[1-9][0-9]{{1,2}}\s*\)|0[1-9][0-9]{{1,2}})"
    rf"{_SEP}?[2-9][0-9]{{2,3}}{_SEP}?[0-9]{{4}}{NOT_BEFORE_DIGIT}"
)
# 2026-000123, 2026 000123, 2026杠000123, 2026横000123, 2026000123 (year 19xx/20xx, six digits).
_CASE = re.compile(
    rf"{NOT_AFTER_DIGIT}(?P<year>(?:19|20|１９|２０)[0-9０-９]{{2}})\s*(?:[-－—–_]|杠|槓|横|橫)?\s*"
    rf"(?P<seq>[0-9０-９]{{6}}){NOT_BEFORE_DIGIT}"
)


class RegexEntityExtractor:
    """Numbers with a fixed shape: phone numbers (value E.164) and case numbers (YYYY-NNNNNN)."""

    name = "RegexEntityExtractor"

    def extract(self, text: str) -> list[dict[str, Any]]:
        if len(_DIGIT.findall(text)) < 7:  # the shortest landline has 3 + 7 digits
            return []
        found: list[dict[str, Any]] = []
        for match in _CASE.finditer(text):
            value = f"{ascii_digits(match.group('year'))}-{ascii_digits(match.group('seq'))}"
            found.append(make_entity("case_number", value, match.start(), match.end(), self.name))
        for regex in (_MOBILE, _LANDLINE):
            for match in regex.finditer(text):
                raw = ascii_digits(match.group()).replace("＋", "+")
                try:
                    value = normalize_phone("".join(ch for ch in raw if ch.isdigit() or ch == "+"))
                except InvalidPhoneNumber:
                    continue
                found.append(
                    make_entity("phone_number", value, match.start(), match.end(), self.name)
                )
        return found
