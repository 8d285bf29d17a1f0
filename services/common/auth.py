"""Bearer JWTs with roles, and the per-RPC access policy declared in the protos.

A token carries `sub`, `role` (regulator, institution, inspector, provider, service, ...) and,
for an institution, `institution_id` (its unified social credit code); for a party role,
`party_id`. The edge verifies it and passes the token itself to the worker as nameko's
`auth_token` context, so the worker verifies the same signature again instead of trusting a
header anyone on the bus could set.

Two ways tokens are signed:

- Production (`VOCREG_JWKS_URL` set): an identity provider signs them (RS256 or ES256, see
  `VOCREG_JWT_ALGORITHMS`); they are verified against its JWKS (a file or an https URL,
  cached for `VOCREG_JWKS_CACHE_SECONDS`, fetched again when a token names a key id it does
  not hold), and `iss` must be `VOCREG_JWT_ISSUER` and `aud` include `VOCREG_JWT_AUDIENCE`.
  HS256 tokens are refused at the edge. On the bus the workers also accept the platform's own
  service tokens (role `service`, HS256 with `VOCREG_JWT_SECRET`, issuer `vocreg-internal`):
  a service asking another one on its own behalf (services/common/service_rpc.py).
- Development (no JWKS): HS256 with `VOCREG_JWT_SECRET` (a public development secret when
  unset); `python -m services.common.auth` is the development issuer. `VOCREG_JWT_ISSUER` and
  `VOCREG_JWT_AUDIENCE`, when set, are checked here too.
"""
from __future__ import annotations

import argparse
import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass
from functools import cache

import jwt

from services.common import config
from services.common.errors import PermissionDenied, Unauthenticated, Unavailable

log = logging.getLogger(__name__)

ALGORITHM = "HS256"  # development tokens and the platform's own service tokens
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
# The platform's own service tokens in production: a fixed issuer and audience no identity
# provider uses, accepted only on the bus (never at the edge).
INTERNAL_ISSUER = "vocreg-internal"
INTERNAL_AUDIENCE = "vocreg-bus"
ROLES = ("regulator", "institution", "inspector", "provider", "service", "assessor",
         "custodian", "expert", "employer", "trainee")
# Roles that act for one organisation or person: their token names it (`party_id`), and a
# service lets them see only what is theirs. An institution is bound by `institution_id`.
PARTY_ROLES = frozenset({"provider", "assessor", "custodian", "employer", "trainee"})
# Proto enum names (vocreg.common.v1.Role) to the roles in tokens.
ROLE_BY_PROTO_NAME = {f"ROLE_{r.upper()}": r for r in ROLES}
LEEWAY_SECONDS = 30
# A token naming an unknown key id fetches the JWKS again, but not more often than this: a
# flood of forged key ids must not become a flood of requests to the identity provider.
JWKS_MIN_REFRESH_SECONDS = 10.0
JWKS_FETCH_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Identity:
    subject: str
    role: str | None  # None: anonymous
    institution_id: str | None = None
    party_id: str | None = None  # for PARTY_ROLES: the organisation or person it acts for

    @property
    def anonymous(self) -> bool:
        return self.role is None

    def audit_name(self) -> str:
        return "anonymous" if self.anonymous else f"{self.role}:{self.subject}"


ANONYMOUS = Identity(subject="anonymous", role=None)
SYSTEM = Identity(subject="system", role="service")


@dataclass(frozen=True)
class AccessPolicy:
    public: bool
    roles: frozenset[str]


class JwksKeys:
    """An identity provider's public keys from a JWKS document (a file path, file:// or
    http(s):// URL), cached for `ttl` seconds and fetched again when a token names a key id
    not in the cache (key rotation), at most every JWKS_MIN_REFRESH_SECONDS. Thread-safe (the
    edge's handler threads share it). When a fetch fails the keys already held stay in use."""

    def __init__(self, source: str, ttl: float = 300.0, clock=time.monotonic):
        self.source, self.ttl, self.clock = source, ttl, clock
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def _read(self) -> dict:
        if "://" in self.source:
            with urllib.request.urlopen(self.source, timeout=JWKS_FETCH_TIMEOUT_SECONDS) as answer:
                return json.loads(answer.read())
        with open(self.source, encoding="utf-8") as f:
            return json.load(f)

    def _refresh(self) -> None:
        self._fetched_at = self.clock()
        try:
            keys = jwt.PyJWKSet.from_dict(self._read()).keys
        except (OSError, ValueError, jwt.PyJWKSetError, jwt.PyJWKError) as exc:
            log.warning("JWKS %s could not be read (%s); %s", self.source, type(exc).__name__,
                        "keeping the keys held" if self._keys else "no keys held yet")
            return
        self._keys = {key.key_id: key for key in keys
                      if getattr(key, "public_key_use", None) in (None, "sig")}

    def key(self, kid: str | None) -> jwt.PyJWK:
        with self._lock:
            age = None if self._fetched_at is None else self.clock() - self._fetched_at
            if age is None or age >= self.ttl or (
                    kid not in self._keys and age >= JWKS_MIN_REFRESH_SECONDS):
                self._refresh()
            if not self._keys:
                raise Unavailable("the identity provider's keys cannot be read now; retry later",
                                  reason="JWKS_UNAVAILABLE")
            if kid is None and len(self._keys) == 1:
                return next(iter(self._keys.values()))
            if kid not in self._keys:
                raise Unauthenticated("invalid token: signed with a key the identity provider "
                                      "does not publish", reason="TOKEN_INVALID")
            return self._keys[kid]


