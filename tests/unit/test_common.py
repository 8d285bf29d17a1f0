"""Auth, identifiers, paging, errors, events and the access policies declared in the protos."""
from datetime import datetime, timezone

import grpc
import jwt
import pytest

from services.common import auth, config
from services.common.bus import new_event
from services.common.errors import (
    DELIBERATE_ERRORS,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    grpc_status_for,
)
from services.common.identifiers import uscc_check_character, uscc_problem
from services.common.paging import decode_token, encode_token, page_size
from services.common.protos import access_policies
from services.common.spec import registry
from tests.support import uscc


# --- tokens ---------------------------------------------------------------------------
def test_token_round_trip_carries_role_and_institution():
    token = auth.issue_token("institution", "alice", institution_id=uscc(3))
    identity = auth.verify_token(token)
    assert identity == auth.Identity("alice", "institution", uscc(3))


def test_no_token_is_anonymous_and_a_bad_one_is_unauthenticated():
    assert auth.verify_token(None).anonymous
    with pytest.raises(Unauthenticated, match="invalid token"):
        auth.verify_token("not-a-jwt")
    forged = jwt.encode({"sub": "x", "role": "regulator", "exp": 9999999999}, "another-secret-of-32-bytes-or-more!!",
                        algorithm="HS256")
    with pytest.raises(Unauthenticated):
        auth.verify_token(forged)


def test_expired_token_is_refused():
    token = auth.issue_token("regulator", "r", ttl_seconds=-120)
    with pytest.raises(Unauthenticated, match="expired"):
        auth.verify_token(token)


def test_token_with_unknown_role_or_institution_without_id_is_refused():
    secret = config.jwt_secret()
    bad_role = jwt.encode({"sub": "x", "role": "admin", "exp": 9999999999}, secret, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="unknown role"):
        auth.verify_token(bad_role)
    no_id = jwt.encode({"sub": "x", "role": "institution", "exp": 9999999999}, secret,
                       algorithm="HS256")
    with pytest.raises(Unauthenticated, match="institution_id"):
        auth.verify_token(no_id)
    with pytest.raises(ValueError):
        auth.issue_token("institution", "x")


def test_bearer_header_parsing():
    assert auth.bearer_token(None) is None
    assert auth.bearer_token("Bearer abc") == "abc"
    with pytest.raises(Unauthenticated):
        auth.bearer_token("Basic abc")
    with pytest.raises(Unauthenticated):
        auth.bearer_token("Bearer ")


def test_authorize_public_roles_and_deny_by_default():
    regulator = auth.Identity("r", "regulator")
    policy = auth.AccessPolicy(public=False, roles=frozenset({"regulator"}))
    auth.authorize(policy, regulator, "m")
    auth.authorize(auth.AccessPolicy(public=True, roles=frozenset()), auth.ANONYMOUS, "m")
    with pytest.raises(Unauthenticated):
        auth.authorize(policy, auth.ANONYMOUS, "m")
    with pytest.raises(PermissionDenied):
        auth.authorize(policy, auth.Identity("i", "institution", uscc(1)), "m")
    with pytest.raises(PermissionDenied, match="no access policy"):
        auth.authorize(None, regulator, "m")


def test_institution_may_touch_only_its_own_records():
    mine = auth.Identity("i", "institution", uscc(1))
    auth.require_own_institution(mine, uscc(1))
    auth.require_own_institution(auth.Identity("r", "regulator"), uscc(1))
    with pytest.raises(PermissionDenied):
        auth.require_own_institution(mine, uscc(2))


@pytest.mark.parametrize("role", sorted(auth.PARTY_ROLES))
def test_a_party_role_is_bound_to_its_party(role):
    identity = auth.verify_token(auth.issue_token(role, "someone", party_id="P-1"))
    assert (identity.role, identity.party_id) == (role, "P-1")
    auth.require_own_party(identity, "P-1", "course")
    with pytest.raises(PermissionDenied, match="not yours"):
        auth.require_own_party(identity, "P-2", "course")
    with pytest.raises(ValueError, match="party_id"):
        auth.issue_token(role, "someone")
    unbound = jwt.encode({"sub": "x", "role": role, "exp": 2**31}, config.jwt_secret(),
                         algorithm="HS256")
    with pytest.raises(Unauthenticated, match="without party_id"):
        auth.verify_token(unbound)


def test_the_regulator_is_not_held_to_a_party():
    auth.require_own_party(auth.verify_token(auth.issue_token("regulator", "r")), "P-1")


def test_empty_jwt_secret_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("VOCREG_JWT_SECRET", "")
    with pytest.raises(SystemExit):
        config.jwt_secret()


