"""The `vocreg` command line's parts that need no platform: reading sheets (Chinese headers,
levels as words, GB18030 CSV, ID numbers Excel stored as numbers), the local row checks, the
batches and their request ids, the state and result files, the configuration's precedence,
refusals turned into exit codes with their field violations, and help in both languages.
Driven end to end against a real platform in tests/e2e/test_cli.py."""
from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import date

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from openpyxl import load_workbook

from services.certificates import domain
from services.cli import config, output, upload
from services.cli import sheet as sheets
from services.cli.client import refusal
from services.cli.exits import CliError, Exit
from services.cli.main import build_parser
from services.common.spec import NOT_SERVICES, registry
from tests.support import resident_id, write_xlsx

TODAY = date(2026, 11, 22)
CN_HEADER = ["准考证号", "姓名", "身份证号", "职业（工种）编码", "职业名称", "等级", "备注"]


def good_rows(n: int, start: int = 0) -> list:
    return [[f"T{i:04d}", "张三丰", resident_id(i), "4-10-01-02", "育婴员", 4, ""]
            for i in range(start, start + n)]


# --- the registry and the package ----------------------------------------------------------
def test_the_command_line_is_not_taken_for_a_service():
    assert "cli" in NOT_SERVICES
    assert "cli" not in registry()


# --- reading -------------------------------------------------------------------------------
@pytest.mark.parametrize("cell, level", [
    (4, 4), (4.0, 4), ("4", 4), ("４", 4), ("四级", 4), ("4级", 4), ("中级工", 4),
    ("四级/中级工", 4), ("高级技师", 1), ("技师", 2), ("一级/高级技师", 1), ("九级", 0),
    ("", 0), (None, 0), (True, 0), (4.5, 0)])
def test_levels_as_sheets_write_them(cell, level):
    assert sheets.parse_level(cell) == level


def test_chinese_headers_map_to_the_fields_and_other_columns_are_kept(tmp_path):
    path = write_xlsx(tmp_path / "s.xlsx", CN_HEADER, good_rows(2))
    sheet = sheets.read(path)
    assert sheet.columns == {"row_ref": 0, "holder_name": 1, "holder_id_number": 2,
                             "occupation_code": 3, "occupation_name": 4, "skill_level": 5}
    assert sheet.chinese and sheet.lines == [2, 3]
    row, problems = sheet.fields(1)
    assert row == {"row_ref": "T0001", "holder_name": "张三丰", "holder_id_number": resident_id(1),
                   "occupation_code": "4-10-01-02", "occupation_name": "育婴员",
                   "skill_level": 4} and problems == []


def test_a_header_without_the_needed_columns_is_refused_with_what_it_takes(tmp_path):
    path = write_xlsx(tmp_path / "s.xlsx", ["姓名", "身份证", "等级", "姓名"], [["a", "b", 4, "c"]])
    with pytest.raises(CliError) as refused:
        sheets.read(path)
    assert refused.value.code == Exit.BAD_INPUT
    text = "\n".join(refused.value.details)
    assert "two columns name holder_name" in text
    assert "no column for holder_id_number" in text and "身份证号" in text
    assert "no column for occupation_code" in text


def test_csv_from_a_chinese_excel_is_read_as_gb18030_and_blank_rows_skipped(tmp_path):
    text = "姓名,身份证号,职业编码,等级\r\n\r\n张三丰,%s,4-10-01-02,四级\r\n,,,\r\n" % resident_id(1)
    path = tmp_path / "s.csv"
    path.write_bytes(text.encode("gb18030"))
    sheet = sheets.read(path)
    assert sheet.lines == [3]
    assert sheet.fields(0)[0]["skill_level"] == 4


def test_codes_typed_in_full_width_are_the_same_codes(tmp_path):
    full = resident_id(7).translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789X"})
    path = write_xlsx(tmp_path / "s.xlsx", CN_HEADER,
                      [["T1", "张三丰", full, "４－１０－０１－０２", "育婴员", "４", ""]])
    row, _ = sheets.read(path).fields(0)
    assert (row["holder_id_number"], row["occupation_code"], row["skill_level"]) == \
        (resident_id(7), "4-10-01-02", 4)


def test_an_id_number_excel_stored_as_a_number_is_named(tmp_path):
    path = write_xlsx(tmp_path / "s.xlsx", CN_HEADER,
                      [["T1", "张三丰", 4.10502199003071e17, "4-10-01-02", "育婴员", 4, ""]])
    row, problems = sheets.read(path).fields(0)
    assert problems and "format the column as text" in problems[0]


