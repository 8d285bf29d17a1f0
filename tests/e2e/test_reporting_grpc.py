"""The ministry's report end to end: a report year of events from every producer published
on the broker as their services publish them, the reporting worker following them, and the
regulator over gRPC generating the first edition, exporting it (the XLSX read back with
openpyxl and compared with the RPC, the PDF rendered to PNG and looked at, the CSV parsed),
submitting it, regenerating it byte for byte, correcting it after a late decision and
diffing the two; overdue periods flagged; bad inputs refused with nothing stored; and the
events of the real filing, certificate and escrow services, driven over gRPC, counted as the
published ones are.

Plain pytest (grpcio must not run under eventlet). The PDF is rendered with Debian's
poppler-utils (pdftoppm, poppler-data, fonts-noto-cjk), installed here when absent and the
tests run as root (as .ci/run does), skipped otherwise with the command to run."""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import uuid

import grpc
import pytest
import requests
from kombu import Connection, Exchange
from vocreg.reporting.v1 import reporting_pb2, reporting_pb2_grpc

from services.reporting.domain.definition import BY_KEY, FIGURES
from tests import reporting_events as R
from tests.e2e.debian import install_or_skip
from tests.e2e.grpc_client import Client, status_of
from tests.platform import ROOT, Platform, eventually
from tests.support import token

pytestmark = pytest.mark.e2e

SHOTS = ROOT / ".screenshots"
OK = grpc.StatusCode


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    # filing, the certificate registry and escrow run too: the last test drives them, and the
    # report counts what they publish.
    started = Platform(tmp_path_factory.mktemp("report"),
                       services=("filing", "certificates", "escrow", "reporting"), clock=True,
                       SWEEP_INTERVAL=1, FILING_DISTRICT_QUOTA=100,
                       ESCROW_CONSERVATION_INTERVAL=600).start()
    yield started
    codes = started.stop()
    assert set(codes.values()) == {0}, f"unclean shutdown {codes}:\n{started.logs()}"


def reporting(plat, role="regulator", n=None) -> Client:
    return Client(reporting_pb2_grpc.ReportingServiceStub, reporting_pb2, plat.channel, role, n)


def publish(plat, producer: str, event_type: str, body: dict) -> None:
    """What the producer's worker publishes (nameko's event exchange "<producer>.events")."""
    exchange = Exchange(f"{producer}.events", type="topic", durable=True)
    with Connection(plat.amqp_uri) as conn:
        conn.Producer().publish(body, exchange=exchange, routing_key=event_type,
                                serializer="json", delivery_mode=2, declare=[exchange])


def logged(plat, n: int) -> dict:
    def caught_up():
        answer = reporting(plat).GetDailyFigures({"from_day": "2026-06-01",
                                                  "to_day": "2026-12-31"})
        done = int(answer.get("log_position", 0)) == n == int(answer.get("projected_position", 0))
        return answer if done else None
    return eventually(caught_up, timeout=20, what=f"{n} events logged and projected")


# pdftoppm, the CMaps of the PDF's Adobe-GB1 font (not embedded) and a Chinese font to draw it.
PDF_PACKAGES = ("poppler-utils", "poppler-data", "fonts-noto-cjk")


def chinese_font() -> bool:
    found = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True) \
        if shutil.which("fc-list") else None
    return bool(found and found.stdout.strip())


def ensure_poppler() -> None:
    if shutil.which("pdftoppm") and os.path.isdir("/usr/share/poppler/cMap") and chinese_font():
        return
    install_or_skip(PDF_PACKAGES, "cannot render the PDF")


def export(plat, edition_id: str, fmt: str) -> tuple[bytes, dict]:
    answer = reporting(plat).ExportEdition({"edition_id": edition_id,
                                            "format": f"EXPORT_FORMAT_{fmt}"})
    content = base64.b64decode(answer["content"])
    assert hashlib.sha256(content).hexdigest() == answer["sha256"]
    return content, answer


def fixed_digest(edition: dict, fmt: str) -> str:
    return next(x["sha256"] for x in edition["exports"] if x["format"] == f"EXPORT_FORMAT_{fmt}")


