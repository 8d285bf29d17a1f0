"""Bearer JWTs with roles, and the per-RPC access policy declared in the protos.

A token carries `sub`, `role` (regulator, institution, inspector, provider, service) and, for
an institution, `institution_id` (its unified social credit code). The edge verifies it and
passes the token itself to the worker as nameko's `auth_token` context, so the worker
verifies the same signature again instead of trusting a header anyone on the bus could set.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import jwt

from services.common import config
from services.common.errors import PermissionDenied, Unauthenticated

ALGORITHM = "HS256"
ROLES = ("regulator", "institution", "inspector", "provider", "service", "assessor",
         "custodian", "expert", "employer", "trainee")
# Roles that act for one organisation or person: their token names it (`party_id`), and a
# service lets them see only what is theirs. An institution is bound by `institution_id`.
PARTY_ROLES = frozenset({"provider", "assessor", "custodian", "employer", "trainee"})
# Proto enum names (vocreg.common.v1.Role) to the roles in tokens.
ROLE_BY_PROTO_NAME = {f"ROLE_{r.upper()}": r for r in ROLES}
LEEWAY_SECONDS = 30


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


def issue_token(role: str, subject: str, institution_id: str | None = None,
                ttl_seconds: int = 3600, secret: str | None = None,
                party_id: str | None = None) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if role == "institution" and not institution_id:
        raise ValueError("an institution token must name its institution_id")
    if role in PARTY_ROLES and not party_id:
        raise ValueError(f"a {role} token must name its party_id")
    now = int(time.time())
    claims = {"sub": subject, "role": role, "iat": now, "exp": now + ttl_seconds}
    if institution_id:
        claims["institution_id"] = institution_id
    if party_id:
        claims["party_id"] = party_id
    return jwt.encode(claims, secret or config.jwt_secret(), algorithm=ALGORITHM)


def verify_token(token: str | None, secret: str | None = None) -> Identity:
    """The identity in a token; ANONYMOUS for no token; Unauthenticated for a bad one."""
    if not token:
        return ANONYMOUS
    try:
        claims = jwt.decode(token, secret or config.jwt_secret(), algorithms=[ALGORITHM],
                            leeway=LEEWAY_SECONDS, options={"require": ["sub", "role", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"invalid token: {exc}") from None
    role = claims.get("role")
    if role not in ROLES:
        raise Unauthenticated(f"invalid token: unknown role {role!r}")
    institution_id = claims.get("institution_id")
    if role == "institution" and not institution_id:
        raise Unauthenticated("invalid token: institution token without institution_id")
    party_id = claims.get("party_id")
    if role in PARTY_ROLES and not party_id:
        raise Unauthenticated(f"invalid token: {role} token without party_id")
    return Identity(subject=str(claims["sub"]), role=role, institution_id=institution_id,
                    party_id=party_id)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `authorization: Bearer <token>` header value."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization must be 'Bearer <token>'")
    return token.strip()


def authorize(policy: AccessPolicy | None, identity: Identity, method: str) -> None:
    if policy is None:
        # Deny by default: an RPC nobody declared a policy for is reachable by nobody.
        raise PermissionDenied(f"{method} has no access policy")
    if policy.public:
        return
    if identity.anonymous:
        raise Unauthenticated(f"{method} requires a bearer token")
    if identity.role not in policy.roles:
        raise PermissionDenied(f"role {identity.role} may not call {method}")


def require_own_institution(identity: Identity, institution_id: str, what: str = "record") -> None:
    """An institution may touch only its own records; other allowed roles pass."""
    if identity.role == "institution" and identity.institution_id != institution_id:
        raise PermissionDenied(f"the {what} is another institution's: an institution sees and "
                               "changes only its own records")


def require_own_party(identity: Identity, party_id: str, what: str = "record") -> None:
    """A party role (provider, employer, trainee, assessor, custodian) may touch only what is
    its own; other allowed roles pass."""
    if identity.role in PARTY_ROLES and identity.party_id != party_id:
        raise PermissionDenied(f"the {what} is not yours: a {identity.role} sees and changes "
                               "only its own records")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.common.auth",
        description="Print a bearer token signed with VOCREG_JWT_SECRET (the dev secret by default).")
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("--sub", default=None, help="subject (default: the role)")
    parser.add_argument("--institution-id", default=None)
    parser.add_argument("--party-id", default=None,
                        help="for provider, assessor, custodian, employer, trainee")
    parser.add_argument("--ttl", type=int, default=8 * 3600, help="seconds (default 8 h)")
    args = parser.parse_args(argv)
    print(issue_token(args.role, args.sub or args.role, args.institution_id, args.ttl,
                      party_id=args.party_id))


if __name__ == "__main__":
    main()
