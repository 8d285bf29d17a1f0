"""Every example request of the README's walkthrough (protos/examples/), sent through a running
platform the way the README's commands send it: the same files, the same placeholders filled,
the same ids captured by the same jq paths from the JSON grpcurl prints (lowerCamelCase). The
walkthrough runs twice: the second time every change answers with its first answer (request
ids), and the README's Python client makes the first call again."""
from __future__ import annotations

import importlib
import importlib.util
import json
import re
import subprocess
import sys
from datetime import datetime

import pytest
from google.protobuf import json_format

from services.common.auth import issue_token
from services.common.workdays import today_in_shanghai
from tests.platform import ROOT, Platform

pytestmark = pytest.mark.e2e

def load_render():
    """protos/render.py (protos/ is not a Python package)."""
    spec = importlib.util.spec_from_file_location("vocreg_render", ROOT / "protos" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    started = Platform(tmp_path_factory.mktemp("examples"),
                       services=("filing", "certificates")).start()
    yield started
    started.stop()


def stub_call(channel, method: str):
    """The stub method and request class of `package.Service/Method`."""
    service, name = method.split("/")
    package, _, service_name = service.rpartition(".")
    short = package.split(".")[1]
    pb2 = importlib.import_module(f"{package}.{short}_pb2")
    grpc_module = importlib.import_module(f"{package}.{short}_pb2_grpc")
    stub = getattr(grpc_module, f"{service_name}Stub")(channel)
    return getattr(stub, name), getattr(pb2, f"{name}Request")


def walk(plat, doc) -> list[tuple[dict, dict]]:
    """Run every step; (step, answer as grpcurl prints it) for each."""
    tokens = {"regulator": issue_token("regulator", "regulator"),
              "institution": issue_token("institution", "institution",
                                         institution_id=doc.EXAMPLE_INSTITUTION)}
    values = {"TODAY": today_in_shanghai(datetime.now().astimezone()).isoformat()}
    answers = []
    for step in doc.steps():
        text = doc.fill((doc.EXAMPLES / step["file"]).read_text(encoding="utf-8"), values)
        call, request_class = stub_call(plat.channel, step["method"])
        request = json_format.Parse(text, request_class())
        metadata = [("authorization", f"Bearer {tokens[step['as']]}")] if step["as"] else []
        answer = json_format.MessageToDict(call(request, metadata=metadata, timeout=20))
        for variable, path in (step.get("capture") or {}).items():
            values[variable] = doc.json_path(answer, path)
        answers.append((step, answer))
    return answers


def test_every_example_file_is_a_step_of_the_walkthrough():
    doc = load_render()
    files = {p.relative_to(doc.EXAMPLES).as_posix() for p in doc.EXAMPLES.rglob("*.json")}
    assert files - {"walkthrough.json"} == {s["file"] for s in doc.steps()}


def test_the_walkthrough_runs_as_written_and_again_with_the_first_answers(plat):
    doc = load_render()
    first = walk(plat, doc)
    by_name = {step["method"].rpartition("/")[2]: answer for step, answer in first}
    assert by_name["ListAreas"]["areas"][0]["districtCode"] == "410502"
    assert by_name["CheckName"]["acceptable"] is True
    assert by_name["DecideApplication"]["application"]["state"] == "APPLICATION_STATE_FILED"
    batch = by_name["IssueCertificates"]
    assert (batch.get("issuedCount"), batch.get("rejectedCount")) == (2, 1)
    assert "outside the institution's filed scope" in batch["results"][2]["errors"][0]
    assert by_name["VerifyCertificate"]["result"] == "VERIFICATION_RESULT_VALID"
    assert by_name["VerifyCertificate"]["holderNameMasked"] == "王*明"
    assert by_name["InvalidateCertificates"]["result"]["changedCount"] == 1

    second = walk(plat, doc)
    changes = {"SubmitApplication", "AcceptApplication", "DecideApplication",
               "IssueCertificates", "InvalidateCertificates"}
    for (step, answer), (_, again) in zip(first, second, strict=True):
        if step["method"].rpartition("/")[2] in changes:
            assert again == answer, step["method"]  # the first answer, nothing done twice
    [stats] = [a for s, a in second if s["file"] == "certificates/GetIssuanceStats.json"]
    assert stats["issuedCount"] == 2  # the retried upload issued nothing more

    # The README's Python client, as printed there, against this platform.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(doc.BEGIN):readme.index(doc.END)]
    [code] = re.findall(r"```python\n(.*?)```", section, re.S)
    code = code.replace("localhost:50051", f"localhost:{plat.grpc_port}")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    application_id = by_name["SubmitApplication"]["application"]["applicationId"]
    assert done.stdout.split() == [application_id, "APPLICATION_STATE_RECEIVED"]


def test_the_walkthrough_commands_are_the_rendered_ones():
    doc = load_render()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert doc.render_walkthrough() in readme
    for step in doc.steps():
        assert f"fill {step['file']} | grpcurl" in readme and step["method"] in readme
    assert json.loads((doc.EXAMPLES / "walkthrough.json").read_text(encoding="utf-8"))