@pytest.fixture(scope="module")
def year(plat):
    """The year's events published (some twice, as redeliveries), the clock on 15 July."""
    plat.set_clock(R.shanghai_noon("2026-07-15"))
    events = R.report_year()
    for producer, event_type, body in events:
        publish(plat, producer, event_type, body)
    for producer, event_type, body in events[3:6]:
        publish(plat, producer, event_type, body)  # redelivered: counted once
    logged(plat, len(events))
    return events


# --- the pictures -----------------------------------------------------------------------------
def dark_rows_and_columns(image, threshold=128):
    """For a grayscale PIL image: dark pixels per row and per column."""
    width, height = image.size
    pixels = image.load()
    rows = [sum(pixels[x, y] < threshold for x in range(width)) for y in range(height)]
    cols = [sum(pixels[x, y] < threshold for y in range(height)) for x in range(width)]
    return rows, cols


def runs(flags: list[bool]) -> list[tuple[int, int]]:
    found, start = [], None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            found.append((start, i))
            start = None
    return found


def look_at_the_pdf(pdf: bytes, tmp_path, title: str, n_rows: int) -> None:
    """The first page rendered at 100 dpi (pdftoppm), saved under .screenshots/, and looked at:
    a centred title of len(title) glyphs that differ from one another (rendered Chinese, not
    a row of identical missing-glyph boxes), and the table's ruled grid (a line above and
    below every row, six vertical rules)."""
    from PIL import Image

    ensure_poppler()
    source = tmp_path / "edition.pdf"
    source.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "100", "-png", "-f", "1", "-l", "1", str(source),
                    str(tmp_path / "page")], check=True, timeout=60)
    png = next(tmp_path.glob("page*.png"))
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(png, SHOTS / "report-edition-page-1.png")
    page = Image.open(png).convert("L")
    width, height = page.size
    rows, _ = dark_rows_and_columns(page)

    # The title: the first band of ink from the top.
    title_band = runs([n > 0 for n in rows])[0]
    assert title_band[0] < height * 0.12, f"no title at the top: {title_band}"
    band = page.crop((0, title_band[0], width, title_band[1]))
    _, cols = dark_rows_and_columns(band)
    inked = [i for i, n in enumerate(cols) if n > 0]
    left, right = inked[0], inked[-1]
    assert abs((left + right) / 2 - width / 2) < width * 0.05, "the title is not centred"
    cell = (right - left + 1) / len(title)
    ink = [sum(cols[int(left + i * cell):int(left + (i + 1) * cell)])
           for i in range(len(title))]
    assert min(ink) > 0, f"a glyph of the title did not render: {ink}"
    assert len(set(ink)) > len(title) * 0.6, f"the title's glyphs look alike (boxes?): {ink}"

    # The table: long horizontal rules (over 60 % of the width), one per row border.
    rules = runs([n > width * 0.6 for n in rows])
    assert len(rules) >= n_rows + 2, f"{len(rules)} rules for {n_rows} rows and the header"
    table = page.crop((0, rules[0][0], width, rules[-1][1]))
    _, table_cols = dark_rows_and_columns(table)
    vertical = runs([n > (rules[-1][1] - rules[0][0]) * 0.9 for n in table_cols])
    assert len(vertical) == 6, f"{len(vertical)} vertical rules (five columns need six)"