def test_files_that_are_not_sheets_are_refused(tmp_path):
    (tmp_path / "x.txt").write_text("a")
    (tmp_path / "bad.xlsx").write_bytes(b"not a zip")
    (tmp_path / "empty.csv").write_text("\n\n")
    for name in ("x.txt", "bad.xlsx", "empty.csv", "missing.csv"):
        with pytest.raises(CliError) as refused:
            sheets.read(tmp_path / name)
        assert refused.value.code == Exit.BAD_INPUT, name


# --- local checks and the plan -------------------------------------------------------------
def plan_of(tmp_path, rows, batch_rows=2, skip_invalid=False, name="s.xlsx", session="S-1"):
    sheet = sheets.read(write_xlsx(tmp_path / name, CN_HEADER, rows))
    return upload.make_plan(sheet, session, "2026-11-20", batch_rows, skip_invalid, TODAY)


def test_every_bad_row_is_found_with_the_registry_s_own_rule(tmp_path):
    wrong_check = resident_id(2)[:17] + ("1" if resident_id(2)[17] != "1" else "2")
    rows = good_rows(2) + [
        ["T2", "李四", wrong_check, "4-10-01-02", "育婴员", 4, ""],
        ["T3", "", resident_id(3), "4-10-1", "育婴员", "九级", ""],
        ["T4", "张三丰", resident_id(0), "4-10-01-02", "育婴员", "中级工", "same as line 2"],
        ["T5", "王五", resident_id(5).lower(), "4-10-01-02", "育婴员", "5", ""]]
    plan = plan_of(tmp_path, rows)
    assert [plan.sheet.lines[i] for i in plan.invalid] == [4, 5, 6]
    assert plan.invalid[2] == ["holder_id_number: check character is wrong"]
    assert plan.invalid[3] == ["holder_name: required",
                               "occupation_code: must look like 4-10-01-02",
                               "skill_level: must be 1-5"]
    assert plan.invalid[4] == ["duplicate of row 2 (same holder, occupation and level)"]
    assert [r["row_ref"] for r in plan.rows] == ["T0000", "T0001", "T5"]
    assert plan.rows[2]["holder_id_number"] == resident_id(5)  # a typed lower-case x is the same


def test_the_session_and_the_date_are_checked_before_any_row(tmp_path):
    sheet = sheets.read(write_xlsx(tmp_path / "s.xlsx", CN_HEADER, good_rows(1)))
    with pytest.raises(CliError) as refused:
        upload.make_plan(sheet, "场次 1", "2026-11-23", 500, False, TODAY)
    assert refused.value.code == Exit.BAD_INPUT
    assert refused.value.details == ["--session: 1-64 of A-Z a-z 0-9 . _ : -",
                                     "--assessment-date: 2026-11-23 is in the future"]


