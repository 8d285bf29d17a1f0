"""Paging, the one way every List RPC pages (Google AIP-158): keyset paging with opaque, signed
page tokens.

A handler asks `page(cmd, clock.now())` for the page its request wants (`page.size`,
`page.after`: the key to continue after, None for the first page), queries with them
(`services.common.repository.keyset_page`), and answers `page.response(last)` as the
response's `page` field.

A token is `<payload>.<signature>`: the payload (base64url JSON) holds the key to continue
after, the token's expiry and a digest of what it is bound to; the signature is HMAC-SHA256
over the payload with the page-token key (VOCREG_PAGE_TOKEN_SECRET, the same for every worker
of a deployment; a public development key when unset, with a warning). A token is bound to
the RPC, the caller, and the request's filters (every field but `page`): the same list, asked
the same way. A token that does not verify (forged, altered, another deployment's), has
expired (TOKEN_TTL) or comes from another request is INVALID_ARGUMENT, and the client starts
again from the first page. page_size may change from one page to the next.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from services.common import config
from services.common.errors import InvalidArgument

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# Long enough to page through any list at a reading pace; short enough that a token found in a
# log or a browser history is soon worth nothing.
TOKEN_TTL = timedelta(hours=24)
_VERSION = 1

NOT_OURS = "page.page_token: not a token this service issued; start from the first page"
EXPIRED = "page.page_token: expired; start again from the first page"
OTHER_REQUEST = ("page.page_token: issued for another request (a different method, caller or "
                 "filters); send the same filters as for the first page, or start again")


def page_size(page: dict | None) -> int:
    size = int((page or {}).get("page_size") or 0)
    if size == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"page.page_size: must be 1-{MAX_PAGE_SIZE} (0 for {DEFAULT_PAGE_SIZE})")
    return size


@cache
def _key() -> bytes:
    secret = config.page_token_secret()
    if secret == config.DEV_PAGE_TOKEN_SECRET:
        log.warning("VOCREG_PAGE_TOKEN_SECRET is not set: page tokens are signed with the "
                    "public development key")
    return secret.encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(payload: str) -> str:
    return _b64(hmac.new(_key(), payload.encode(), hashlib.sha256).digest())


def _filters(value):
    """What a list is filtered by, as proto3 means it (default values are absent)."""
    from services.common.idempotency import canonical

    return canonical(value)


def binding(rpc: str, caller_name: str, request: dict) -> str:
    """The digest a token is bound to: the RPC, the caller and every field but `page`."""
    filters = _filters({k: v for k, v in (request or {}).items() if k != "page"})
    text = json.dumps([rpc, caller_name, filters], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def encode_token(after, bound_to: str, now: datetime) -> str:
    """A token to continue after `after` (a key, or any JSON value a handler pages by)."""
    body = {"v": _VERSION, "a": after, "b": bound_to,
            "x": int((now + TOKEN_TTL).timestamp())}
    payload = _b64(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{payload}.{_sign(payload)}"


def decode_token(token: str, bound_to: str, now: datetime):
    """The key to continue after, or None for no token; InvalidArgument for a token that was
    not issued here, has expired or belongs to another request."""
    if not token:
        return None
    payload, _, signature = token.partition(".")
    if not payload or not signature or not hmac.compare_digest(signature, _sign(payload)):
        raise InvalidArgument(NOT_OURS, reason="PAGE_TOKEN_INVALID")
    try:
        body = json.loads(_unb64(payload))
        after, bound, expires = body["a"], body["b"], int(body["x"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument(NOT_OURS, reason="PAGE_TOKEN_INVALID") from None
    if body.get("v") != _VERSION or after is None:
        raise InvalidArgument(NOT_OURS, reason="PAGE_TOKEN_INVALID")
    if bound != bound_to:
        raise InvalidArgument(OTHER_REQUEST, reason="PAGE_TOKEN_MISMATCH")
    if now.timestamp() > expires:
        raise InvalidArgument(EXPIRED, reason="PAGE_TOKEN_EXPIRED")
    return after


@dataclass(frozen=True)
class Page:
    size: int
    after: object  # the key to continue after; None for the first page
    bound_to: str
    now: datetime

    def response(self, last) -> dict:
        """The response's `page`: a token to continue after `last`, none on the last page."""
        return {"next_page_token": "" if last is None else
                encode_token(last, self.bound_to, self.now)}


def page(cmd, now: datetime) -> Page:
    """The page a List RPC's request asks for: its size and where to continue, the token
    checked against this RPC, this caller and these filters. Both problems (size and token)
    are reported together."""
    request = cmd.request or {}
    requested = request.get("page") or {}
    bound_to = binding(cmd.rpc, cmd.caller.audit_name() if cmd.caller else "", request)
    errors: list[str] = []
    reasons: list[str] = []
    size, after = DEFAULT_PAGE_SIZE, None
    try:
        size = page_size(requested)
    except InvalidArgument as exc:
        errors.extend(exc.violations)
        reasons.append(exc.reason)
    try:
        after = decode_token(requested.get("page_token") or "", bound_to, now)
    except InvalidArgument as exc:
        errors.extend(exc.violations)
        reasons.append(exc.reason)
    if errors:  # one problem keeps its own reason (e.g. PAGE_TOKEN_EXPIRED)
        raise InvalidArgument(errors, reason=reasons[0] if len(reasons) == 1 else None)
    return Page(size, after, bound_to, now)