# --- the year ---------------------------------------------------------------------------------
def test_a_report_year_generated_exported_submitted_corrected_and_diffed(plat, year, tmp_path):
    from openpyxl import load_workbook
    from pypdf import PdfReader

    regulator = reporting(plat)
    schedule = regulator.ListEditions({"year": 2026})
    assert len(schedule["periods"]) == 11
    p01 = schedule["periods"][0]
    assert (p01["cut_off"], p01["due"]["date"], p01["status"]) == \
        ("2026-07-14", "2026-07-16", "PERIOD_STATUS_DUE")
    assert schedule["periods"][-1]["kind"] == "EDITION_KIND_FINAL_SUMMARY"
    assert schedule["periods"][-1]["due"]["date"] == "2026-11-30"

    generated = regulator.GenerateEdition({"cut_off": "2026-07-14", "request_id": "gen-p01"})
    edition = generated["edition"]
    assert generated["created"] and edition["edition_id"] == "2026-p01-r1"
    assert R.values(edition["rows"]) == R.expected_full(R.EXPECTED_P01)
    assert edition["event_count"] == 12 and edition["log_position"] == str(len(year))
    assert len(edition["input_hash"]) == len(edition["output_sha256"]) == 64
    # The same request, and the same cut-off again: the same edition, nothing new.
    assert regulator.GenerateEdition({"cut_off": "2026-07-14",
                                      "request_id": "gen-p01"}) == generated
    again = regulator.GenerateEdition({"cut_off": "2026-07-14"})
    assert not again.get("created") and again["edition"] == edition

    # XLSX: opened as a clerk's spreadsheet would, every cell as the RPC says.
    xlsx, answer = export(plat, "2026-p01-r1", "XLSX")
    assert answer["filename"] == "vocreg-report-2026-p01-r1.xlsx"
    assert answer["sha256"] == fixed_digest(edition, "XLSX")
    sheet = load_workbook(io.BytesIO(xlsx)).active
    assert sheet["A1"].value == "职业技能培训和评价问题专项治理行动进展情况表"
    assert [c.value for c in sheet[4][:5]] == ["序号", "指标", "单位", "本期", "累计"]
    for i, row in enumerate(edition["rows"]):
        cells = sheet[5 + i]
        assert cells[6].value == row["figure"] and cells[1].value == row["label"]
        scale = 100 if BY_KEY[row["figure"]].money else 1
        assert round(cells[3].value * scale) == int(row.get("period_value", 0))
        assert round(cells[4].value * scale) == int(row.get("cumulative_value", 0))

    # PDF: its text says the Chinese title, and its first page as a picture shows it.
    pdf, answer = export(plat, "2026-p01-r1", "PDF")
    assert answer["sha256"] == fixed_digest(edition, "PDF")
    text = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert "职业技能培训和评价问题专项治理行动进展情况表" in text and "追回补贴资金" in text
    look_at_the_pdf(pdf, tmp_path, "职业技能培训和评价问题专项治理行动进展情况表", len(FIGURES))

    csv_bytes, _ = export(plat, "2026-p01-r1", "CSV")
    parsed = list(csv.DictReader(io.StringIO(csv_bytes.decode("utf-8-sig"))))
    assert {r["figure"]: r["累计"] for r in parsed}["subsidies_recovered"] == "12345.00"
    assert {r["figure"]: r["本期"] for r in parsed}["problems_found"] == "2"

    submitted = regulator.SubmitEdition({"edition_id": "2026-p01-r1", "request_id": "sub-p01"})
    assert submitted["edition"]["state"] == "EDITION_STATE_SUBMITTED"
    assert not submitted["edition"].get("submitted_late")
    # Regenerated byte for byte: the frozen edition's files are the files first generated.
    for fmt, first in (("XLSX", xlsx), ("PDF", pdf), ("CSV", csv_bytes)):
        assert export(plat, "2026-p01-r1", fmt)[0] == first, fmt
    assert regulator.GenerateEdition({"cut_off": "2026-07-14"})["edition"]["edition_id"] == \
        "2026-p01-r1"

    # A decision taken on 9 July is entered on 20 July: the p01 figures were short.
    plat.set_clock(R.shanghai_noon("2026-07-20"))
    publish(plat, *R.LATE)
    logged(plat, len(year) + 1)
    corrected = regulator.GenerateEdition({"cut_off": "2026-07-14"})
    correction = corrected["edition"]
    assert corrected["created"] and correction["edition_id"] == "2026-p01-r2"
    assert correction["corrects_edition_id"] == "2026-p01-r1"
    assert correction["state"] == "EDITION_STATE_DRAFT"
    assert correction["input_hash"] != edition["input_hash"]
    # The submitted edition is untouched.
    frozen = regulator.GetEdition({"edition_id": "2026-p01-r1"})["edition"]
    assert frozen == submitted["edition"]
    assert export(plat, "2026-p01-r1", "PDF")[0] == pdf

    diff = regulator.DiffEditions({"from_edition_id": "2026-p01-r1",
                                   "to_edition_id": "2026-p01-r2"})
    changed = {(c["figure"], c["column"]): c for c in diff["changes"]}
    assert set(changed) == {("subsidies_recovered", "FIGURE_COLUMN_PERIOD"),
                            ("subsidies_recovered", "FIGURE_COLUMN_CUMULATIVE")}
    cell = changed[("subsidies_recovered", "FIGURE_COLUMN_CUMULATIVE")]
    assert (cell["before"], cell["after"], cell["delta"]) == ("1234500", "1254500", "20000")
    assert [(a["event_id"], a["subject_id"], a["amount"], a["day"]) for a in cell["added"]] == \
        [("ins-outcome-10", "case-10", "20000", "2026-07-09")]
    assert not cell.get("removed")

    resubmitted = regulator.SubmitEdition({"edition_id": "2026-p01-r2"})["edition"]
    assert resubmitted["state"] == "EDITION_STATE_SUBMITTED"
    assert resubmitted["submitted_late"]  # due 16 July, corrected on the 20th
    p01 = regulator.ListEditions({"year": 2026})["periods"][0]
    assert p01["submitted_edition_id"] == "2026-p01-r2"
    assert p01["status"] == "PERIOD_STATUS_SUBMITTED"  # the first submission was in time
    assert [e["edition_id"] for e in p01["editions"]] == ["2026-p01-r1", "2026-p01-r2"]

    # Every figure drills down to what it counted.
    explained = regulator.ExplainFigure({"edition_id": "2026-p01-r2",
                                         "figure": "subsidies_recovered",
                                         "column": "FIGURE_COLUMN_CUMULATIVE"})
    assert explained["value"] == "1254500" and explained["total"] == 2
    assert {c["subject_id"] for c in explained["contributions"]} == {"case-1", "case-10"}
    first_page = regulator.ExplainFigure({"edition_id": "2026-p01-r2", "figure": "problems_found",
                                          "page": {"page_size": 1}})
    second_page = regulator.ExplainFigure({
        "edition_id": "2026-p01-r2", "figure": "problems_found",
        "page": {"page_size": 1, "page_token": first_page["page"]["next_page_token"]}})
    # Two pages of one: each contribution once (in the order the events were logged, which
    # two findings published together may take either way).
    assert sorted(c["subject_id"] for c in first_page["contributions"]
                  + second_page["contributions"]) == ["finding-1", "finding-2"]
    assert not second_page.get("page", {}).get("next_page_token")
    checked = regulator.ExplainFigure({"edition_id": "2026-p01-r2",
                                       "figure": "checked_evaluation"})
    assert [c["subject_id"] for c in checked["contributions"]] == [R.E1]