def test_request_ids_come_from_what_is_sent_and_the_batch(tmp_path):
    plan = plan_of(tmp_path, good_rows(5))
    ids = [plan.request(b)["request_id"] for b in range(3)]
    assert [len(b) for b in plan.batches()] == [2, 2, 1]
    assert len(set(ids)) == 3
    assert all(domain.CLIENT_ID.match(i) and len(i) <= 64 for i in ids)
    assert plan.request(2)["rows"] == [plan.rows[4]]
    assert plan.request(0)["exam_session_id"] == "S-1"
    # The same rows saved again (other bytes: a workbook carries the time it was saved), or
    # as CSV: the same requests, the same ids.
    again = plan_of(tmp_path, good_rows(5), name="again.xlsx")
    as_csv = tmp_path / "s.csv"
    with open(as_csv, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([CN_HEADER] + good_rows(5))
    from_csv = upload.make_plan(sheets.read(as_csv), "S-1", "2026-11-20", 2, False, TODAY)
    assert [again.request(b)["request_id"] for b in range(3)] == ids
    assert [from_csv.request(b)["request_id"] for b in range(3)] == ids
    other_rows = plan_of(tmp_path, good_rows(5, start=1), name="t.xlsx")
    other_session = plan_of(tmp_path, good_rows(5), session="S-2")
    other_batches = plan_of(tmp_path, good_rows(5), batch_rows=3)
    for other in (other_rows, other_session, other_batches):
        assert other.request(0)["request_id"] != ids[0]


def test_state_is_kept_for_the_same_plan_only(tmp_path):
    plan = plan_of(tmp_path, good_rows(3))
    state = upload.State.load(upload.state_path(plan.sheet.path), plan)
    state.done[0] = {"batch_id": "b", "results": [["ISSUED", "N1", ""], ["ISSUED", "N2", ""]]}
    state.save(plan)
    assert upload.State.load(state.path, plan).done == state.done
    changed = plan_of(tmp_path, good_rows(3), batch_rows=3)
    reloaded = upload.State.load(state.path, changed)
    assert reloaded.done == {} and reloaded.discarded
    state.path.write_text("{not json")
    assert upload.State.load(state.path, plan).discarded


def test_the_result_file_is_every_row_as_it_was_plus_number_status_and_reason(tmp_path):
    rows = good_rows(2) + [["T9", "", resident_id(9), "4-10-01-02", "育婴员", 4, "note"]]
    plan = plan_of(tmp_path, rows, skip_invalid=True)
    outcomes = [("N1", "ISSUED", ""), ("N0", "DUPLICATE", ""), ("", "INVALID", "holder_name: required")]
    path = sheets.write_result(plan.sheet, outcomes, sheets.result_path(plan.sheet.path))
    assert path.name == "s.result.xlsx"
    got = [list(r) for r in load_workbook(path).active.iter_rows(values_only=True)]
    assert got[0] == CN_HEADER + ["证书编号", "状态", "原因"]
    assert got[1] == good_rows(1)[0][:6] + [None, "N1", "ISSUED", None]
    assert got[3][:7] == ["T9", None, resident_id(9), "4-10-01-02", "育婴员", 4, "note"]
    assert got[3][7:] == [None, "INVALID", "holder_name: required"]


def test_a_csv_result_is_utf8_with_a_bom_for_excel(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("holder_name,holder_id_number,occupation_code,skill_level\n"
                    f"张三丰,{resident_id(1)},4-10-01-02,4\n", encoding="utf-8")
    sheet = sheets.read(path)
    out = sheets.write_result(sheet, [("N1", "ISSUED", "")], sheets.result_path(path))
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    assert list(csv.reader(io.StringIO(data.decode("utf-8-sig")))) == [
        ["holder_name", "holder_id_number", "occupation_code", "skill_level",
         "certificate_number", "status", "reason"],
        ["张三丰", resident_id(1), "4-10-01-02", "4", "N1", "ISSUED", ""]]


def test_batch_answers_are_mapped_back_by_index(tmp_path):
    plan = plan_of(tmp_path, good_rows(2))
    answer = {"results": [{"index": 1, "status": "ROW_STATUS_REJECTED", "errors": ["a", "b"]},
                          {"status": "ROW_STATUS_ISSUED", "certificate_number": "N"}]}
    assert upload.batch_results(plan, 0, answer) == [["ISSUED", "N", ""],
                                                     ["REJECTED", "", "a; b"]]


# --- configuration -------------------------------------------------------------------------
def args(**given):
    base = dict(address=None, token=None, profile=None, config=None, tls=None, ca_file=None,
                timeout=None)
    base.update(given)
    return argparse.Namespace(**base)


def test_flags_then_environment_then_profile_then_defaults(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", tmp_path / "absent.toml")
    (tmp_path / "tok").write_text("from-file\n")
    file = tmp_path / "config.toml"
    file.write_text('default = "a"\n[profiles.a]\naddress = "a:1"\ntoken_file = "%s"\n'
                    'timeout = 5\n[profiles.a.addresses]\ncertificates = "c:2"\n'
                    '[profiles.b]\naddress = "b:1"\ntls = true\n' % (tmp_path / "tok"))
    env = {"VOCREG_CONFIG": str(file)}
    s = config.resolve(args(), env)
    assert (s.address, s.token, s.timeout, s.profile) == ("a:1", "from-file", 5.0, "a")
    assert s.address_for("certificates") == "c:2" and s.address_for("filing") == "a:1"
    s = config.resolve(args(), {**env, "VOCREG_PROFILE": "b", "VOCREG_TOKEN": "t-env"})
    assert (s.address, s.token, s.tls, s.sources["token"]) == ("b:1", "t-env", True,
                                                                "env VOCREG_TOKEN")
    s = config.resolve(args(address="f:9", token="t-flag"), {**env, "VOCREG_ADDRESS": "e:1"})
    assert (s.address, s.token, s.addresses) == ("f:9", "t-flag", {})
    s = config.resolve(args(), {})
    assert s.address == config.DEFAULT_ADDRESS and s.token is None


def test_a_wrong_profile_is_a_usage_error_that_says_what_exists(tmp_path):
    file = tmp_path / "config.toml"
    file.write_text('[profiles.a]\naddress = "a:1"\nadress = "typo"\n')
    with pytest.raises(CliError) as refused:
        config.resolve(args(profile="x"), {"VOCREG_CONFIG": str(file)})
    assert refused.value.code == Exit.USAGE and "profiles: a" in refused.value.message
    with pytest.raises(CliError) as refused:
        config.resolve(args(profile="a"), {"VOCREG_CONFIG": str(file)})
    assert "unknown keys adress" in refused.value.message
    with pytest.raises(CliError):
        config.resolve(args(), {"VOCREG_CONFIG": str(tmp_path / "missing.toml")})


# --- refusals ------------------------------------------------------------------------------
class FakeRpcError(grpc.RpcError):
    def __init__(self, code, message, details=()):
        self._code, self._message = code, message
        status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
        for detail in details:
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        self._trailers = (("grpc-status-details-bin", status.SerializeToString()),)

    def code(self):
        return self._code

    def details(self):
        return self._message

    def trailing_metadata(self):
        return self._trailers


def test_a_refusal_lists_every_field_violation_and_maps_to_an_exit_code():
    bad = error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field="issued_from", description="must be a date"),
        error_details_pb2.BadRequest.FieldViolation(field="skill_level", description="must be 1-5")])
    info = error_details_pb2.ErrorInfo(reason="INVALID_ARGUMENT", domain="vocreg.certificates")
    error = refusal(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "issued_from: must be a date",
                                 [info, bad]), "certificates", "h:1")
    assert error.code == Exit.REFUSED
    assert error.message == "INVALID_ARGUMENT: issued_from: must be a date"
    assert error.details == ["issued_from: must be a date", "skill_level: must be 1-5"]