@dataclass(frozen=True)
class TokenSettings:
    jwks: JwksKeys | None
    algorithms: tuple[str, ...]
    issuer: str | None
    audience: str | None

    @property
    def production(self) -> bool:
        return self.jwks is not None


@cache
def token_settings() -> TokenSettings:
    """The token configuration, read once per process from the environment."""
    source = config.env("VOCREG_JWKS_URL", "")
    issuer = config.env("VOCREG_JWT_ISSUER", "") or None
    audience = config.env("VOCREG_JWT_AUDIENCE", "") or None
    if not source:
        return TokenSettings(None, (ALGORITHM,), issuer, audience)
    algorithms = tuple(a.strip() for a in config.env(
        "VOCREG_JWT_ALGORITHMS", ",".join(ASYMMETRIC_ALGORITHMS)).split(",") if a.strip())
    wrong = [a for a in algorithms if a not in ASYMMETRIC_ALGORITHMS]
    if wrong or not algorithms:
        raise SystemExit(f"configuration error: VOCREG_JWT_ALGORITHMS may list only "
                         f"{', '.join(ASYMMETRIC_ALGORITHMS)}, not {', '.join(wrong) or 'nothing'}")
    if not issuer or not audience:
        raise SystemExit("configuration error: VOCREG_JWKS_URL needs VOCREG_JWT_ISSUER and "
                         "VOCREG_JWT_AUDIENCE (the identity provider's iss and this API's aud)")
    ttl = config.env_float("VOCREG_JWKS_CACHE_SECONDS", 300.0)
    return TokenSettings(JwksKeys(source, ttl=ttl), algorithms, issuer, audience)


def issue_token(role: str, subject: str, institution_id: str | None = None,
                ttl_seconds: int = 3600, secret: str | None = None,
                party_id: str | None = None) -> str:
    """A development token (HS256); in production (JWKS) the identity provider issues them,
    and the only HS256 tokens are the platform's own service tokens (`issue_service_token`)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if role == "institution" and not institution_id:
        raise ValueError("an institution token must name its institution_id")
    if role in PARTY_ROLES and not party_id:
        raise ValueError(f"a {role} token must name its party_id")
    settings = token_settings()
    if settings.production and role != "service":
        raise ValueError("VOCREG_JWKS_URL is set: tokens come from the identity provider")
    now = int(time.time())
    claims = {"sub": subject, "role": role, "iat": now, "exp": now + ttl_seconds}
    if settings.production:
        claims.update(iss=INTERNAL_ISSUER, aud=INTERNAL_AUDIENCE)
    else:
        claims.update({k: v for k, v in (("iss", settings.issuer), ("aud", settings.audience))
                       if v})
    if institution_id:
        claims["institution_id"] = institution_id
    if party_id:
        claims["party_id"] = party_id
    return jwt.encode(claims, secret or config.jwt_secret(), algorithm=ALGORITHM)


def issue_service_token(service: str, ttl_seconds: int = 3600) -> str:
    """The token a service uses to ask another one on its own behalf (role `service`)."""
    return issue_token("service", service, ttl_seconds=ttl_seconds)


def verify_token(token: str | None, secret: str | None = None, *,
                 at_edge: bool = False) -> Identity:
    """The identity in a token; ANONYMOUS for no token; Unauthenticated for a bad one.

    `at_edge`: the token came from outside; in production only the identity provider's are
    accepted there (the platform's own service tokens are for the bus)."""
    if not token:
        return ANONYMOUS
    settings = token_settings()
    try:
        algorithm = jwt.get_unverified_header(token).get("alg")
    except jwt.InvalidTokenError:
        raise Unauthenticated("invalid token: not a JWT", reason="TOKEN_INVALID") from None
    internal = False
    if settings.production and algorithm in settings.algorithms:
        kid = jwt.get_unverified_header(token).get("kid")
        key, issuer, audience = settings.jwks.key(kid), settings.issuer, settings.audience
    elif algorithm == ALGORITHM and (not settings.production or not at_edge):
        key = secret or config.jwt_secret()
        internal = settings.production
        issuer = INTERNAL_ISSUER if internal else settings.issuer
        audience = INTERNAL_AUDIENCE if internal else settings.audience
    else:
        raise Unauthenticated(f"invalid token: algorithm {str(algorithm)[:10]!r} is not accepted "
                              "here", reason="TOKEN_ALGORITHM_REFUSED")
    required = ["sub", "role", "exp"] + (["iss"] if issuer else []) + (["aud"] if audience else [])
    try:
        claims = jwt.decode(token, key, algorithms=[algorithm], issuer=issuer, audience=audience,
                            leeway=LEEWAY_SECONDS, options={"require": required})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired", reason="TOKEN_EXPIRED") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"invalid token: {exc}", reason="TOKEN_INVALID") from None
    wrong = [name for name in ("sub", "role", "institution_id", "party_id")
             if name in claims and not isinstance(claims[name], str)]
    if wrong:
        raise Unauthenticated(f"invalid token: {', '.join(wrong)} must be a string",
                              reason="TOKEN_INVALID")
    role = claims.get("role")
    if role not in ROLES:
        raise Unauthenticated(f"invalid token: unknown role {str(role)[:20]!r}",
                              reason="TOKEN_INVALID")
    if internal and role != "service":
        raise Unauthenticated("invalid token: an internal token must be a service's",
                              reason="TOKEN_INVALID")
    institution_id = claims.get("institution_id")
    if role == "institution" and not institution_id:
        raise Unauthenticated("invalid token: institution token without institution_id",
                              reason="TOKEN_INVALID")
    party_id = claims.get("party_id")
    if role in PARTY_ROLES and not party_id:
        raise Unauthenticated(f"invalid token: {role} token without party_id",
                              reason="TOKEN_INVALID")
    return Identity(subject=claims["sub"], role=role, institution_id=institution_id,
                    party_id=party_id)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `authorization: Bearer <token>` header value."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization must be 'Bearer <token>'",
                              reason="AUTHORIZATION_MALFORMED")
    return token.strip()