def test_the_read_model_rebuilt_from_the_log_is_the_same(plat, year):
    regulator = reporting(plat)
    window = {"from_day": "2026-06-01", "to_day": "2026-12-31"}
    before = regulator.GetDailyFigures(window)
    rebuilt = regulator.RebuildFigures({"request_id": f"rebuild-{uuid.uuid4().hex[:8]}"})
    assert rebuilt.get("figures_changed", 0) == 0
    assert rebuilt["figures_total"] == len(before["figures"])
    assert regulator.GetDailyFigures(window)["figures"] == before["figures"]


def test_a_period_past_its_due_date_is_overdue_on_the_list_and_the_gauge(plat, year):
    plat.set_clock(R.shanghai_noon("2026-08-03"))  # p02 was due 30 July: nothing generated
    schedule = reporting(plat).ListEditions({"year": 2026})
    p02 = schedule["periods"][1]
    assert (p02["status"], p02["days_overdue"]) == ("PERIOD_STATUS_OVERDUE", 4)
    assert schedule["overdue_count"] >= 1

    def gauge():
        for line in plat.metrics("worker-reporting").splitlines():
            if line.startswith("vocreg_report_editions_overdue "):
                return float(line.split()[1]) >= 1
        return False
    eventually(gauge, timeout=15, what="vocreg_report_editions_overdue set by the sweep")

    # Submitted late, it is no longer overdue.
    regulator = reporting(plat)
    edition = regulator.GenerateEdition({"cut_off": "2026-07-28"})["edition"]
    regulator.SubmitEdition({"edition_id": edition["edition_id"]})
    p02 = regulator.ListEditions({"year": 2026})["periods"][1]
    assert p02["status"] == "PERIOD_STATUS_SUBMITTED_LATE" and not p02.get("days_overdue")


