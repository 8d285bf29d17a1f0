#!/usr/bin/env python3
"""Check vocreg's decision log with nothing but a published tree head and the log's public key.

Standalone: Python 3.9+ and the `cryptography` package (pip install cryptography); it imports
nothing of vocreg, so anyone can copy this one file. The checks are RFC 9162's algorithms
(§2.1.3.2 inclusion, §2.1.4.2 consistency) over RFC 6962's hashes, written apart from the
code that builds the proofs (services/common/merkle.py): a mistake in one is not repeated in
the other.

The inputs are the JSON the HTTP API answers (`curl` them; bytes are base64, 64-bit numbers
strings, as proto3 JSON writes them):

    curl -s $VOCREG/v1/log/head > head.json                       # GetLogHead
    curl -s $VOCREG/v1/log/entries/7/proof > proof.json            # GetInclusionProof
    curl -s "$VOCREG/v1/log/consistency?first_tree_size=5" > cons.json   # GetConsistencyProof

    python deploy/verify_log.py --key log-key.pem head head.json
    python deploy/verify_log.py --key log-key.pem inclusion head.json proof.json
    python deploy/verify_log.py --key log-key.pem consistency old-head.json new-head.json cons.json

`--key` is the log's public key (PEM), obtained from the regulator out of band: a head signed
by another key proves nothing. A head you saved earlier and a newer one must be consistent:
if the log was rewritten, `consistency` fails. Exit code 0: verified; 1: not.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import sys


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(leaf: bytes) -> bytes:
    return _h(b"\x00" + leaf)


def _node(left: bytes, right: bytes) -> bytes:
    return _h(b"\x01" + left + right)


class NotVerified(Exception):
    pass


def _b64(value) -> bytes:
    return base64.b64decode(value or "")


def _head(document: dict) -> dict:
    """A tree head from a GetLogHead answer or any answer carrying `head`."""
    head = document.get("head", document)
    return {"tree_size": int(head.get("tree_size", 0)), "timestamp_ms": int(head.get(
        "timestamp_ms", 0)), "root_hash": _b64(head.get("root_hash")),
        "signature": _b64(head.get("signature")), "log_id": _b64(head.get("log_id"))}


def verify_head(head: dict, public_key_pem: bytes) -> None:
    """The head's Ed25519 signature over RFC 6962's TreeHeadSignature, by this key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(public_key_pem)
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    if head["log_id"] and head["log_id"] != _h(der):
        raise NotVerified("the head names another log (log_id is not this key's)")
    if len(head["root_hash"]) != 32:
        raise NotVerified("the head has no 32-byte root hash")
    signed = struct.pack(">BBQQ", 0, 1, head["timestamp_ms"], head["tree_size"]) + \
        head["root_hash"]
    try:
        key.verify(head["signature"], signed)
    except InvalidSignature:
        raise NotVerified("the head's signature is not the log's") from None


def verify_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2."""
    if not 0 <= index < size:
        raise NotVerified(f"leaf {index} cannot be in a tree of {size}")
    fn, sn, r = index, size - 1, leaf_hash(leaf)
    for p in path:
        if sn == 0:
            raise NotVerified("the audit path is too long")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise NotVerified("the audit path is too short")
    if r != root:
        raise NotVerified("the entry is not in the tree of this head")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: list[bytes]) -> None:
    """RFC 9162 §2.1.4.2."""
    if not 0 < first <= second:
        raise NotVerified(f"no consistency between sizes {first} and {second}")
    if first == second:
        if proof or first_root != second_root:
            raise NotVerified("two heads of the same size with different roots: the log forked")
        return
    if first & (first - 1) == 0:
        proof = [first_root, *proof]
    if not proof:
        raise NotVerified("an empty consistency proof")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise NotVerified("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise NotVerified("the consistency proof is too short")
    if fr != first_root or sr != second_root:
        raise NotVerified("the newer tree does not extend the older one: the log was rewritten")


def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_inclusion(head_doc: dict, proof_doc: dict, key: bytes) -> str:
    head = _head(head_doc)
    verify_head(head, key)
    entry = proof_doc.get("entry") or {}
    size = int(proof_doc.get("tree_size", 0))
    if size != head["tree_size"]:
        raise NotVerified(f"the proof is for a tree of {size}, the head of {head['tree_size']}")
    index = int(entry.get("leaf_index", 0))
    verify_inclusion(entry.get("entry_json", "").encode("utf-8"), index, size,
                     [_b64(p) for p in proof_doc.get("audit_path", [])], head["root_hash"])
    return f"entry {index} is in the log's tree of {size} (head signed at {head['timestamp_ms']})"


def check_consistency(old_doc: dict, new_doc: dict, proof_doc: dict, key: bytes) -> str:
    old, new = _head(old_doc), _head(new_doc)
    verify_head(old, key)
    verify_head(new, key)
    if int(proof_doc.get("first_tree_size", 0)) != old["tree_size"] or \
            int(proof_doc.get("second_tree_size", 0)) != new["tree_size"]:
        raise NotVerified("the proof is not between the sizes of these two heads")
    verify_consistency(old["tree_size"], new["tree_size"], old["root_hash"], new["root_hash"],
                       [_b64(p) for p in proof_doc.get("proof", [])])
    return f"the tree of {new['tree_size']} extends the tree of {old['tree_size']}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="verify_log.py", description=__doc__.split("\n")[0])
    parser.add_argument("--key", required=True, help="the log's public key, PEM")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("head").add_argument("head")
    inclusion = commands.add_parser("inclusion")
    inclusion.add_argument("head")
    inclusion.add_argument("proof")
    consistency = commands.add_parser("consistency")
    consistency.add_argument("old_head")
    consistency.add_argument("new_head")
    consistency.add_argument("proof")
    args = parser.parse_args(argv)
    with open(args.key, "rb") as f:
        key = f.read()
    try:
        if args.command == "head":
            head = _head(_load(args.head))
            verify_head(head, key)
            message = f"the head of {head['tree_size']} is signed by the log's key"
        elif args.command == "inclusion":
            message = check_inclusion(_load(args.head), _load(args.proof), key)
        else:
            message = check_consistency(_load(args.old_head), _load(args.new_head),
                                        _load(args.proof), key)
    except (NotVerified, ValueError, KeyError) as exc:
        print(f"NOT VERIFIED: {exc}")
        return 1
    print(f"VERIFIED: {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
