"""The `vocreg` command line as its users run it: the installed console script in a subprocess,
against a real platform (filing and certificates workers, the edge, the broker, the database),
with XLSX files written here the way an institution's clerk would fill them in.

The institution is filed through the API first (the command line has no filing writes); every
upload then goes through `vocreg certificates upload` and is checked against the registry
itself (ListCertificates over gRPC), not against what the command line says.
"""
from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2
from openpyxl import load_workbook

from services.common.workdays import SHANGHAI
from tests.database import free_port
from tests.e2e.grpc_client import Certificates, file_institution
from tests.platform import ROOT, Platform, eventually
from tests.support import resident_id, token, uscc, write_xlsx

pytestmark = pytest.mark.e2e

VOCREG = str(Path(sys.executable).parent / "vocreg")
N = 701  # the institution the clerk works for
HEADER = ["准考证号", "姓名", "身份证号", "职业编码", "职业名称", "等级", "备注"]
TODAY = datetime.now(SHANGHAI).date().isoformat()
# Every service with commands: their reads are driven here too.
SERVICES = ("filing", "certificates", "grading", "inspection", "escrow", "courses",
            "transparency")


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    started = Platform(tmp_path_factory.mktemp("cli"), services=SERVICES).start()
    file_institution(started.channel, N)
    yield started
    started.stop()


