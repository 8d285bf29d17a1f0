"""Production identity: tokens an identity provider signs (RS256/ES256), verified against its
JWKS with iss and aud; HS256 for development only."""
import base64
import json

import pytest

from services.common import auth
from services.common.errors import Unauthenticated, Unavailable
from tests.identity import AUDIENCE, ISSUER, IdentityProvider


@pytest.fixture
def settings_from(monkeypatch):
    """Set token variables; the settings are read again for the test and after it."""

    def apply(**variables):
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        auth.token_settings.cache_clear()
        return auth.token_settings()

    yield apply
    auth.token_settings.cache_clear()


@pytest.fixture
def idp(tmp_path, settings_from):
    provider = IdentityProvider()
    provider.add_key("rsa-1", "RS256")
    provider.add_key("ec-1", "ES256")
    provider.jwks_path = provider.write_jwks(tmp_path / "jwks.json")
    settings_from(VOCREG_JWKS_URL=str(provider.jwks_path), VOCREG_JWT_ISSUER=ISSUER,
                  VOCREG_JWT_AUDIENCE=AUDIENCE,
                  VOCREG_JWT_SECRET="a-production-secret-of-enough-length")
    return provider


def test_rs256_and_es256_tokens_of_the_provider_are_accepted(idp):
    for kid in ("rsa-1", "ec-1"):
        identity = auth.verify_token(idp.token(kid, role="institution", sub="alice",
                                               institution_id="X1"), at_edge=True)
        assert identity == auth.Identity("alice", "institution", "X1")


def test_issuer_audience_and_expiry_are_checked(idp):
    for token, problem in ((idp.token("rsa-1", issuer="https://other.example"), "(?i)issuer"),
                           (idp.token("rsa-1", audience="someone-else"), "(?i)audience"),
                           (idp.token("ec-1", ttl=-120), "expired")):
        with pytest.raises(Unauthenticated, match=problem):
            auth.verify_token(token, at_edge=True)


def test_development_tokens_are_refused_at_the_edge_in_production(idp):
    hs256 = auth.jwt.encode({"sub": "x", "role": "regulator", "exp": 2**31},
                            "a-production-secret-of-enough-length", algorithm="HS256")
    with pytest.raises(Unauthenticated, match="algorithm 'HS256' is not accepted") as caught:
        auth.verify_token(hs256, at_edge=True)
    assert caught.value.reason == "TOKEN_ALGORITHM_REFUSED"
    with pytest.raises(ValueError, match="identity provider"):
        auth.issue_token("regulator", "r")


def test_the_platforms_own_service_tokens_pass_on_the_bus_only(idp):
    token = auth.issue_service_token("certificates")
    assert auth.verify_token(token) == auth.Identity("certificates", "service")
    with pytest.raises(Unauthenticated):
        auth.verify_token(token, at_edge=True)
    # An HS256 token signed with the secret but not a service's is no internal token.
    forged = auth.jwt.encode({"sub": "x", "role": "regulator", "exp": 2**31,
                              "iss": auth.INTERNAL_ISSUER, "aud": auth.INTERNAL_AUDIENCE},
                             "a-production-secret-of-enough-length", algorithm="HS256")
    with pytest.raises(Unauthenticated, match="service"):
        auth.verify_token(forged)


def test_a_key_not_in_the_jwks_is_refused(idp):
    stranger = IdentityProvider()
    stranger.add_key("rsa-1", "RS256")  # the same key id, another key
    with pytest.raises(Unauthenticated, match="Signature"):
        auth.verify_token(stranger.token("rsa-1"), at_edge=True)
    stranger.add_key("rsa-9", "RS256")
    with pytest.raises(Unauthenticated, match="does not publish"):
        auth.verify_token(stranger.token("rsa-9"), at_edge=True)


def test_a_rotated_key_is_fetched_once_on_its_first_token(idp):
    now = [1000.0]
    keys = auth.JwksKeys(str(idp.jwks_path), ttl=300, clock=lambda: now[0])
    assert keys.key("rsa-1").key_id == "rsa-1"
    idp.add_key("rsa-2", "RS256")
    idp.write_jwks(idp.jwks_path)
    with pytest.raises(Unauthenticated):  # within the minimum refresh interval: not fetched
        keys.key("rsa-2")
    now[0] += auth.JWKS_MIN_REFRESH_SECONDS
    assert keys.key("rsa-2").key_id == "rsa-2"
    idp.jwks_path.write_text("not json")  # the provider breaks: the keys held stay in use
    now[0] += 301
    assert keys.key("rsa-1").key_id == "rsa-1"


def test_unreadable_jwks_is_unavailable_not_unauthenticated(tmp_path):
    keys = auth.JwksKeys(str(tmp_path / "missing.json"))
    with pytest.raises(Unavailable):
        keys.key("rsa-1")


def test_jwks_without_issuer_or_audience_does_not_start(settings_from, tmp_path):
    with pytest.raises(SystemExit, match="VOCREG_JWT_ISSUER"):
        settings_from(VOCREG_JWKS_URL=str(tmp_path / "jwks.json"))
    with pytest.raises(SystemExit, match="VOCREG_JWT_ALGORITHMS"):
        settings_from(VOCREG_JWT_ISSUER=ISSUER, VOCREG_JWT_AUDIENCE=AUDIENCE,
                      VOCREG_JWT_ALGORITHMS="HS256")


def test_development_tokens_check_issuer_and_audience_when_configured(settings_from):
    settings_from(VOCREG_JWT_ISSUER="vocreg-dev", VOCREG_JWT_AUDIENCE="vocreg-local")
    token = auth.issue_token("regulator", "r")
    assert auth.verify_token(token, at_edge=True).role == "regulator"
    other = auth.jwt.encode({"sub": "x", "role": "regulator", "exp": 2**31, "iss": "vocreg-dev",
                             "aud": "elsewhere"}, auth.config.jwt_secret(), algorithm="HS256")
    with pytest.raises(Unauthenticated, match="(?i)audience"):
        auth.verify_token(other)


def test_asymmetric_tokens_are_refused_in_development(settings_from):
    settings_from()
    idp = IdentityProvider()
    idp.add_key("rsa-1", "RS256")
    with pytest.raises(Unauthenticated, match="algorithm 'RS256'"):
        auth.verify_token(idp.token("rsa-1"), at_edge=True)


def test_the_command_documents_itself_as_the_development_issuer(capsys, idp):
    with pytest.raises(SystemExit):
        auth.main(["--help"])
    help_text = capsys.readouterr().out
    assert "development issuer" in help_text and "VOCREG_JWKS_URL" in help_text
    with pytest.raises(SystemExit) as exited:  # in production it issues nothing
        auth.main(["regulator"])
    assert exited.value.code == 2 and "identity provider" in capsys.readouterr().err


def test_claims_of_the_wrong_type_are_refused_not_crashed_on(idp):
    for claims in ({"sub": ["a"]}, {"institution_id": {"x": 1}, "role": "institution"},
                   {"role": ["regulator"]}):
        with pytest.raises(Unauthenticated, match="must be a string|unknown role"):
            auth.verify_token(idp.token("rsa-1", **claims), at_edge=True)
    segment = lambda data: base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()  # noqa: E731
    odd_kid = ".".join([segment({"alg": "RS256", "kid": ["a"]}),
                        segment({"sub": "x", "role": "regulator"}), "c2ln"])
    with pytest.raises(Unauthenticated, match="not a JWT"):
        auth.verify_token(odd_kid, at_edge=True)