def authorize(policy: AccessPolicy | None, identity: Identity, method: str) -> None:
    if policy is None:
        # Deny by default: an RPC nobody declared a policy for is reachable by nobody.
        raise PermissionDenied(f"{method} has no access policy", reason="NO_ACCESS_POLICY")
    if policy.public:
        return
    if identity.anonymous:
        raise Unauthenticated(f"{method} requires a bearer token", reason="TOKEN_REQUIRED")
    if identity.role not in policy.roles:
        raise PermissionDenied(f"role {identity.role} may not call {method}",
                               reason="ROLE_NOT_ALLOWED", metadata={"role": identity.role})


def require_own_institution(identity: Identity, institution_id: str, what: str = "record") -> None:
    """An institution may touch only its own records; other allowed roles pass."""
    if identity.role == "institution" and identity.institution_id != institution_id:
        raise PermissionDenied(f"the {what} is another institution's: an institution sees and "
                               "changes only its own records", reason="NOT_OWN_INSTITUTION")


def require_own_party(identity: Identity, party_id: str, what: str = "record") -> None:
    """A party role (provider, employer, trainee, assessor, custodian) may touch only what is
    its own; other allowed roles pass."""
    if identity.role in PARTY_ROLES and identity.party_id != party_id:
        raise PermissionDenied(f"the {what} is not yours: a {identity.role} sees and changes "
                               "only its own records", reason="NOT_OWN_PARTY")


DEVELOPMENT_ISSUER_HELP = """\
The development issuer: prints a bearer token signed with VOCREG_JWT_SECRET (HS256; the public
development secret when unset), for `make run`, the tests and local grpcurl calls.

Production tokens do not come from here. Set VOCREG_JWKS_URL (the identity provider's JWKS,
a file or an https URL), VOCREG_JWT_ISSUER and VOCREG_JWT_AUDIENCE on the edges and workers;
the identity provider then issues RS256/ES256 tokens carrying `sub`, `role` and, for an
institution, `institution_id` (for provider, assessor, custodian, employer and trainee,
`party_id`), and the edge refuses HS256 tokens, including this command's.
"""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.common.auth", description=DEVELOPMENT_ISSUER_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("--sub", default=None, help="subject (default: the role)")
    parser.add_argument("--institution-id", default=None)
    parser.add_argument("--party-id", default=None,
                        help="for provider, assessor, custodian, employer, trainee")
    parser.add_argument("--ttl", type=int, default=8 * 3600, help="seconds (default 8 h)")
    args = parser.parse_args(argv)
    if token_settings().production:
        parser.exit(2, "python -m services.common.auth: VOCREG_JWKS_URL is set, so tokens come "
                       "from the identity provider; this is the development issuer only\n")
    try:
        token = issue_token(args.role, args.sub or args.role, args.institution_id, args.ttl,
                            party_id=args.party_id)
    except ValueError as exc:
        parser.exit(2, f"python -m services.common.auth: {exc}\n")
    print(token)


if __name__ == "__main__":
    main()
