"""The national identifiers vocreg receives, checked in one place (pure functions).

The check characters are python-stdnum's (`stdnum.cn.uscc`, GB 32100-2015; `stdnum.cn.ric`,
GB 11643-1999 ISO 7064 MOD 11-2), a library that tracks the standards and their errata.
Around them stay our own checks, which stdnum does not make or makes differently:
- a credit code's first two characters may be letters (registration authorities A, N, Y and
  organisation types of GB 32100 table 1), where stdnum's validate() wants digits;
- an ID number's region must be a GB/T 2260 province (stdnum's validate() looks the county up
  in a table of current counties, which refuses numbers issued in counties since merged), and
  its birth date must be a real date from 1900 up to the day it is checked.
Problems are described without echoing the value: ID numbers are personal data.
"""
from __future__ import annotations

import re
from datetime import date

from stdnum.cn import ric, uscc

# GB 32100-2015 unified social credit code: 18 characters from this alphabet (no I O S V Z).
_USCC_SHAPE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")

# GB/T 2260 province-level codes (first two digits), plus 71/81/82 (Taiwan, Hong Kong, Macau)
# and 83 (residence permits of Taiwan residents), which GB 11643-style numbers also use.
PROVINCE_CODES = frozenset({
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
    "65", "71", "81", "82", "83"})
_ID_SHAPE = re.compile(r"^\d{17}[\dX]$")
# GB 11643's weights of the 17 digits (2^(18-i) mod 11): what stdnum computes, kept as the
# published table the tests check it against.
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
EARLIEST_BIRTH_YEAR = 1900


def uscc_check_character(first17: str) -> str:
    return uscc.calc_check_digit(first17)


def uscc_problem(code: str) -> str | None:
    """Why `code` is not a valid unified social credit code, or None."""
    if not isinstance(code, str) or len(code) != 18:
        return "must be 18 characters"
    if not _USCC_SHAPE.match(code):
        return "has characters outside GB 32100 (digits and A-Y without I, O, S, V, Z)"
    if uscc_check_character(code[:17]) != code[17]:
        return "check character is wrong"
    return None


def id_check_character(first17: str) -> str:
    # stdnum's function takes the whole number and ignores its last character.
    return ric.calc_check_digit(first17 + "0")


def id_number_problem(value: str, on: date | None = None) -> str | None:
    """Why `value` is not a valid 18-character resident ID number (GB 11643), or None. `on`:
    the day it is checked (a birth date after it is out of range)."""
    if not isinstance(value, str) or len(value) != 18:
        return "must be 18 characters"
    if not _ID_SHAPE.match(value):
        return "must be 17 digits and a check character (0-9 or X)"
    if value[:2] not in PROVINCE_CODES:
        return "region code is not a GB/T 2260 province"
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return "birth date is not a date"
    if born.year < EARLIEST_BIRTH_YEAR or (on is not None and born > on):
        return "birth date is out of range"
    if id_check_character(value[:17]) != value[17]:
        return "check character is wrong"
    return None
