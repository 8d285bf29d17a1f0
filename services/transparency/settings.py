"""The log's configuration: its signing key.

TRANSPARENCY_SIGNING_KEY_FILE: a PEM (PKCS#8) Ed25519 private key, from a Secret; every worker
of the log signs with it, and its public key is what verifiers pin (publish it out of band:
`python -m services.transparency.settings` prints it). Unset: a fixed, public development key
(a warning at start): heads it signs prove nothing, which is fine for `make run` and tests.
"""
from __future__ import annotations

import hashlib
import logging
import sys
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.common import merkle
from services.common.config import setting

log = logging.getLogger(__name__)

DEV_KEY_SEED = hashlib.sha256(b"vocreg development decision log key: not for production").digest()


@dataclass(frozen=True)
class LogSettings:
    private_key: Ed25519PrivateKey
    development_key: bool

    @property
    def public_key_pem(self) -> str:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    @property
    def log_id(self) -> bytes:
        return merkle.log_id(self.private_key)


def load_settings(config: dict) -> LogSettings:
    path = setting(config, "TRANSPARENCY_SIGNING_KEY_FILE")
    if not path:
        log.warning("TRANSPARENCY_SIGNING_KEY_FILE is not set: signing tree heads with the "
                    "public development key")
        return LogSettings(Ed25519PrivateKey.from_private_bytes(DEV_KEY_SEED), True)
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SystemExit(f"configuration error: TRANSPARENCY_SIGNING_KEY_FILE: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SystemExit("configuration error: TRANSPARENCY_SIGNING_KEY_FILE must hold an "
                         "Ed25519 private key (openssl genpkey -algorithm ed25519)")
    return LogSettings(key, False)


if __name__ == "__main__":  # the public key to publish
    sys.stdout.write(load_settings({}).public_key_pem)
