"""The one registry of value validators: the format of every category, checked on every write.

A category names its validator in the policy (`validator:`); a category that names none is free
text (`text`). Each validator takes the raw value, the field it came from and the current time
(the vault's injected clock, never `date.today()`), and returns the one normal form that is
encrypted and, for lookup keys, blind-indexed. It raises `InvalidInput` naming the field and what
is allowed, and nothing else: its message never echoes the value, which is personal data.

Everywhere, free text included: no control or format characters (Unicode Cc, Cf), no surrogates
(Cs); only free text (`text`) keeps line breaks and tabs. Bounds chosen here, and why:
- dates of birth from 1900-01-01 (no living person is older, and resident ID numbers of the living
  begin in the 1900s) to today, where "today" is the latest calendar day anywhere on Earth (UTC+14),
  so that a newborn registered in China early in the morning is not "in the future";
- document expiry dates from 1984-01-01 (the first resident ID cards) to 50 years ahead, or 长期
  (long-term, printed on cards of people over 45);
- times (a ride's start) from 2000-01-01 to now, with a UTC offset;
- amounts in yuan, 0 to 10^12, at most 2 decimals; credit scores 0 to 1000 (Sesame Credit uses
  350-950; other scorers differ); counts 0 to 10^12.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from piguard.kernel.errors import InvalidInput
from piguard.kernel.text import LocalText
from piguard.vault import identifiers

Validator = Callable[[str, str, datetime], str]
"""(raw value, field, now) → the normal form; raises InvalidInput."""

DEFAULT: Final = "text"
MAX_TEXT: Final = 4096
MAX_LINE: Final = 500
MAX_NAME: Final = 100
MAX_TOKEN: Final = 512
MAX_REF: Final = 1024
OLDEST_BIRTH: Final = date(1900, 1, 1)
FIRST_ID_CARD: Final = date(1984, 1, 1)
EARLIEST_TIME: Final = date(2000, 1, 1)
LONG_TERM: Final = "长期"
_AHEAD: Final = timedelta(hours=14)  # the latest time zone: UTC+14
_LINE_BREAKS: Final = frozenset("\n\r\t")
_REFUSED: Final = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DECIMAL = re.compile(r"\d{1,13}(\.\d{1,2})?")
_COORD = re.compile(r"-?\d{1,3}(\.\d{1,8})?")
_INTEGER = re.compile(r"\d{1,13}")
_TOKEN = re.compile(r"[\x21-\x7e]+")
_REF = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}:[\x21-\x7e]+")
_ACCOUNT = re.compile(r"[A-Za-z0-9-]{4,40}")

# ISO 3166-1 alpha-2, current codes (249), as python-stdnum lists them without the withdrawn AN, CS.
COUNTRIES: Final = frozenset((
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
))  # fmt: skip
# GB/T 2261.1-2003 sexes: codes 0 1 2 9, their Chinese names, and English words.
_GENDERS: Final = MappingProxyType(
    {
        **dict.fromkeys(("1", "男", "男性", "male", "m"), "male"),
        **dict.fromkeys(("2", "女", "女性", "female", "f"), "female"),
        **dict.fromkeys(("0", "未知", "未知的性别", "unknown"), "unknown"),
        **dict.fromkeys(("9", "未说明", "未说明的性别", "unspecified"), "unspecified"),
    }
)
_RESULTS: Final = MappingProxyType(
    {
        **dict.fromkeys(("pass", "passed", "match", "success", "通过", "成功"), "pass"),
        **dict.fromkeys(("fail", "failed", "no_match", "failure", "不通过", "失败"), "fail"),
    }
)


def invalid(field: str, allowed: str, zh: str, en: str) -> InvalidInput:
    """The refusal of a value: names the field and what is allowed, never the value."""
    return InvalidInput(LocalText(f"{field}：{zh}", f"{field}: {en}"), field=field, allowed=allowed)


def validate(name: str | None, value: str, field: str, now: datetime) -> str:
    """The normal form of `value` by the validator `name` (free text when None); InvalidInput
    for anything wrong, whatever the value."""
    key = name or DEFAULT
    check = VALIDATORS.get(key)
    if check is None:  # the policy language refuses unknown names: a policy built in code
        raise invalid(field, ", ".join(sorted(VALIDATORS)), "未知的校验器", "unknown validator")
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        allowed = f"a string of at most {MAX_TEXT} characters"
        raise invalid(field, allowed, "应为不超过4096个字符的字符串", "is not a short string")
    refuse_controls(value, field, lines=key == DEFAULT)
    try:
        return check(value, field, now)
    except InvalidInput:
        raise
    except (ValueError, ArithmeticError, LookupError, TypeError):  # a library's surprise
        raise invalid(field, key, "格式无效", "invalid format") from None


def refuse_controls(value: str, field: str, *, lines: bool) -> None:
    """InvalidInput for a control or format character (Cc, Cf), a surrogate (Cs) or a line
    separator (Zl, Zp) anywhere in `value`; free text (`lines`) keeps tab, CR and LF."""
    for char in value:
        if unicodedata.category(char) in _REFUSED and not (lines and char in _LINE_BREAKS):
            allowed = "text without control or invisible format characters" + (
                " (line breaks and tabs allowed)" if lines else ""
            )
            raise invalid(
                field, allowed, "含有控制字符或不可见格式字符", "holds control or format characters"
            )


# --- text -------------------------------------------------------------------------------------


def _plain(value: str, field: str, allowed: str, limit: int) -> str:
    """`value` stripped, not empty, at most `limit` characters (`validate` refused controls)."""
    text = value.strip()
    if not text:
        raise invalid(field, allowed, "不能为空", "must not be empty")
    if len(text) > limit:
        raise invalid(field, allowed, f"超过{limit}个字符", f"is longer than {limit} characters")
    return text


def text(value: str, field: str, _now: datetime) -> str:
    """Free text: line breaks and tabs allowed."""
    allowed = f"text of 1 to {MAX_TEXT} characters; line breaks allowed, no control characters"
    return _plain(value, field, allowed, MAX_TEXT)


def line(value: str, field: str, _now: datetime) -> str:
    """One line of text (an address, a bank's name, a device model)."""
    allowed = f"one line of 1 to {MAX_LINE} characters, no control characters"
    return _plain(value, field, allowed, MAX_LINE)


def name(value: str, field: str, _now: datetime) -> str:
    """A person's name or nickname: one line (a partial name such as `*三` is a name too)."""
    allowed = f"one line of 1 to {MAX_NAME} characters, no control characters"
    return _plain(value, field, allowed, MAX_NAME)


def token(value: str, field: str, _now: datetime) -> str:
    """An opaque identifier (device id, cookie id, push token): visible ASCII, no spaces."""
    allowed = f"1 to {MAX_TOKEN} visible ASCII characters, no spaces"
    zh, en = "只能包含可见ASCII字符", "may only hold visible ASCII"
    return _ascii(value, field, allowed, MAX_TOKEN, _TOKEN, zh, en)


def blob_reference(value: str, field: str, _now: datetime) -> str:
    """Where an image or document is kept (`oss://bucket/key`, `sha256:…`): the vault holds the
    reference, encrypted, not the image."""
    allowed = f"a reference scheme:rest of 1 to {MAX_REF} visible ASCII characters, no spaces"
    zh, en = "不是有效的存储引用", "is not a storage reference"
    return _ascii(value, field, allowed, MAX_REF, _REF, zh, en)


def _ascii(
    value: str, field: str, allowed: str, limit: int, pattern: re.Pattern[str], zh: str, en: str
) -> str:
    found = _plain(value, field, allowed, limit)
    if not pattern.fullmatch(found):
        raise invalid(field, allowed, zh, en)
    return found


def account_number(value: str, field: str, _now: datetime) -> str:
    """A utility account number: 4 to 40 letters, digits or dashes (spaces ignored)."""
    allowed = "4 to 40 letters, digits or dashes"
    found = _plain(value, field, allowed, MAX_NAME).replace(" ", "")
    found = unicodedata.normalize("NFKC", found)
    if not _ACCOUNT.fullmatch(found):
        raise invalid(
            field, allowed, "应为4到40位字母、数字或短横线", "must be 4 to 40 letters/digits"
        )
    return found


# --- enumerations -------------------------------------------------------------------------------


def _choice(value: str, field: str, table: Mapping[str, str], allowed: str) -> str:
    key = unicodedata.normalize("NFKC", _plain(value, field, allowed, MAX_NAME)).lower()
    found = table.get(key)
    if found is None:
        raise invalid(field, allowed, "不是允许的取值", "is not an allowed value")
    return found


def gender(value: str, field: str, _now: datetime) -> str:
    """Sex as GB/T 2261.1 knows it, stored as male, female, unknown or unspecified."""
    allowed = "male, female, unknown, unspecified (or 男, 女, GB/T 2261.1 codes 1, 2, 0, 9)"
    return _choice(value, field, _GENDERS, allowed)


def verification_result(value: str, field: str, _now: datetime) -> str:
    """An on-device verification outcome, stored as pass or fail (C2.6: never an image)."""
    return _choice(value, field, _RESULTS, "pass or fail (通过, 失败)")


def country(value: str, field: str, _now: datetime) -> str:
    """A nationality as an ISO 3166-1 alpha-2 code, upper-case (CN, HK, US, …)."""
    allowed = "an ISO 3166-1 alpha-2 country code such as CN"
    found = unicodedata.normalize("NFKC", _plain(value, field, allowed, 2)).upper()
    if found not in COUNTRIES:
        raise invalid(field, allowed, "不是ISO 3166-1国家代码", "is not an ISO 3166-1 code")
    return found


# --- dates and times ------------------------------------------------------------------------------


def _iso_date(value: str, field: str, allowed: str) -> date:
    found = unicodedata.normalize("NFKC", _plain(value, field, allowed, 10))
    if not _ISO_DATE.fullmatch(found):
        raise invalid(field, allowed, "应为YYYY-MM-DD格式的日期", "must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(found)
    except ValueError:
        raise invalid(field, allowed, "不是真实存在的日期", "is not a real date") from None


def latest_day(now: datetime) -> date:
    """The latest calendar day anywhere on Earth at `now` (UTC+14)."""
    return (now + _AHEAD).date()


def check_birth(day: date, field: str, now: datetime, allowed: str) -> date:
    """`day` if it can be a living person's birth date; InvalidInput otherwise."""
    if day > latest_day(now):
        raise invalid(
            field, allowed, "出生日期不能晚于今天", "a birth date cannot be in the future"
        )
    if day < OLDEST_BIRTH:
        raise invalid(field, allowed, "出生日期早于1900-01-01", "is before 1900-01-01")
    return day


def birth_date(value: str, field: str, now: datetime) -> str:
    """A date of birth, YYYY-MM-DD, from 1900-01-01 to today."""
    allowed = "a real date YYYY-MM-DD from 1900-01-01 to today"
    return check_birth(_iso_date(value, field, allowed), field, now, allowed).isoformat()


def document_expiry(value: str, field: str, now: datetime) -> str:
    """An identity document's expiry: YYYY-MM-DD from 1984 to 50 years ahead, or 长期."""
    allowed = "a real date YYYY-MM-DD from 1984-01-01 to 50 years ahead, or 长期 (long-term)"
    if unicodedata.normalize("NFKC", value).strip().lower() in (
        LONG_TERM,
        "long-term",
        "long_term",
    ):
        return LONG_TERM
    day = _iso_date(value, field, allowed)
    if not FIRST_ID_CARD <= day <= date(now.year + 50, 12, 31):
        raise invalid(field, allowed, "有效期超出范围", "is outside the allowed range")
    return day.isoformat()


def past_time(value: str, field: str, now: datetime) -> str:
    """A moment, ISO 8601 with its UTC offset (`2024-05-01T08:30:00+08:00`), 2000 to now."""
    allowed = "an ISO 8601 date-time with a UTC offset, from 2000-01-01 to now"
    found = unicodedata.normalize("NFKC", _plain(value, field, allowed, 40))
    try:
        moment = datetime.fromisoformat(found)
    except ValueError:
        raise invalid(field, allowed, "不是有效的时间", "is not an ISO 8601 date-time") from None
    if moment.tzinfo is None or "T" not in found:
        raise invalid(
            field, allowed, "应包含日期、时间和时区", "needs a date, a time and an offset"
        )
    if moment > now + timedelta(minutes=5) or moment.date() < EARLIEST_TIME:
        raise invalid(field, allowed, "时间超出范围", "is in the future or before 2000")
    return moment.isoformat()


# --- numbers, places, addresses ---------------------------------------------------------------


def _number(value: str, field: str, pattern: re.Pattern[str], allowed: str) -> Decimal:
    found = unicodedata.normalize("NFKC", _plain(value, field, allowed, 20)).replace(",", "")
    if not pattern.fullmatch(found):
        raise invalid(field, allowed, "数字格式无效", "is not a number in the allowed form")
    return Decimal(found)


def amount(value: str, field: str, _now: datetime) -> str:
    """An amount in yuan with at most two decimals, stored with two (`12.50`)."""
    allowed = "an amount in yuan: 0 to 10^12, at most 2 decimals, such as 12.50"
    found = _number(value, field, _DECIMAL, allowed)
    if found > 10**12:
        raise invalid(field, allowed, "金额过大", "is too large")
    return f"{found:.2f}"


def count(value: str, field: str, _now: datetime) -> str:
    """A whole number from 0 to 10^12 (grams of green energy, points)."""
    allowed = "a whole number from 0 to 10^12"
    found = _number(value, field, _INTEGER, allowed)
    if found > 10**12:
        raise invalid(field, allowed, "数值过大", "is too large")
    return str(int(found))


def credit_score(value: str, field: str, _now: datetime) -> str:
    """A credit score, a whole number from 0 to 1000."""
    allowed = "a whole number from 0 to 1000"
    found = _number(value, field, _INTEGER, allowed)
    if found > 1000:
        raise invalid(field, allowed, "应在0到1000之间", "must be from 0 to 1000")
    return str(int(found))


def geo_point(value: str, field: str, _now: datetime) -> str:
    """A place as `latitude,longitude` in decimal degrees (`39.9042,116.4074`)."""
    allowed = "latitude,longitude in decimal degrees: -90..90, -180..180, up to 8 decimals"
    found = unicodedata.normalize("NFKC", _plain(value, field, allowed, 40)).replace(" ", "")
    parts = found.split(",")
    if len(parts) != 2 or not all(_COORD.fullmatch(p) for p in parts):
        raise invalid(field, allowed, "应为“纬度,经度”", "must be latitude,longitude")
    lat, lon = (Decimal(p) for p in parts)
    if abs(lat) > 90 or abs(lon) > 180:
        raise invalid(field, allowed, "经纬度超出范围", "is outside -90..90, -180..180")
    return f"{lat:f},{lon:f}"


def ip_address(value: str, field: str, _now: datetime) -> str:
    """An IPv4 or IPv6 address in its compressed form."""
    allowed = "an IPv4 or IPv6 address"
    found = _plain(value, field, allowed, 45)
    try:
        return str(ipaddress.ip_address(found))
    except ValueError:
        raise invalid(field, allowed, "不是有效的IP地址", "is not an IP address") from None


# --- identifiers ----------------------------------------------------------------------------------


def cn_resident_id(value: str, field: str, now: datetime) -> str:
    """A resident ID number (`identifiers.cn_resident_id`) whose birth date can be a living
    person's: the age of minors (M1) is read from it."""
    number = identifiers.cn_resident_id(value, field)
    allowed = "a resident ID number whose birth date is from 1900-01-01 to today"
    check_birth(identifiers.birth_date_from_resident_id(number, field), field, now, allowed)
    return number


def login_name(value: str, field: str, now: datetime) -> str:
    """An Alipay login name: an email address or a mainland China mobile number."""
    found = _plain(value, field, "a mobile number or an email address", 320)
    if "@" in found:
        return identifiers.email(found, field)
    return identifiers.cn_mobile(found, field)


def _ignoring_time(check: Callable[[str, str], str]) -> Validator:
    def validator(value: str, field: str, _now: datetime) -> str:
        return check(value, field)

    validator.__doc__ = check.__doc__
    return validator


VALIDATORS: Final[Mapping[str, Validator]] = MappingProxyType(
    {
        "text": text,
        "line": line,
        "name": name,
        "token": token,
        "blob_reference": blob_reference,
        "account_number": account_number,
        "gender": gender,
        "verification_result": verification_result,
        "country": country,
        "birth_date": birth_date,
        "document_expiry": document_expiry,
        "past_time": past_time,
        "amount": amount,
        "count": count,
        "credit_score": credit_score,
        "geo_point": geo_point,
        "ip_address": ip_address,
        "cn_resident_id": cn_resident_id,
        "cn_mobile": _ignoring_time(identifiers.cn_mobile),
        "cn_phone": _ignoring_time(identifiers.cn_phone),
        "bank_card": _ignoring_time(identifiers.bank_card),
        "email": _ignoring_time(identifiers.email),
        "login_name": login_name,
    }
)
"""Every validator a policy may name (`categories.<key>.validator`)."""