def test_bad_requests_are_refused_precisely_and_store_nothing(plat, year):
    plat.set_clock(R.shanghai_noon("2026-08-14"))
    regulator = reporting(plat)
    editions = plat.db("reporting")["editions"]
    stored = editions.count_documents({})
    refusals = [
        (regulator.GenerateEdition, {"cut_off": "2026-07-15"}, OK.INVALID_ARGUMENT),
        (regulator.GenerateEdition, {"cut_off": "15/07/2026"}, OK.INVALID_ARGUMENT),
        (regulator.GenerateEdition, {}, OK.INVALID_ARGUMENT),
        (regulator.GenerateEdition, {"cut_off": "2026-08-25"}, OK.FAILED_PRECONDITION),
        (regulator.GenerateEdition, {"cut_off": "2026-07-14", "request_id": "bad id!"},
         OK.INVALID_ARGUMENT),
        (regulator.SubmitEdition, {"edition_id": "2026-p09-r7"}, OK.NOT_FOUND),
        (regulator.SubmitEdition, {}, OK.INVALID_ARGUMENT),
        (regulator.DiffEditions, {"from_edition_id": "2026-p01-r1", "to_edition_id": "x"},
         OK.NOT_FOUND),
        (regulator.ExplainFigure, {"edition_id": "2026-p01-r1", "figure": "profit"},
         OK.INVALID_ARGUMENT),
        (regulator.ExportEdition, {"edition_id": "2026-p01-r1"}, OK.INVALID_ARGUMENT),
        (regulator.ListEditions, {"year": 1999}, OK.INVALID_ARGUMENT),
        (regulator.GetDailyFigures, {"from_day": "2025-01-01", "to_day": "2026-12-31"},
         OK.INVALID_ARGUMENT),
        (regulator.GetDailyFigures, {"from_day": "2026-01-01", "to_day": "2026-01-02",
                                     "figures": ["profit"]}, OK.INVALID_ARGUMENT),
        (reporting(plat, "institution", 1).ListEditions, {"year": 2026}, OK.PERMISSION_DENIED),
        (reporting(plat, "inspector").GenerateEdition, {"cut_off": "2026-07-14"},
         OK.PERMISSION_DENIED),
        (reporting(plat, None).GetEdition, {"edition_id": "2026-p01-r1"}, OK.UNAUTHENTICATED),
    ]
    for call, request, code in refusals:
        got, details = status_of(call, request)
        assert got == code, (call, request, got, details)
    # A request id used again for another cut-off.
    regulator.GenerateEdition({"cut_off": "2026-08-11", "request_id": "gen-once"})
    stored = editions.count_documents({})
    got, _ = status_of(regulator.GenerateEdition, {"cut_off": "2026-07-28",
                                                   "request_id": "gen-once"})
    assert got == OK.ALREADY_EXISTS
    # A wrong type, over HTTP/JSON (gRPC clients cannot send one): 400 at the edge.
    bearer = {"authorization": f"Bearer {token('regulator')}"}
    wrong = requests.get(f"{plat.http_url}/v1/report/years/twenty/editions", headers=bearer,
                         timeout=15)
    assert wrong.status_code == 400, wrong.text
    wrong = requests.post(f"{plat.http_url}/v1/report/editions:generate", headers=bearer,
                          json={"cut_off": 20260714}, timeout=15)
    assert wrong.status_code == 400, wrong.text
    assert editions.count_documents({}) == stored
    listed = requests.get(f"{plat.http_url}/v1/report/years/2026/editions", headers=bearer,
                          timeout=15)
    assert listed.ok and len(listed.json()["periods"]) == 11
    # An inspector reads and exports.
    inspector = reporting(plat, "inspector")
    assert inspector.GetEdition({"edition_id": "2026-p01-r1"})["edition"]["edition_id"] == \
        "2026-p01-r1"


