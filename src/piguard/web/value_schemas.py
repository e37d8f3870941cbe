"""What each value validator (`vault.validators`) accepts, as JSON Schema, for `/openapi.json`.

Every schema here describes a subset of what its validator accepts: the normal form, without the
surrounding whitespace, the full-width digits (NFKC) or the other spellings the validator also
takes in. What a regular expression says exactly is a `pattern` (lengths, characters, the mobile
number ranges of libphonenumber's metadata, amounts and coordinates within their bounds). What
no pattern can say is a named `format` (`FORMATS`) with no pattern beside it: a check digit
(resident ID numbers, bank cards) or a bound that moves with the clock (a birth date is not
after today). OpenAPI's `format` is open-ended: a client that does not know one treats it as a
note; one that generates data (schemathesis in the tests) is taught each one.

Not said anywhere: a lone surrogate (Unicode Cs), which the validators refuse and which no JSON
Schema regex engine can name; a UTF-8 JSON body cannot carry one except as a `\\ud800` escape.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import phonenumbers

from piguard.vault import validators as v

Schema = dict[str, Any]

FORMATS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "cn-resident-id": (
            "a PRC resident identity number (GB 11643): 6-digit region code (GB/T 2260) in "
            "force at the birth date, birth date YYYYMMDD from 1900-01-01 to today, 3-digit "
            "sequence, ISO 7064 MOD 11-2 check digit 0-9 or X"
        ),
        "cn-resident-id-minor": (
            "a resident identity number (cn-resident-id) whose birth date makes its holder a "
            "minor today under the policy's rule for minors (M1)"
        ),
        "bank-card": "12 to 19 digits with a valid Luhn check digit",
        "birth-date": "a real date YYYY-MM-DD from 1900-01-01 to today",
        "document-expiry": (
            "a real date YYYY-MM-DD from 1984-01-01 to the end of the year 50 years ahead, "
            "or 长期 (long-term)"
        ),
        "past-date-time": (
            "an ISO 8601 date-time with a UTC offset (2024-05-01T08:30:00+08:00), "
            "from 2000-01-01 to now"
        ),
    }
)
"""The formats no pattern can say, and what each means."""


def _class(codepoints: list[int]) -> str:
    """The ranges of `codepoints` for a regex character class (as text, both ECMA and Python)."""
    ranges: list[tuple[int, int]] = []
    for cp in sorted(codepoints):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return "".join(_char(a) if a == b else f"{_char(a)}-{_char(b)}" for a, b in ranges)


def _char(cp: int) -> str:
    if cp < 0x20 or cp == 0x7F:
        return f"\\x{cp:02x}"
    if chr(cp) in "\\]^-[":
        return "\\" + chr(cp)
    return chr(cp)


def _refused(*, lines: bool) -> list[int]:
    """What `validators.refuse_controls` refuses, but the surrogates (see the module's doc)."""
    kept = {ord(c) for c in "\t\n\r"} if lines else set()
    return [
        cp
        for cp in range(sys.maxunicode + 1)
        if cp not in kept and unicodedata.category(chr(cp)) in ("Cc", "Cf", "Zl", "Zp")
    ]


_REFUSED: Final = _class(_refused(lines=False))
_REFUSED_IN_TEXT: Final = _class(_refused(lines=True))
# What str.strip() removes among the characters left: the spaces (Zs) and, in text, \t \n \r.
_SPACES: Final = _class([cp for cp in range(sys.maxunicode + 1) if chr(cp).isspace()])


def _trimmed(limit: int, description: str) -> Schema:
    """One line of 1 to `limit` characters, no controls, no surrounding whitespace."""
    edge, inner = f"[^{_REFUSED}{_SPACES}]", f"[^{_REFUSED}]"
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": limit,
        "pattern": f"^{edge}(?:{inner}*{edge})?$",
        "description": description,
    }


def _text() -> Schema:
    inner, solid = f"[^{_REFUSED_IN_TEXT}]", f"[^{_REFUSED_IN_TEXT}{_SPACES}]"
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": v.MAX_TEXT,
        "pattern": f"^{inner}*{solid}{inner}*$",
        "description": "free text: line breaks and tabs allowed, no other control characters",
    }


def _pattern(pattern: str, description: str, most: int | None = None) -> Schema:
    schema: Schema = {"type": "string", "pattern": pattern, "description": description}
    if most is not None:
        schema["maxLength"] = most
    return schema


def _format(name: str, most: int) -> Schema:
    return {"type": "string", "format": name, "maxLength": most, "description": FORMATS[name]}


