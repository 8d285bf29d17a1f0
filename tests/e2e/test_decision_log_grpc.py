"""The decision log end to end: filing and the certificate registry publish their decisions,
the log appends them (RFC 6962), and what the HTTP API answers is checked by the standalone
verifier (deploy/verify_log.py, run as a separate program with only the head, the proof and
the public key). A log rewritten in its database is caught by the consistency proof from a
head published before.

Plain pytest (grpcio must not run under eventlet)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from services.transparency.settings import load_settings
from tests.e2e.test_certificates_grpc import at, batch, file_institution, issuer, regulator, row
from tests.platform import ROOT, Platform, eventually
from tests.support import uscc

pytestmark = pytest.mark.e2e

SERVICES = ("filing", "certificates", "transparency")


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    started = Platform(tmp_path_factory.mktemp("log"), services=SERVICES, clock=True,
                       FILING_DISTRICT_QUOTA=100, SWEEP_INTERVAL=1).start()
    yield started
    codes = started.stop()
    assert set(codes.values()) == {0}, f"unclean shutdown {codes}:\n{started.logs()}"


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("key") / "log.pem"
    path.write_text(load_settings({}).public_key_pem)  # the development key: the test's pin
    return path


def http(plat, path, **params):
    answer = requests.get(plat.http_url + path, params=params, timeout=15)
    assert answer.ok, answer.text
    return answer.json()


def entries(plat, subject):
    return http(plat, "/v1/log/entries", subject=subject).get("entries", [])


def verify(key_file, tmp_path, *documents) -> subprocess.CompletedProcess:
    command, *docs = documents
    paths = []
    for i, doc in enumerate(docs):
        path = tmp_path / f"doc{i}-{id(doc)}.json"
        path.write_text(json.dumps(doc))
        paths.append(str(path))
    return subprocess.run([sys.executable, str(ROOT / "deploy" / "verify_log.py"), "--key",
                           str(key_file), command, *paths], capture_output=True, text=True,
                          timeout=60)


def test_decisions_enter_the_log_and_their_proofs_verify_standalone(plat, key_file, tmp_path):
    n = 801
    filing_code = file_institution(plat, n)
    subject = f"institution:{uscc(n)}"
    logged = eventually(lambda: entries(plat, subject), timeout=20, what="the filing's entry")
    entry = json.loads(logged[0]["entry_json"])
    assert entry["kind"] == "filing.InstitutionFiled"
    assert entry["decision"]["receipt"]["filing_code"] == filing_code

    # A certificate voided by the regulator: its verification names the operation, and the
    # operation is in the log.
    at(plat, 2026, 6, 20)
    issued = issuer(plat, n).IssueCertificates(batch([row(1)]))
    number = issued["results"][0]["certificate_number"]
    regulator(plat).InvalidateCertificates({
        "selection": {"certificate_numbers": [number]},
        "reason": "INVALIDATION_REASON_EXAM_MISCONDUCT", "decision_ref": "豫人社〔2026〕8号"})
    verified = requests.post(f"{plat.http_url}/v1/certificates/{number}:verify",
                             json={"holder_name": row(1)["holder_name"]}, timeout=15).json()
    assert verified["result"] == "VERIFICATION_RESULT_INVALIDATED"
    operation = f"certificate-operation:{verified['operation_id']}"
    voided = eventually(lambda: entries(plat, operation), timeout=20, what="the voiding's entry")
    assert json.loads(voided[0]["entry_json"])["decision"]["decision_ref"] == "豫人社〔2026〕8号"

    head = http(plat, "/v1/log/head")
    assert int(head["head"]["tree_size"]) >= 2
    assert head["public_key_pem"] == key_file.read_text()
    for found in (logged[0], voided[0]):
        proof = http(plat, f"/v1/log/entries/{found.get('leaf_index', 0)}/proof",
                     tree_size=head["head"]["tree_size"])
        checked = verify(key_file, tmp_path, "inclusion", head, proof)
        assert checked.returncode == 0 and checked.stdout.startswith("VERIFIED"), checked.stdout
        # An entry changed after the fact does not verify.
        proof["entry"]["entry_json"] = proof["entry"]["entry_json"].replace("2026", "2025")
        assert verify(key_file, tmp_path, "inclusion", head, proof).returncode == 1


def test_a_rewritten_log_is_caught_by_the_consistency_proof(plat, key_file, tmp_path):
    file_institution(plat, 802)
    eventually(lambda: entries(plat, f"institution:{uscc(802)}"), timeout=20, what="entry")
    old_head = http(plat, "/v1/log/head")
    old_size = int(old_head["head"]["tree_size"])

    # The log grows honestly: the new head extends the old one.
    file_institution(plat, 803)
    eventually(lambda: int(http(plat, "/v1/log/head")["head"]["tree_size"]) > old_size,
               timeout=20, what="a new head")
    new_head = http(plat, "/v1/log/head")
    proof = http(plat, "/v1/log/consistency", first_tree_size=str(old_size))
    checked = verify(key_file, tmp_path, "consistency", old_head, new_head, proof)
    assert checked.returncode == 0, checked.stdout

    # Someone with the database rewrites an old entry, and the log restarts from it.
    leaves = plat.db("transparency")["log_leaves"]
    first = leaves.find_one({"_id": 0})
    leaves.update_one({"_id": 0}, {"$set": {"entry_json": first["entry_json"].replace(
        "InstitutionFiled", "InstitutionFiled ")}})
    plat.restart_worker("transparency")
    file_institution(plat, 804)
    eventually(lambda: entries(plat, f"institution:{uscc(804)}"), timeout=20, what="entry")
    rewritten_head = http(plat, "/v1/log/head")
    proof = http(plat, "/v1/log/consistency", first_tree_size=str(old_size))
    checked = verify(key_file, tmp_path, "consistency", old_head, rewritten_head, proof)
    assert checked.returncode == 1 and "rewritten" in checked.stdout, checked.stdout
    # Each head alone is still the log's signature: only the proof between them tells.
    assert verify(key_file, tmp_path, "head", rewritten_head).returncode == 0