@pytest.mark.parametrize("code, reason, exit_code, says", [
    (grpc.StatusCode.UNIMPLEMENTED, "METHOD_NOT_FOUND", Exit.UNAVAILABLE, "not deployed at h:1"),
    (grpc.StatusCode.UNAVAILABLE, "SERVICE_NOT_RUNNING", Exit.UNAVAILABLE, "no worker runs"),
    (grpc.StatusCode.UNAVAILABLE, "", Exit.UNAVAILABLE, "cannot reach the edge at h:1"),
    (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED", Exit.AUTH, "TOKEN_EXPIRED"),
    (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED", Exit.AUTH, "ROLE_NOT_ALLOWED"),
    (grpc.StatusCode.NOT_FOUND, "NOT_FOUND", Exit.NOT_FOUND, "NOT_FOUND"),
    (grpc.StatusCode.FAILED_PRECONDITION, "FILING_NOT_ACTIVE", Exit.REFUSED, "FILING_NOT_ACTIVE"),
    (grpc.StatusCode.INTERNAL, "", Exit.ERROR, "INTERNAL")])
def test_each_status_has_its_exit_code_and_says_why(code, reason, exit_code, says):
    details = [error_details_pb2.ErrorInfo(reason=reason, domain="vocreg.certificates")] \
        if reason else []
    error = refusal(FakeRpcError(code, "the message", details), "certificates", "h:1")
    assert error.code == exit_code
    assert says in error.message
    assert error.retryable == (code == grpc.StatusCode.UNAVAILABLE)


# --- output ------------------------------------------------------------------------------
def test_output_formats():
    records = [{"receipt": {"filing_code": "S1", "scope": [{"skill_levels": [5, 4]}]},
                "status": "INSTITUTION_STATUS_ACTIVE"}]
    assert output.flatten(records[0]) == {"receipt.filing_code": "S1",
                                          "receipt.scope[0].skill_levels": "5,4",
                                          "status": "INSTITUTION_STATUS_ACTIVE"}
    columns = [("receipt.filing_code", "code"), ("status", "status")]
    out = io.StringIO()
    output.emit_list(records, columns, "csv", stream=out)
    assert out.getvalue().splitlines() == ["code,status", "S1,INSTITUTION_STATUS_ACTIVE"]
    out = io.StringIO()
    output.emit_list(records, columns, "json", stream=out)
    assert json.loads(out.getvalue()) == records
    out = io.StringIO()
    output.emit_list(records, columns, "table", stream=out)
    assert "ACTIVE" in out.getvalue() and "INSTITUTION_STATUS_ACTIVE" not in out.getvalue()


# --- help ----------------------------------------------------------------------------------
def _parsers(parser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def test_every_command_has_help_in_chinese_and_english():
    def chinese(text):
        return any("\u4e00" <= ch <= "\u9fff" for ch in text)

    found = []
    for path, parser in _parsers(build_parser()):
        found.append(" ".join(path))
        text = parser.format_help()
        assert chinese(text) and "help" in text, path
        for action in parser._actions:
            if action.help and action.help != argparse.SUPPRESS and \
                    not isinstance(action, argparse._SubParsersAction):
                assert chinese(action.help) and " / " in action.help, (path, action.dest)
    for expected in ("certificates upload", "certificates verify", "certificates show",
                     "certificates list", "certificates stats", "register search",
                     "filing show", "filing areas", "doctor", "config show", "cases list",
                     "cases show", "inspection results", "courses list", "courses show",
                     "courses top", "log head", "log entries", "grades list", "grades show",
                     "grades red-list", "grades black-list", "grades file", "refunds stats",
                     "refunds complaints", "escrow schemes", "escrow custody"):
        assert expected in found
    epilog = build_parser().format_help()
    for code in Exit:
        assert f"{int(code):>3}  " in epilog
