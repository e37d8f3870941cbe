"""Validation and normalisation of the identifiers piguard stores and looks up by blind index.

Each validator takes the raw value and the name of the field it came from, and returns the one
normal form that is encrypted and blind-indexed, so that equal identifiers always give equal
digests. Errors name the field and what is allowed but never echo the value: it is personal data.
The registry the policy names them from is `vault.validators.VALIDATORS`.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Final

import phonenumbers
from stdnum import luhn
from stdnum.cn import ric
from stdnum.exceptions import (
    InvalidChecksum,
    InvalidComponent,
    InvalidFormat,
    InvalidLength,
    ValidationError,
)

from piguard.kernel.errors import InvalidInput
from piguard.kernel.text import LocalText

_MAX_INPUT: Final = 320  # anything longer is refused before any parser sees it

_RESIDENT_ID_ALLOWED: Final = (
    "18 characters: 17 digits (region code, valid birth date YYYYMMDD, sequence) and a check "
    "digit 0-9 or X"
)
_MOBILE_ALLOWED: Final = "a mainland China mobile number: 11 digits starting with 1, optional +86"
_PHONE_ALLOWED: Final = "a mainland China phone number, mobile or fixed line (area code first)"
_BANK_CARD_ALLOWED: Final = "12 to 19 digits (spaces and dashes ignored) with a valid Luhn check"
_EMAIL_ALLOWED: Final = (
    "local@domain.tld: one @, a local part of 1 to 64 characters, a domain with a dot, "
    "no spaces, at most 254 characters"
)

_PHONE_CHARS = re.compile(r"\(?\+?[0-9 ()\-]+")
_EMAIL_FORBIDDEN = re.compile(r'[\s<>()\[\]\\,;:"]')


def _invalid(field: str, allowed: str, zh: str, en: str) -> InvalidInput:
    return InvalidInput(LocalText(f"{field}：{zh}", f"{field}: {en}"), field=field, allowed=allowed)


def _prepare(value: str, field: str, allowed: str) -> str:
    # NFKC folds the full-width digits and signs of Chinese input methods into ASCII.
    if not isinstance(value, str) or len(value) > _MAX_INPUT:
        raise _invalid(field, allowed, "格式无效", "invalid format")
    text = unicodedata.normalize("NFKC", value).strip()
    if not text:
        raise _invalid(field, allowed, "不能为空", "must not be empty")
    return text


def cn_resident_id(value: str, field: str) -> str:
    """A PRC resident identity number, upper-case, without spaces (check digit, date, region)."""
    number = ric.compact(_prepare(value, field, _RESIDENT_ID_ALLOWED).replace(" ", ""))
    try:
        return ric.validate(number)
    except InvalidLength:
        zh, en = "应为18位", "must have 18 characters"
    except InvalidFormat:
        zh, en = "前17位应为数字", "the first 17 characters must be digits"
    except InvalidChecksum:
        zh, en = "校验位不正确", "the check digit is wrong"
    except InvalidComponent:
        try:
            ric.get_birth_date(number)
            zh, en = "地区码无效", "the region code is not valid"
        except ValidationError:
            zh, en = "出生日期无效", "the birth date is not valid"
    except ValidationError:
        zh, en = "格式无效", "invalid format"
    except (KeyError, ValueError, IndexError):
        # python-stdnum's region table lacks some codes and then fails with a KeyError: for us
        # that is an unknown region, a 422 for the caller, never a 500.
        zh, en = "地区码无效", "the region code is not valid"
    raise _invalid(field, _RESIDENT_ID_ALLOWED, zh, en)


def birth_date_from_resident_id(value: str, field: str = "resident_id") -> date:
    """The birth date encoded in a valid resident identity number."""
    return ric.get_birth_date(cn_resident_id(value, field))


def age_on(birth: date, on: date) -> int:
    """Age in completed years on a given day (the clock is the caller's: no `date.today()`)."""
    if on < birth:
        raise _invalid(
            "birth_date", "a date not after the reference day", "晚于参考日期", "is in the future"
        )
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def cn_number(value: str, field: str, allowed: str) -> phonenumbers.PhoneNumber:
    """A valid mainland China phone number, parsed (mobile or fixed line)."""
    text = _prepare(value, field, allowed)
    if not _PHONE_CHARS.fullmatch(text):
        raise _invalid(
            field,
            allowed,
            "只能包含数字、空格、+、-、括号",
            "may only hold digits, spaces, +, -, ( )",
        )
    try:
        number = phonenumbers.parse(text, "CN")
    except phonenumbers.NumberParseException:
        raise _invalid(field, allowed, "不是电话号码", "is not a phone number") from None
    if not phonenumbers.is_valid_number(number) or number.extension:
        raise _invalid(field, allowed, "不是有效的电话号码", "is not a valid phone number")
    if phonenumbers.region_code_for_number(number) != "CN":
        raise _invalid(field, allowed, "不是中国大陆号码", "is not a mainland China number")
    return number


def cn_mobile(value: str, field: str) -> str:
    """A mainland China mobile number in its 11-digit national form (`13812345678`): the only
    numbers accepted are CN mobiles, so the country code adds nothing, and masks such as
    `138****5678` (C2.4, SH3) read naturally."""
    number = cn_number(value, field, _MOBILE_ALLOWED)
    if phonenumbers.number_type(number) != phonenumbers.PhoneNumberType.MOBILE:
        raise _invalid(field, _MOBILE_ALLOWED, "不是手机号码", "is not a mobile number")
    return str(number.national_number)


def cn_phone(value: str, field: str) -> str:
    """A mainland China phone number, mobile or fixed line, as dialled at home (`01065529988`,
    `13812345678`)."""
    number = cn_number(value, field, _PHONE_ALLOWED)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return re.sub(r"\D", "", national)


def bank_card(value: str, field: str) -> str:
    """A bank card number as its digits (12 to 19, Luhn valid)."""
    digits = re.sub(r"[ \-]", "", _prepare(value, field, _BANK_CARD_ALLOWED))
    if not digits.isascii() or not digits.isdigit():
        raise _invalid(field, _BANK_CARD_ALLOWED, "只能包含数字", "may only hold digits")
    if not 12 <= len(digits) <= 19:
        raise _invalid(field, _BANK_CARD_ALLOWED, "应为12到19位数字", "must have 12 to 19 digits")
    if not luhn.is_valid(digits):
        raise _invalid(field, _BANK_CARD_ALLOWED, "校验位不正确", "the check digit is wrong")
    return digits


def email(value: str, field: str) -> str:
    """An email address with its domain lower-cased (the local part keeps its case: RFC 5321)."""
    text = _prepare(value, field, _EMAIL_ALLOWED)
    if len(text) > 254:
        raise _invalid(field, _EMAIL_ALLOWED, "超过254个字符", "is longer than 254 characters")
    if text.count("@") != 1:
        raise _invalid(field, _EMAIL_ALLOWED, "应恰好包含一个 @", "must hold exactly one @")
    local, domain = text.split("@")
    if not 1 <= len(local) <= 64:
        raise _invalid(
            field, _EMAIL_ALLOWED, "@ 前应为1到64个字符", "needs 1 to 64 characters before @"
        )
    labels = domain.split(".")
    if (
        _EMAIL_FORBIDDEN.search(text)
        or not text.isprintable()
        or len(labels) < 2
        or not all(0 < len(label) <= 63 for label in labels)
    ):
        raise _invalid(field, _EMAIL_ALLOWED, "格式无效", "invalid format")
    return f"{local}@{domain.lower()}"
