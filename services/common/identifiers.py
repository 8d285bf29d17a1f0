"""Check characters of the national identifiers vocreg receives (pure functions)."""
from __future__ import annotations

import re

# GB 32100-2015 unified social credit code: 18 characters from this alphabet (no I O S V Z).
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_SHAPE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")


def uscc_check_character(first17: str) -> str:
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def uscc_problem(code: str) -> str | None:
    """Why `code` is not a valid unified social credit code, or None."""
    if not isinstance(code, str) or len(code) != 18:
        return "must be 18 characters"
    if not _USCC_SHAPE.match(code):
        return "has characters outside GB 32100 (digits and A-Y without I, O, S, V, Z)"
    if uscc_check_character(code[:17]) != code[17]:
        return "check character is wrong"
    return None
