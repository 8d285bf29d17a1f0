"""A stand-in identity provider for the tests: RSA and EC keys, their JWKS document, tokens
signed with them, and a self-signed TLS certificate for the edge."""
from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ISSUER = "https://idp.example.test/realms/vocreg"
AUDIENCE = "vocreg-api"


class IdentityProvider:
    """Signing keys by key id; `jwks()` publishes their public halves."""

    def __init__(self):
        self.keys: dict[str, tuple[str, object]] = {}

    def add_key(self, kid: str, algorithm: str = "RS256") -> None:
        key = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
               if algorithm == "RS256" else ec.generate_private_key(ec.SECP256R1()))
        self.keys[kid] = (algorithm, key)

    def jwks(self) -> dict:
        entries = []
        for kid, (algorithm, key) in self.keys.items():
            if algorithm == "RS256":
                jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            else:
                jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
            entries.append({**jwk, "kid": kid, "use": "sig", "alg": algorithm})
        return {"keys": entries}

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()))
        return path

    def token(self, kid: str, role: str = "regulator", sub: str = "u-1", issuer: str = ISSUER,
              audience: str = AUDIENCE, ttl: int = 600, **claims) -> str:
        algorithm, key = self.keys[kid]
        now = int(time.time())
        body = {"sub": sub, "role": role, "iss": issuer, "aud": audience, "iat": now,
                "exp": now + ttl, **claims}
        return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid})


def self_signed_certificate(folder: Path, name: str = "edge") -> tuple[Path, Path]:
    """A certificate for localhost and its key, as PEM files in `folder`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