@pytest.mark.parametrize("service", list(registry()))
def test_every_rpc_declares_an_access_policy(service):
    policies = access_policies(service)
    assert policies, service
    missing = [name for name, policy in policies.items() if policy is None]
    assert not missing, f"{service}: RPCs without an access policy: {missing}"


def test_filing_register_is_public_and_decisions_are_the_regulators():
    policies = access_policies("filing")
    assert policies["ListRegister"].public
    assert policies["DecideApplication"].roles == frozenset({"regulator"})
    assert policies["SubmitApplication"].roles == frozenset({"institution"})


# --- identifiers ------------------------------------------------------------------------
def test_uscc_check_character():
    # Published example code (GB 32100 format): 91350100M000100Y43
    assert uscc_problem("91350100M000100Y43") is None
    assert uscc_check_character("91350100M000100Y4") == "3"
    assert uscc_problem("91350100M000100Y44") == "check character is wrong"
    assert uscc_problem("91350100M000100Y4") == "must be 18 characters"
    assert "characters outside" in uscc_problem("91350100M000100I43")
    assert uscc_problem(uscc(42)) is None


def test_stdnum_check_characters_agree_with_the_published_algorithms():
    """GB 32100 and GB 11643 computed by hand (the weights of the standards) against
    python-stdnum, which vocreg uses, on many generated numbers."""
    import random

    from services.common import identifiers

    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    weights = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    rng = random.Random(11643)
    for _ in range(2000):
        first17 = "".join(rng.choice("0123456789") for _ in range(2)) + \
            "".join(rng.choice("0123456789") for _ in range(6)) + \
            "".join(rng.choice(alphabet) for _ in range(9))
        total = sum(alphabet.index(c) * w for c, w in zip(first17, weights, strict=True))
        assert identifiers.uscc_check_character(first17) == alphabet[(31 - total % 31) % 31]
        digits = "".join(rng.choice("0123456789") for _ in range(17))
        total = sum(int(c) * w for c, w in zip(digits, identifiers.ID_WEIGHTS, strict=True))
        assert identifiers.id_check_character(digits) == "10X98765432"[total % 11]


# --- paging -----------------------------------------------------------------------------
def test_paging_tokens_and_sizes():
    assert page_size(None) == 20
    assert page_size({"page_size": 100}) == 100
    for bad in (-1, 101):
        with pytest.raises(InvalidArgument, match="page_size"):
            page_size({"page_size": bad})
    bound, now = "ListThings", datetime.now(timezone.utc)
    assert decode_token(encode_token("S000041000007", bound, now), bound, now) == "S000041000007"
    assert decode_token("", bound, now) is None
    for bad in ("garbage!!", "e30=", encode_token("x", bound, now).replace("x", "y")[:-3]):
        with pytest.raises(InvalidArgument, match="page_token"):
            decode_token(bad, bound, now)


# --- errors -----------------------------------------------------------------------------
def test_every_deliberate_error_maps_to_a_precise_code_and_the_rest_to_internal():
    for cls in DELIBERATE_ERRORS:
        assert grpc_status_for(cls.__name__) not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    assert grpc_status_for("NotUniqueError") == grpc.StatusCode.ALREADY_EXISTS
    assert grpc_status_for("MethodNotFound") == grpc.StatusCode.UNIMPLEMENTED
    assert grpc_status_for("KeyError") == grpc.StatusCode.INTERNAL
    assert grpc_status_for(None) == grpc.StatusCode.INTERNAL


def test_invalid_argument_carries_every_violation():
    exc = InvalidArgument(["a: required", "b: too long"])
    assert exc.violations == ["a: required", "b: too long"]
    assert str(exc) == "a: required; b: too long"


# --- events -----------------------------------------------------------------------------
def test_new_event_has_an_id_and_is_checked_against_events_proto():
    from datetime import datetime, timezone

    from vocreg.filing.v1 import events_pb2
    now = datetime(2025, 9, 15, 2, tzinfo=timezone.utc)
    event = new_event(events_pb2, "filing", "ApplicationRefused",
                      {"application_id": "a1", "institution_id": uscc(1), "reasons": ["x"]},
                      "regulator:r", now)
    assert len(event["event_id"]) == 32
    assert event["body"]["meta"] == {"event_id": event["event_id"],
                                     "occurred_at": "2025-09-15T02:00:00Z",
                                     "source": "filing", "actor": "regulator:r"}
    other = new_event(events_pb2, "filing", "ApplicationRefused", {"application_id": "a1"},
                      "system", now)
    assert other["event_id"] != event["event_id"]
    with pytest.raises(Exception, match="no_such_field"):
        new_event(events_pb2, "filing", "ApplicationRefused", {"no_such_field": 1}, "system", now)
    with pytest.raises(LookupError):
        new_event(events_pb2, "filing", "NoSuchEvent", {}, "system", now)