def _mobile() -> str:
    """libphonenumber's pattern of CN mobile numbers, as ASCII digits (Python's \\d is wider)."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    pattern = metadata.mobile.national_number_pattern if metadata and metadata.mobile else None
    if not pattern:
        raise RuntimeError("libphonenumber has no pattern of CN mobile numbers")
    return pattern.replace("\\d", "[0-9]")


def _fixed_line() -> str:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    desc = metadata.fixed_line if metadata else None
    if desc is None or not desc.national_number_pattern:
        raise RuntimeError("libphonenumber has no pattern of CN fixed lines")
    return desc.national_number_pattern.replace("\\d", "[0-9]")


_EMAIL_CHAR: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]"
_LABEL: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,63}"
_EMAIL: Final = f"{_EMAIL_CHAR}{{1,64}}@{_LABEL}(?:\\.{_LABEL})+"
_LAT: Final = r"-?(?:90(?:\.0{1,8})?|[1-8]?[0-9](?:\.[0-9]{1,8})?)"
_LON: Final = r"-?(?:180(?:\.0{1,8})?|(?:1[0-7][0-9]|[1-9]?[0-9])(?:\.[0-9]{1,8})?)"
_GENDERS: Final = ("male", "female", "unknown", "unspecified", "男", "女", "1", "2", "0", "9")


def _schemas() -> dict[str, Schema]:
    mobile = _mobile()
    email = _pattern(f"^{_EMAIL}$", "an email address (ASCII) with a dotted domain", 254)
    mobile_schema = _pattern(f"^(?:{mobile})$", "a mainland China mobile number, 11 digits", 11)
    phone = _pattern(
        f"^(?:{mobile}|0(?:{_fixed_line()}))$",
        "a mainland China phone number: mobile, or fixed line with its area code (010...)",
        12,
    )
    return {
        "text": _text(),
        "line": _trimmed(v.MAX_LINE, "one line of text, no control characters"),
        "name": _trimmed(v.MAX_NAME, "a name: one line, no control characters"),
        "token": _pattern(
            f"^[\\x21-\\x7e]{{1,{v.MAX_TOKEN}}}$", "visible ASCII, no spaces", v.MAX_TOKEN
        ),
        "blob_reference": _pattern(
            "^[A-Za-z][A-Za-z0-9+.-]{0,31}:[\\x21-\\x7e]+$",
            "a storage reference scheme:rest (oss://bucket/key, sha256:...)",
            v.MAX_REF,
        ),
        "account_number": _pattern("^[A-Za-z0-9-]{4,40}$", "4 to 40 letters, digits or dashes"),
        "gender": {
            "type": "string",
            "enum": list(_GENDERS),
            "description": "sex (GB/T 2261.1); stored as male, female, unknown or unspecified",
        },
        "verification_result": {
            "type": "string",
            "enum": ["pass", "fail"],
            "description": "an on-device verification outcome",
        },
        "country": {
            "type": "string",
            "enum": sorted(v.COUNTRIES),
            "description": "an ISO 3166-1 alpha-2 country code",
        },
        "birth_date": _format("birth-date", 10),
        "document_expiry": _format("document-expiry", 10),
        "past_time": _format("past-date-time", 40),
        "amount": _pattern(
            r"^(?:[0-9]{1,12}(?:\.[0-9]{1,2})?|1000000000000(?:\.0{1,2})?)$",
            "an amount in yuan, 0 to 10^12, at most 2 decimals",
        ),
        "count": _pattern(r"^(?:[0-9]{1,12}|1000000000000)$", "a whole number, 0 to 10^12"),
        "credit_score": _pattern(r"^(?:[0-9]{1,3}|1000)$", "a whole number, 0 to 1000"),
        "geo_point": _pattern(
            f"^{_LAT},{_LON}$", "latitude,longitude in decimal degrees, up to 8 decimals"
        ),
        "ip_address": {
            "anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}],
            "description": "an IPv4 or IPv6 address",
        },
        "cn_resident_id": _format("cn-resident-id", 18),
        "cn_mobile": mobile_schema,
        "cn_phone": phone,
        "bank_card": _format("bank-card", 19),
        "email": email,
        "login_name": {
            "anyOf": [email, mobile_schema],
            "description": "an email address or a mainland China mobile number",
        },
    }


def resident_id(body: str) -> str:
    """The 17 digits of a resident ID number with their ISO 7064 MOD 11-2 check digit."""
    check = (12 - sum(int(d) * pow(2, 17 - i, 11) for i, d in enumerate(body)) % 11) % 11
    return body + ("X" if check == 10 else str(check))


def luhn(body: str) -> str:
    """Digits with their Luhn check digit."""
    total = sum(
        (2 * int(d) - 9 if 2 * int(d) > 9 else 2 * int(d)) if i % 2 == 0 else int(d)
        for i, d in enumerate(reversed(body))
    )
    return body + str((10 - total % 10) % 10)


SAMPLES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "text": "每周三下午方便联系",
        "line": "北京市东城区东华门大街1号",
        "name": "张三",
        "token": "d41d8cd98f00b204e9800998ecf8427e",
        "blob_reference": "oss://piguard-docs/id/0001.jpg",
        "account_number": "0101-2345-6789",
        "gender": "female",
        "verification_result": "pass",
        "country": "CN",
        "birth_date": "1990-03-07",
        "document_expiry": "2035-06-30",
        "past_time": "2024-05-01T08:30:00+08:00",
        "amount": "12.50",
        "count": "1280",
        "credit_score": "720",
        "geo_point": "39.9042,116.4074",
        "ip_address": "203.0.113.7",
        "cn_resident_id": resident_id("11010119900307002"),
        "cn_mobile": "13800138000",
        "cn_phone": "01065529988",
        "bank_card": luhn("622202000000000001"),
        "email": "zhang.san@example.com",
        "login_name": "zhang.san@example.com",
    }
)
"""A value of each validator's format, made up (the resident ID is of the birth date of
`birth_date`, the card number a test range): the examples of the schema."""


def _with_samples(schemas: dict[str, Schema]) -> dict[str, Schema]:
    return {name: schema | {"examples": [SAMPLES[name]]} for name, schema in schemas.items()}


VALUE_SCHEMAS: Final[Mapping[str, Schema]] = MappingProxyType(_with_samples(_schemas()))
"""Validator name → the JSON Schema of the values it accepts (a subset: see the module)."""


def value_schema(validator: str | None) -> Schema:
    """The schema of a category's values, by the validator the policy names (free text: none)."""
    return VALUE_SCHEMAS[validator or v.DEFAULT]


def minor_id_schema() -> Schema:
    """A minor's resident identity number, for a guardian's registration of a ward (M1)."""
    return _format("cn-resident-id-minor", 18)