def test_what_the_real_filing_certificate_and_escrow_services_publish_is_counted(plat, year):
    """Driven over gRPC: an institution filed, certificates issued, two voided, one withdrawn,
    a prepaid fee paid into custody and refunded on a complaint, the filing suspended, all on
    20 July; the report counts them in p02 (submitted before, so its new edition corrects
    it), each cell's change traced to the producer's event."""
    from tests.e2e import test_escrow_grpc as escrow
    from tests.e2e.test_certificates_grpc import (
        at,
        batch,
        file_institution,
        issuer,
        regulator_filing,
        row,
    )
    from tests.e2e.test_certificates_grpc import regulator as registry
    from tests.support import uscc

    n = 951
    file_institution(plat, n)
    at(plat, 2026, 7, 20)
    issued = issuer(plat, n).IssueCertificates(
        batch([row(1), row(2), row(3)], session="2026-07-R", assessed="2026-07-10"))
    numbers = [r["certificate_number"] for r in issued["results"]]
    voided = registry(plat).InvalidateCertificates({
        "selection": {"certificate_numbers": numbers[:2]},
        "reason": "INVALIDATION_REASON_EXAM_MISCONDUCT", "decision_ref": "安人社〔2026〕31号"})
    withdrawn = registry(plat).WithdrawCertificates({
        "selection": {"certificate_numbers": numbers[2:]}, "decision_ref": "安人社〔2026〕32号",
        "recover_subsidies": True})
    # A prepaid fee paid into custody, and refunded whole on a complaint (cooling-off days).
    eventually(lambda: plat.db("escrow")["institutions"].find_one(
        {"_id": uscc(n), "status": "ACTIVE"}), timeout=20, what="escrow learning the filing")
    scheme = escrow.file_scheme(plat, n)
    escrow.pay(plat, n, scheme, "HT-951-1", hours=10, signed_on="2026-07-20",
               paid_on="2026-07-20", classes_until="2026-10-20")
    complaint = escrow.regulator(plat).FileRefundComplaint({
        "institution_id": uscc(n), "contract_id": "HT-951-1", "complainant_name": "王五",
        "reason": "12345热线转办", "request_id": "rc-951"})["complaint"]
    escrow.regulator(plat).DecideComplaint({
        "complaint_id": complaint["complaint_id"], "outcome": "COMPLAINT_OUTCOME_REFUNDED",
        "refund_fen": 10 * escrow.PRICE, "reasons": ["冷静期内全额退费"],
        "decision_ref": "AY-TF-2026-9", "request_id": "rd-951"})
    regulator_filing(plat).SuspendInstitution({"institution_id": uscc(n),
                                               "reason": "限期整改", "decision_ref": "安人社〔2026〕33号"})

    regulator = reporting(plat)

    def counted():
        answer = regulator.GetDailyFigures({"from_day": "2026-07-20", "to_day": "2026-07-20"})
        found = {f["figure"]: f["value"] for f in answer.get("figures", [])}
        wanted = {"certificates_invalidated": "2", "certificate_data_withdrawn": "1",
                  "filings_suspended": "1", "refund_complaints_resolved": "1",
                  "amount_refunded": str(10 * escrow.PRICE)}
        return found if all(found.get(k) == v for k, v in wanted.items()) else None
    eventually(counted, timeout=30, what="the producers' events counted on 20 July")

    plat.set_clock(R.shanghai_noon("2026-08-20"))
    p02 = regulator.ListEditions({"year": 2026})["periods"][1]
    submitted = p02["submitted_edition_id"]
    corrected = regulator.GenerateEdition({"cut_off": "2026-07-28"})["edition"]
    assert corrected["corrects_edition_id"] == submitted
    diff = regulator.DiffEditions({"from_edition_id": submitted,
                                   "to_edition_id": corrected["edition_id"]})
    cells = {(c["figure"], c["column"]): c for c in diff["changes"]}
    invalidated = cells[("certificates_invalidated", "FIGURE_COLUMN_PERIOD")]
    assert (invalidated.get("before", "0"), invalidated["after"]) == ("0", "2")
    [event] = invalidated["added"]
    assert event["event_type"] == "certificates.CertificatesInvalidated"
    assert event["subject_id"] == voided["result"]["operation_id"] and event["amount"] == "2"
    withdrew = cells[("certificate_data_withdrawn", "FIGURE_COLUMN_PERIOD")]["added"][0]
    assert withdrew["subject_id"] == withdrawn["result"]["operation_id"]
    suspended = cells[("filings_suspended", "FIGURE_COLUMN_PERIOD")]["added"][0]
    assert (suspended["event_type"], suspended["subject_id"]) == \
        ("filing.InstitutionSuspended", uscc(n))
    refunded = cells[("amount_refunded", "FIGURE_COLUMN_PERIOD")]["added"][0]
    assert (refunded["event_type"], refunded["subject_id"], refunded["amount"]) == \
        ("escrow.ComplaintResolved", complaint["complaint_id"], str(10 * escrow.PRICE))