def vocreg_env(plat, role="institution", home=None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST", "VOCREG_", "AMQP_URI", "MONGO_URI"))}
    env.update({"VOCREG_ADDRESS": f"localhost:{plat.grpc_port}", "HOME": str(home or ROOT)})
    if role is not None:
        env["VOCREG_TOKEN"] = token(role, N if role == "institution" else None)
    env.update(extra)
    return env


def vocreg(plat, *args, role="institution", timeout=120, **extra) -> subprocess.CompletedProcess:
    """`vocreg ARGS` as a user types it; its exit code, stdout and stderr."""
    return subprocess.run([VOCREG, *args], env=vocreg_env(plat, role, **extra), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def write_sheet(path: Path, rows: list) -> Path:
    return write_xlsx(path, HEADER, rows, title="考生")


def candidates(n: int, start: int = 0) -> list:
    """Rows as a clerk types them: the level sometimes a number, sometimes its name."""
    return [[f"T{i:05d}", "张三丰", resident_id(i), "4-10-01-02", "育婴员",
             "四级/中级工" if i % 3 else 4, ""] for i in range(start, start + n)]


def issued_in(plat, session: str) -> list[dict]:
    """What the registry holds for the session (the regulator's view, every page)."""
    regulator = Certificates(plat.channel, "regulator")
    found, token_ = [], ""
    while True:
        answer = regulator.ListCertificates({"exam_session_id": session, "institution_id": uscc(N),
                                             "page": {"page_size": 100, "page_token": token_}})
        found += answer.get("certificates", [])
        token_ = answer["page"].get("next_page_token", "")
        if not token_:
            return found


def result_rows(path: Path) -> list[list]:
    return [list(r) for r in load_workbook(path).active.iter_rows(values_only=True)]


# --- uploads -------------------------------------------------------------------------------
def test_bad_rows_are_all_shown_before_anything_is_sent(plat, tmp_path):
    wrong_check = resident_id(2)[:17] + ("1" if resident_id(2)[17] != "1" else "2")
    rows = candidates(20) + [
        ["T-a", "李四", wrong_check, "4-10-01-02", "育婴员", 4, "typo in the ID"],
        ["T-b", "", resident_id(900), "4-10-1", "育婴员", "九级", ""],
        ["T-c", "张三丰", resident_id(3), "4-10-01-02", "育婴员", "中级工", "typed twice"]]
    sheet = write_sheet(tmp_path / "六月考生.xlsx", rows)

    done = vocreg(plat, "certificates", "upload", str(sheet), "--session", "CLI-BAD",
                  "--assessment-date", TODAY)
    assert done.returncode == 3, done.stderr
    for expected in ("23 rows, 20 pass the checks, 3 do not", "T-a", "check character is wrong",
                     "holder_name: required", "occupation_code: must look like 4-10-01-02",
                     "skill_level: must be 1-5", "duplicate of row 5", "nothing was sent"):
        assert expected in done.stderr, (expected, done.stderr)
    assert issued_in(plat, "CLI-BAD") == []
    assert not (tmp_path / "六月考生.result.xlsx").exists()

    done = vocreg(plat, "certificates", "upload", str(sheet), "--session", "CLI-BAD",
                  "--assessment-date", TODAY, "--skip-invalid", "--progress", "plain")
    assert done.returncode == 8, done.stderr  # done, with rows not issued
    issued = {c["holder_id_number"]: c["certificate_number"] for c in issued_in(plat, "CLI-BAD")}
    assert len(issued) == 20
    got = result_rows(tmp_path / "六月考生.result.xlsx")
    assert got[0] == HEADER + ["证书编号", "状态", "原因"]
    assert [r[:7] for r in got[1:]] == [[c if c != "" else None for c in r] for r in rows]
    for row in got[1:21]:
        assert row[8] == "ISSUED" and row[7] == issued[row[2]]
    assert [(r[0], r[8]) for r in got[21:]] == [("T-a", "INVALID"), ("T-b", "INVALID"),
                                                ("T-c", "INVALID")]
    assert got[23][9] == "duplicate of row 5 (same holder, occupation and level)"


def test_an_upload_killed_mid_run_resumes_and_issues_nothing_twice(plat, tmp_path):
    rows = candidates(400, start=1000)
    sheet = write_sheet(tmp_path / "candidates.xlsx", rows)
    command = [VOCREG, "certificates", "upload", str(sheet), "--session", "CLI-KILL",
               "--assessment-date", TODAY, "--batch-rows", "20", "--progress", "plain"]
    state_file = tmp_path / "candidates.xlsx.upload-state.json"

    def run_until(batch: int, sig) -> subprocess.CompletedProcess:
        """Start the upload, and send `sig` once it reports batch `batch` (or a later one)."""
        proc = subprocess.Popen(command, env=vocreg_env(plat), cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        seen = []
        for line in proc.stderr:
            seen.append(line)
            reported = re.match(r"batch (\d+)/20 ", line)
            if reported and int(reported[1]) >= batch:
                proc.send_signal(sig)
                break
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(command, proc.returncode, out, "".join(seen) + err)

    # SIGTERM (as Ctrl-C): it stops between batches, says so, and exits 130.
    stopped = run_until(4, signal.SIGTERM)
    assert stopped.returncode == 130, stopped.stderr
    assert "run the same command again to resume" in stopped.stderr, stopped.stderr
    assert 4 <= len(json.loads(state_file.read_text())["batches"]) < 20, stopped.stderr
    # SIGKILL: no chance to clean up; a batch may be on its way or already issued.
    killed = run_until(9, signal.SIGKILL)
    assert killed.returncode == -9 and "resuming" in killed.stderr, killed.stderr
    kept = len(json.loads(state_file.read_text())["batches"])
    assert 9 <= kept < 20, killed.stderr
    before = issued_in(plat, "CLI-KILL")
    assert kept * 20 <= len(before) <= (kept + 1) * 20, (kept, len(before), killed.stderr)

    resumed = subprocess.run(command, env=vocreg_env(plat), cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming · 续传: {kept} of 20 batches were sent before" in resumed.stderr, \
        resumed.stderr
    assert "rows 400 · issued 400 · duplicate 0 · rejected 0" in resumed.stderr, resumed.stderr

    registry_view = issued_in(plat, "CLI-KILL")
    numbers = {c["holder_id_number"]: c["certificate_number"] for c in registry_view}
    assert len(registry_view) == 400 == len(numbers) == len(set(numbers.values()))
    got = result_rows(tmp_path / "candidates.result.xlsx")
    assert [r[:6] for r in got[1:]] == [r[:6] for r in rows]
    assert {r[2]: r[7] for r in got[1:]} == numbers
    assert {r[8] for r in got[1:]} == {"ISSUED"}

    # Without its state (another machine, a deleted file): the same request ids get their
    # first answers, and the registry still holds each certificate once.
    state_file.unlink()
    again = subprocess.run(command, env=vocreg_env(plat), cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert len(issued_in(plat, "CLI-KILL")) == 400
    assert {r[2]: r[7] for r in result_rows(tmp_path / "candidates.result.xlsx")[1:]} == numbers


def test_on_a_terminal_the_upload_draws_a_bar(plat, tmp_path):
    """rich's bar when stderr is a terminal (a pseudo-terminal here, as tmux gives one)."""
    sheet = write_sheet(tmp_path / "tty.xlsx", candidates(60, start=4000))
    leader, follower = pty.openpty()
    proc = subprocess.Popen([VOCREG, "certificates", "upload", str(sheet), "--session",
                             "CLI-TTY", "--assessment-date", TODAY, "--batch-rows", "20"],
                            env=vocreg_env(plat, TERM="xterm-256color", COLUMNS="150"),
                            cwd=ROOT, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other side closed
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode("utf-8", "replace"))
    assert "上传 upload" in text and "━" in text
    assert "60/60 rows" in text and "issued 60" in text and "rejected 0" in text
    assert "left" in text


# --- reads -----------------------------------------------------------------------------------
def test_reads_in_table_json_and_csv(plat, tmp_path):
    sheet = write_sheet(tmp_path / "two.xlsx", candidates(2, start=2000))
    assert vocreg(plat, "certificates", "upload", str(sheet), "--session", "CLI-READ",
                  "--assessment-date", TODAY).returncode == 0
    number = result_rows(tmp_path / "two.result.xlsx")[1][7]

    valid = vocreg(plat, "certificates", "verify", number, "张三丰", "-o", "json", role=None)
    assert valid.returncode == 0, valid.stderr
    answer = json.loads(valid.stdout)
    assert answer["result"] == "VERIFICATION_RESULT_VALID"
    assert answer["holder_name_masked"] == "张*丰"
    shown = vocreg(plat, "certificates", "verify", number, "张三丰", role=None)
    assert "VALID" in shown.stdout and "张*丰" in shown.stdout
    assert vocreg(plat, "certificates", "verify", number, "李四", role=None).returncode == 5

    listed = vocreg(plat, "certificates", "list", "--session", "CLI-READ", "-o", "csv")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.strip().splitlines()
    assert lines[0].startswith("number 编号,name 姓名") and len(lines) == 3
    one = vocreg(plat, "certificates", "show", number, "-o", "json")
    assert json.loads(one.stdout)["certificate_number"] == number
    stats = vocreg(plat, "certificates", "stats", "-o", "json")
    assert json.loads(stats.stdout)["issued_count"] >= 2

    register = vocreg(plat, "register", "search", "--occupation", "4-10-01-02", "-o", "json",
                      role=None)
    assert register.returncode == 0, register.stderr
    assert any(e["receipt"]["institution_name"] == f"安阳市第{N}职业技能培训评价中心"
               for e in json.loads(register.stdout))
    institution = vocreg(plat, "filing", "show", uscc(N), "-o", "json", role="regulator")
    assert json.loads(institution.stdout)["status"] == "INSTITUTION_STATUS_ACTIVE"
    table = vocreg(plat, "filing", "show", uscc(N), role="regulator")
    assert "ACTIVE" in table.stdout and uscc(N) in table.stdout


def test_the_other_services_reads(plat):
    """grading, inspection, escrow, courses and the decision log: each service's commands
    answer through the same edge, public ones without a token."""
    subject = f"institution:{uscc(N)}"

    def logged():
        done = vocreg(plat, "log", "entries", "--subject", subject, "-o", "json", role=None)
        assert done.returncode == 0, done.stderr
        return [e for e in json.loads(done.stdout) if e["kind"] == "filing.InstitutionFiled"]

    entries = eventually(logged, timeout=30, what="the filing in the decision log")
    assert subject in entries[0]["subjects"]
    head = vocreg(plat, "log", "head", "-o", "json", role=None)
    assert int(json.loads(head.stdout)["head"]["tree_size"]) >= 1
    table = vocreg(plat, "log", "head", role=None)
    assert table.returncode == 0 and "root_hash" in table.stdout

    cases = vocreg(plat, "cases", "list", "--state", "open", "--kind", "daily", "-o", "json",
                   role="regulator")
    assert cases.returncode == 0 and json.loads(cases.stdout) == [], cases.stderr
    missing = vocreg(plat, "cases", "show", "no-such-case", role="regulator")
    assert missing.returncode in (4, 5), missing.stderr
    results = vocreg(plat, "inspection", "results", "-o", "csv", role=None)
    assert results.returncode == 0 and results.stdout.startswith("case 案件,"), results.stderr
    for args in (("grades", "list", "--year", "2025"), ("grades", "red-list"),
                 ("grades", "black-list")):
        done = vocreg(plat, *args, "-o", "json", role=None)
        assert done.returncode == 0 and json.loads(done.stdout) == [], done.stderr
    ungraded = vocreg(plat, "grades", "show", uscc(N), "--year", "2025", role=None)
    assert ungraded.returncode == 5 and "GRADE_NOT_FOUND" in ungraded.stderr, ungraded.stderr
    integrity = vocreg(plat, "grades", "file", uscc(N), "-o", "json", role="regulator")
    assert json.loads(integrity.stdout)["institution_id"] == uscc(N), integrity.stderr
    refunds = vocreg(plat, "refunds", "stats", "--from", "2026-01-01", "--to", "2026-06-30",
                     "-o", "json", role=None)
    assert refunds.returncode == 0, refunds.stderr
    figures = json.loads(refunds.stdout)
    assert (figures["from"], figures["to"], int(figures["complaints_received"])) == \
        ("2026-01-01", "2026-06-30", 0)
    backwards = vocreg(plat, "refunds", "stats", "--from", "2026-06-30", "--to", "2026-01-01",
                       role=None)
    assert backwards.returncode == 4 and "INVALID_ARGUMENT" in backwards.stderr
    for args, role in ((("refunds", "complaints"), "regulator"), (("escrow", "schemes"), None)):
        done = vocreg(plat, *args, "-o", "json", role=role)
        assert done.returncode == 0 and json.loads(done.stdout) == [], done.stderr
    for args in (("courses", "list"), ("courses", "top")):
        done = vocreg(plat, *args, "-o", "json", role=None)
        assert done.returncode == 0 and json.loads(done.stdout) == [], done.stderr


def test_a_profile_file_gives_the_address_and_the_token(plat, tmp_path):
    (tmp_path / "token").write_text(token("regulator"))
    home = tmp_path / "home"
    (home / ".config" / "vocreg").mkdir(parents=True)
    (home / ".config" / "vocreg" / "config.toml").write_text(
        f'default = "test"\n[profiles.test]\naddress = "localhost:{plat.grpc_port}"\n'
        f'token_file = "{tmp_path / "token"}"\n')
    env = vocreg_env(plat, role=None, home=home)
    del env["VOCREG_ADDRESS"]
    done = subprocess.run([VOCREG, "filing", "show", uscc(N), "-o", "json"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shown = subprocess.run([VOCREG, "config", "show", "-o", "json"], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    settings = json.loads(shown.stdout)
    assert settings["profile"] == "test" and settings["sources"]["address"].startswith("profile")


# --- errors ------------------------------------------------------------------------------------
def test_refusals_say_why_with_their_field_violations_and_exit_codes(plat, tmp_path):
    bad = vocreg(plat, "certificates", "list", "--from", "2026-13-01", "--to", "yesterday",
                 role="regulator")
    assert bad.returncode == 4
    assert "error: INVALID_ARGUMENT" in bad.stderr
    assert "  - issued_from:" in bad.stderr and "  - issued_to:" in bad.stderr

    sheet = write_sheet(tmp_path / "s.xlsx", candidates(1, start=3000))
    anonymous = vocreg(plat, "certificates", "upload", str(sheet), "--session", "CLI-ERR",
                       "--assessment-date", TODAY, role=None)
    assert anonymous.returncode == 6 and "UNAUTHENTICATED" in anonymous.stderr
    assert "fix:" in anonymous.stderr
    regulator = vocreg(plat, "certificates", "upload", str(sheet), "--session", "CLI-ERR",
                       "--assessment-date", TODAY, role="regulator")
    assert regulator.returncode == 6 and "ROLE_NOT_ALLOWED" in regulator.stderr
    missing = vocreg(plat, "filing", "show", uscc(799), role="regulator")
    assert missing.returncode == 5, missing.stderr
    nowhere = vocreg(plat, "register", "search", "--address", f"localhost:{free_port()}",
                     "--timeout", "3")
    assert nowhere.returncode == 7 and "cannot reach the edge" in nowhere.stderr


def test_a_service_the_edge_does_not_serve_is_reported_as_not_deployed(plat, tmp_path):
    """An edge for filing alone, on the same bus: certificates' commands are UNIMPLEMENTED
    there, and doctor lists the service as not deployed rather than broken."""
    port, metrics = free_port(), free_port()
    log = open(tmp_path / "edge-filing.log", "ab")
    edge = subprocess.Popen([sys.executable, "-m", "services.common.edge", "--services", "filing"],
                            cwd=ROOT, env=plat._env(GRPC_PORT=port, EDGE_METRICS_PORT=metrics,
                                                    HTTP_PORT=0),
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        address = f"localhost:{port}"
        eventually(lambda: vocreg(plat, "register", "search", "--address", address)
                   .returncode == 0, timeout=30, what="the filing-only edge")
        verify = vocreg(plat, "certificates", "verify", "S000041000001264000001", "张三",
                        "--address", address)
        assert verify.returncode == 7
        assert f"the certificates service is not deployed at {address}" in verify.stderr
        doctor = vocreg(plat, "doctor", "--address", address, "--no-infrastructure",
                        "--metrics", f"edge=http://localhost:{metrics}/metrics")
        assert doctor.returncode == 0, doctor.stdout
        assert f"skip worker certificates: not deployed at {address}" in doctor.stdout
        assert "ok   worker filing: SERVING" in doctor.stdout
    finally:
        edge.send_signal(signal.SIGTERM)
        edge.wait(timeout=30)


# --- doctor ------------------------------------------------------------------------------------
def doctor_args(plat, mongo_uri=None):
    args = ["doctor", "--amqp-uri", plat.amqp_uri,
            "--mongo-uri", mongo_uri or plat.mongo_uris["certificates"],
            "--metrics", f"edge=http://localhost:{plat.edge_metrics_port}/metrics"]
    for name, port in plat.worker_metrics_ports.items():
        args += ["--metrics", f"{name}=http://localhost:{port}/metrics"]
    return args


def test_doctor_on_a_running_and_on_a_broken_platform(plat):
    healthy = vocreg(plat, *doctor_args(plat))
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    lines = healthy.stdout.strip().splitlines()
    for name in ("edge localhost", *(f"worker {s}" for s in SERVICES), "broker",
                 "database", "metrics edge", "metrics filing", "metrics certificates", "token",
                 "token accepted"):
        assert any(line.startswith("ok ") and f" {name}" in line for line in lines), (name, lines)
    assert lines[-1].startswith("0 failed")

    plat.stop_process("worker-certificates")
    plat.wait_for_health("vocreg.certificates.v1.CertificateRegistry",
                         health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        broken = vocreg(plat, *doctor_args(plat, mongo_uri=f"mongodb://127.0.0.1:{free_port()}"),
                        VOCREG_TOKEN="not-a-token")
        assert broken.returncode == 9
        out = broken.stdout
        assert "FAIL worker certificates: NOT_SERVING" in out
        assert "fix: start it: `python -m services.common.worker certificates`" in out
        assert "FAIL database: mongodb://127.0.0.1:" in out
        assert "FAIL metrics certificates:" in out
        assert "FAIL token: not a JWT" in out
        assert "ok   worker filing: SERVING" in out
        failed = [line for line in out.splitlines() if line.startswith("FAIL")]
        assert all("— fix: " in line for line in failed), failed
    finally:
        plat.start_worker("certificates")
        plat.wait_for_health("vocreg.certificates.v1.CertificateRegistry",
                             health_pb2.HealthCheckResponse.SERVING)


def test_the_command_line_runs_without_eventlet_or_nameko():
    """grpcio and eventlet's monkey patching do not mix: the command line is a plain grpcio
    client, whatever it does (its commands, the upload, doctor's broker and database checks)."""
    probe = ("import sys\n"
             "from services.cli import commands, config, doctor, main, upload\n"
             "commands.modules()\n"
             "doctor.check_broker(config.Settings(amqp_uri='amqp://guest:guest@127.0.0.1:1/'))\n"
             "doctor.check_database(config.Settings(mongo_uri='mongodb://127.0.0.1:1/x'))\n"
             "print(sorted(m for m in ('eventlet', 'nameko', 'mongoengine') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
