"""Keyset paging with opaque tokens, shared by every List RPC."""
from __future__ import annotations

import base64
import binascii
import json

from services.common.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def page_size(page: dict | None) -> int:
    size = int((page or {}).get("page_size") or 0)
    if size == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"page.page_size: must be 1-{MAX_PAGE_SIZE} (0 for {DEFAULT_PAGE_SIZE})")
    return size


def encode_token(after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode()


def decode_token(page: dict | None) -> str | None:
    """The key to continue after, or None for the first page."""
    token = (page or {}).get("page_token") or ""
    if not token:
        return None
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument("page.page_token: not a token this service issued") from None
    if not isinstance(after, str):
        raise InvalidArgument("page.page_token: not a token this service issued")
    return after
