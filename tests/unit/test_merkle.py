"""The RFC 6962 tree (services/common/merkle.py) against the RFC's recursive definitions, and
its proofs checked by the standalone verifier (deploy/verify_log.py), which shares no code
with it."""
from __future__ import annotations

import hashlib
import importlib.util

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.common import merkle
from tests.deploy.tools import ROOT


def verifier():
    spec = importlib.util.spec_from_file_location("verify_log", ROOT / "deploy" / "verify_log.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


V = verifier()


# RFC 6962 §2.1, literally (recursive, slow): the reference.
def mth(leaves):
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return merkle.leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m, leaves):
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def subproof(m, leaves, whole):
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return subproof(m, leaves[:k], whole) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


LEAVES = [f"entry {i}".encode() for i in range(70)]


@pytest.fixture(scope="module")
def tree():
    built = merkle.MerkleTree()
    for i, leaf in enumerate(LEAVES):
        assert built.append(leaf) == i
    return built


def test_roots_and_proofs_are_the_rfc_definitions_for_every_size(tree):
    assert merkle.MerkleTree().root() == hashlib.sha256(b"").digest()
    for size in range(1, len(LEAVES) + 1):
        prefix = LEAVES[:size]
        root = tree.root(size)
        assert root == mth(prefix)
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert proof == path(index, prefix)
            V.verify_inclusion(prefix[index], index, size, proof, root)
        for old in range(1, size + 1):
            proof = tree.consistency_proof(old, size)
            assert proof == subproof(old, prefix, True)
            V.verify_consistency(old, size, tree.root(old), root, proof)


def test_the_verifier_refuses_wrong_proofs(tree):
    root = tree.root(37)
    proof = tree.inclusion_proof(5, 37)
    with pytest.raises(V.NotVerified):
        V.verify_inclusion(b"another entry", 5, 37, proof, root)
    with pytest.raises(V.NotVerified):
        V.verify_inclusion(LEAVES[5], 6, 37, proof, root)
    with pytest.raises(V.NotVerified):
        V.verify_inclusion(LEAVES[5], 5, 37, proof[:-1], root)
    # A log rewritten after a head was published: leaf 3 changed.
    rewritten = merkle.MerkleTree()
    for i, leaf in enumerate(LEAVES[:50]):
        rewritten.append(b"changed" if i == 3 else leaf)
    with pytest.raises(V.NotVerified, match="rewritten"):
        V.verify_consistency(20, 50, tree.root(20), rewritten.root(50),
                             rewritten.consistency_proof(20, 50))
    with pytest.raises(V.NotVerified):
        V.verify_consistency(20, 20, tree.root(20), rewritten.root(20), [])


def test_signed_heads_verify_with_the_public_key_only(tree):
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    root = tree.root(9)
    head = {"tree_size": 9, "timestamp_ms": 1700000000000, "root_hash": root,
            "signature": merkle.sign_tree_head(key, 1700000000000, 9, root),
            "log_id": merkle.log_id(key)}
    V.verify_head(head, pem)
    for change in ({"tree_size": 10}, {"timestamp_ms": 1}, {"root_hash": tree.root(8)}):
        with pytest.raises(V.NotVerified):
            V.verify_head({**head, **change}, pem)
    other = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(V.NotVerified):
        V.verify_head(head, other)


def test_sizes_out_of_range_are_refused(tree):
    with pytest.raises(ValueError):
        tree.inclusion_proof(5, 5)
    with pytest.raises(ValueError):
        tree.root(len(LEAVES) + 1)
    with pytest.raises(ValueError):
        tree.consistency_proof(10, 5)
    assert tree.consistency_proof(0, 5) == [] and tree.consistency_proof(5, 5) == []
