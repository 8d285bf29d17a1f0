"""The conventions on the real broker and real containers: request ids (a retried batch, two
copies of one request at once), field limits met by an internal caller on the bus, page
tokens."""
from __future__ import annotations

import eventlet
import pytest

from services.filing.models import Application
from tests.integration.test_certificates import (  # noqa: F401 (fixtures)
    FakeFiling,
    batch,
    registry,
    remote_error,
    row,
)
from tests.support import application_request, token, uscc


def test_a_retried_batch_answers_as_the_first_over_the_bus(registry, rpc_as):  # noqa: F811
    inst = rpc_as(token("institution", 1))
    request = {**batch([row(1), row(2), row(3, level=1)]), "request_id": "upload-7"}
    first = inst.certificates.IssueCertificates(request)
    asked = len(FakeFiling.asked)
    again = inst.certificates.IssueCertificates(request)
    assert again == first and first["issued_count"] == 2 and first["rejected_count"] == 1
    assert len(FakeFiling.asked) == asked  # nothing asked, nothing decided again
    err = remote_error(inst.certificates.IssueCertificates, {**request, "rows": [row(1)]})
    assert err.exc_type == "AlreadyExists" and "upload-7" in err.value
    listed = rpc_as(token("regulator")).certificates.ListCertificates({"institution_id": uscc(1)})
    assert len(listed["certificates"]) == 2


def test_two_copies_of_one_submission_at_once_answer_alike(filing, rpc_as):
    proxies = [rpc_as(token("institution", 1)).filing for _ in range(4)]  # one per caller
    calls = [eventlet.spawn(p.SubmitApplication, application_request(1)) for p in proxies]
    answers = [c.wait() for c in calls]
    assert all(a == answers[0] for a in answers)
    assert Application.objects.count() == 1


def test_an_internal_caller_meets_the_same_limits(filing, rpc_as):
    me = rpc_as(token("institution", 1)).filing
    request = application_request(1)
    request["institution"]["address"] = "河南省安阳市\x00文峰区"
    request["materials"][0]["document_uri"] = "s3://" + "x" * 2000
    err = remote_error(me.SubmitApplication, request)
    assert err.exc_type == "InvalidArgument"
    assert err.value == ("institution.address: control character U+0000 is not allowed; "
                         "materials[0].document_uri: at most 1024 characters (got 2005)")
    assert Application.objects.count() == 0


@pytest.mark.parametrize("page_token", ["forged", "e30.e30"])
def test_a_forged_page_token_is_invalid_on_the_bus(filing, rpc_as, page_token):
    public = rpc_as().filing
    err = remote_error(public.ListRegister, {"page": {"page_token": page_token}})
    assert err.exc_type == "InvalidArgument" and "page_token" in err.value


def test_the_same_content_written_another_way_is_the_same_request(filing, rpc_as, regulator):
    """An enum by number or by name, a default value written out or left out: one request."""
    me = rpc_as(token("institution", 1)).filing
    app = me.SubmitApplication(application_request(1))["application"]
    request = {"application_id": app["application_id"], "request_id": "accept-9",
               "decision": "ACCEPTANCE_DECISION_ACCEPT"}
    first = regulator.AcceptApplication(request)
    assert regulator.AcceptApplication({**request, "decision": 1, "reasons": []}) == first
    err = remote_error(regulator.AcceptApplication,
                       {**request, "decision": "ACCEPTANCE_DECISION_NOT_ACCEPT"})
    assert err.exc_type == "AlreadyExists"
