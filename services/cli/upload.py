"""`vocreg certificates upload`: an exam session's results from a spreadsheet, checked row by
row here first, sent in batches, safe to stop and run again.

- Local checks: every row through the registry's own row rule (services/certificates/domain.py
  check_row: GB 11643 ID numbers by services/common/identifiers.py, levels and occupation
  codes by services/common/vocabulary.py) and the same-holder-twice rule across the whole file,
  so every bad row is shown before anything is sent. Only the platform can say what needs the
  register (the institution's filed scope, a certificate issued before): those come back per
  row as REJECTED or DUPLICATE.
- Nothing issued twice: batch k's request_id is derived from the SHA-256 of what the upload
  sends (the session, the date, the batch size, the valid rows of the file in order) and k. IssueCertificates answers a request_id it has seen with its
  first answer (same caller, same content), so a batch sent again after Ctrl-C, a kill or a
  timeout issues nothing new, whether or not its first answer arrived.
- Resumable: the state file beside the input (`FILE.upload-state.json`) keeps each finished
  batch's answer, written atomically after every batch; the same command again skips those and
  sends the rest. Changed rows or options make a different plan: its batches get other ids
  (rows issued before then come back DUPLICATE with their numbers, still never twice).
- The result file beside the input (`NAME.result.xlsx|csv`): every row as it was, plus the
  certificate number, the status (ISSUED, DUPLICATE, REJECTED, INVALID: failed the local
  checks and not sent) and the reason.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from services.certificates import domain as registry_rules
from services.cli import sheet as sheets
from services.cli.client import Api, Refusal, backoff
from services.cli.exits import CliError, Exit
from services.common.vocabulary import check_client_id, parse_date
from services.common.workdays import today_in_shanghai

try:
    import fcntl
except ImportError:  # Windows: no advisory lock (the request ids still keep a race harmless)
    fcntl = None

SERVICE = "certificates"
DEFAULT_BATCH_ROWS = 500
STATE_VERSION = 1
ISSUED, DUPLICATE, REJECTED, INVALID = "ISSUED", "DUPLICATE", "REJECTED", "INVALID"
STATUS_BY_ROW_STATUS = {registry_rules.ROW_ISSUED: ISSUED, registry_rules.ROW_DUPLICATE: DUPLICATE,
                        registry_rules.ROW_REJECTED: REJECTED}


@dataclass
class Plan:
    sheet: sheets.Sheet
    session: str
    assessment_date: str
    batch_rows: int
    skip_invalid: bool
    rows: list = field(default_factory=list)       # the request rows of the valid sheet rows
    positions: list = field(default_factory=list)  # each one's index among the sheet's rows
    invalid: dict = field(default_factory=dict)    # sheet row index -> problems

    @cached_property
    def key(self) -> str:
        """The SHA-256 of what the batches send: the session, the date, the batch size and
        every row, in order. Not of the file's bytes: Excel saving an unchanged sheet again
        (or the same rows as CSV) changes those, not the requests."""
        sent = json.dumps([self.session, self.assessment_date, self.batch_rows, self.rows],
                          ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(sent.encode()).hexdigest()[:24]

    def request_id(self, batch: int) -> str:
        return f"cli-{self.key}-{batch:05d}"  # 34 of the 64 characters a request_id may have

    def batches(self) -> list[range]:
        return [range(start, min(start + self.batch_rows, len(self.rows)))
                for start in range(0, len(self.rows), self.batch_rows)]

    def request(self, batch: int) -> dict:
        rows = [self.rows[i] for i in self.batches()[batch]]
        return {"exam_session_id": self.session, "assessment_date": self.assessment_date,
                "rows": rows, "request_id": self.request_id(batch)}


def check_envelope(session: str, assessment_date: str, today: date) -> list[str]:
    errors: list[str] = []
    check_client_id(session, "--session", errors)
    assessed = parse_date(assessment_date, "--assessment-date", errors)
    if assessed is not None and assessed > today:
        errors.append(f"--assessment-date: {assessed.isoformat()} is in the future")
    return errors


def make_plan(sheet: sheets.Sheet, session: str, assessment_date: str, batch_rows: int,
              skip_invalid: bool, today: date) -> Plan:
    """Every row checked; the valid ones in file order make the batches."""
    problems = check_envelope(session, assessment_date, today)
    if problems:
        raise CliError(Exit.BAD_INPUT, "the session's details are not right", problems)
    if not 1 <= batch_rows <= registry_rules.MAX_BATCH_ROWS:
        raise CliError(Exit.USAGE, f"--batch-rows must be 1-{registry_rules.MAX_BATCH_ROWS}")
    plan = Plan(sheet, session.strip(), assessment_date.strip(), batch_rows, skip_invalid)
    checked, reading_problems = [], {}
    for i, line in enumerate(sheet.lines):
        raw, problems = sheet.fields(i)
        if "row_ref" not in sheet.columns:
            raw["row_ref"] = f"line-{line}"
        # The row's index is its line in the sheet: "duplicate of row 7" then names line 7.
        checked.append(registry_rules.check_row(line, raw, today))
        reading_problems[i] = problems
    registry_rules.mark_duplicates_in_batch(checked)
    for i, row in enumerate(checked):
        errors = reading_problems[i] + list(row.errors)
        if errors:
            plan.invalid[i] = errors
            continue
        plan.positions.append(i)
        plan.rows.append({"row_ref": row.row_ref, "holder_name": row.holder_name,
                          "holder_id_number": row.holder_id_number,
                          "occupation_code": row.occupation_code,
                          "occupation_name": row.occupation_name,
                          "skill_level": row.skill_level})
    return plan


def show_invalid(plan: Plan, console: Console) -> None:
    table = Table(title=f"{len(plan.invalid)} rows fail the checks · {len(plan.invalid)} "
                        f"行未通过检查", title_justify="left")
    table.add_column("line 行", justify="right")
    table.add_column("ref 编号")
    table.add_column("problems 问题", overflow="fold")
    for i, problems in sorted(plan.invalid.items()):
        ref = sheets.cell_text(plan.sheet.rows[i][plan.sheet.columns["row_ref"]]) \
            if "row_ref" in plan.sheet.columns else ""
        table.add_row(str(plan.sheet.lines[i]), ref, "\n".join(problems))
    console.print(table)


# --- the state file -----------------------------------------------------------------------
def state_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.upload-state.json")


class State:
    """Each finished batch's rows as [status, certificate number, reason], by batch index."""

    def __init__(self, path: Path, plan: Plan):
        self.path = path
        self.plan_key = plan.key
        self.done: dict[int, dict] = {}
        self.discarded = False

    @classmethod
    def load(cls, path: Path, plan: Plan) -> State:
        state = cls(path, plan)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return state
        except (OSError, ValueError):
            state.discarded = True
            return state
        if data.get("version") != STATE_VERSION or data.get("plan") != plan.key:
            state.discarded = True
            return state
        state.done = {int(k): v for k, v in data.get("batches", {}).items()}
        return state

    def save(self, plan: Plan) -> None:
        data = {"version": STATE_VERSION, "plan": self.plan_key, "file": plan.sheet.path.name,
                "file_sha256": plan.sheet.sha256, "exam_session_id": plan.session,
                "assessment_date": plan.assessment_date, "batch_rows": plan.batch_rows,
                "batch_count": len(plan.batches()), "updated_at": datetime.now().astimezone()
                .isoformat(timespec="seconds"),
                "batches": {str(k): v for k, v in sorted(self.done.items())}}
        temporary = self.path.with_name(f".{self.path.name}.partial")
        temporary.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(temporary, self.path)


# --- progress -----------------------------------------------------------------------------
@dataclass
class Counts:
    rows: int = 0
    issued: int = 0
    duplicate: int = 0
    rejected: int = 0

    def add(self, results: list) -> None:
        self.rows += len(results)
        for status, _, _ in results:
            if status == ISSUED:
                self.issued += 1
            elif status == DUPLICATE:
                self.duplicate += 1
            else:
                self.rejected += 1


def resuming(done: int, batches: int) -> str:
    if done == batches:
        return f"every batch was sent before ({batches}): writing the result file again"
    return f"resuming · 续传: {done} of {batches} batches were sent before"


class PlainProgress:
    """One line per batch (stderr not a terminal: a log, a CI job, a test)."""

    def __init__(self, stream):
        self.stream = stream

    def start(self, total: int, counts: Counts, batches: int, done: int) -> None:
        self.total, self.batches, self.started = total, batches, time.monotonic()
        self.first_rows = counts.rows
        if done:
            self.line(resuming(done, batches))

    def advance(self, counts: Counts, batch: int) -> None:
        sent = counts.rows - self.first_rows
        elapsed = time.monotonic() - self.started
        left = (self.total - counts.rows) * elapsed / sent if sent else 0.0
        self.line(f"batch {batch + 1}/{self.batches} · rows {counts.rows}/{self.total} · "
                  f"issued {counts.issued} · duplicate {counts.duplicate} · "
                  f"rejected {counts.rejected} · {left:.0f}s left")

    def note(self, text: str) -> None:
        self.line(text)

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def stop(self) -> None:
        pass


class BarProgress:
    """rich's bar on a terminal: rows, issued, duplicate, rejected, elapsed and time left."""

    def __init__(self, console: Console):
        self.progress = Progress(
            TextColumn("上传 upload"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
            TextColumn("[green]issued {task.fields[issued]}"),
            TextColumn("[yellow]dup {task.fields[duplicate]}"),
            TextColumn("[red]rejected {task.fields[rejected]}"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            console=console, refresh_per_second=4, transient=False)

    def start(self, total: int, counts: Counts, batches: int, done: int) -> None:
        self.progress.start()
        if done:
            self.progress.console.print(resuming(done, batches), markup=False)
        self.task = self.progress.add_task("upload", total=total, completed=counts.rows,
                                           issued=counts.issued, duplicate=counts.duplicate,
                                           rejected=counts.rejected)

    def advance(self, counts: Counts, batch: int) -> None:
        self.progress.update(self.task, completed=counts.rows, issued=counts.issued,
                             duplicate=counts.duplicate, rejected=counts.rejected)

    def note(self, text: str) -> None:
        self.progress.console.print(text)

    def stop(self) -> None:
        self.progress.stop()


class NoProgress(PlainProgress):
    def line(self, text: str) -> None:
        pass


def progress_for(kind: str, console: Console):
    if kind == "none":
        return NoProgress(sys.stderr)
    if kind == "bar" or (kind == "auto" and console.is_terminal):
        return BarProgress(console)
    return PlainProgress(sys.stderr)


# --- sending ------------------------------------------------------------------------------
def send(api: Api, plan: Plan, batch: int, progress, retry_for: float) -> dict:
    """One batch, sent again with the same request_id while the answer is worth waiting for
    (the edge or the worker away, a deadline, the same request still running)."""
    deadline = time.monotonic() + retry_for
    attempt = 0
    while True:
        try:
            return api.call(SERVICE, "IssueCertificates", plan.request(batch))
        except Refusal as refused:
            attempt += 1
            pause = backoff(attempt)
            if not refused.retryable or time.monotonic() + pause > deadline:
                raise
            progress.note(f"batch {batch + 1}: {refused.message}; sending it again in "
                          f"{pause:g}s (same request id: nothing is issued twice)")
            time.sleep(pause)


def batch_results(plan: Plan, batch: int, answer: dict) -> list:
    rows = plan.batches()[batch]
    results = [[REJECTED, "", "no answer for this row"] for _ in rows]
    for result in answer.get("results", []):
        index = result.get("index", 0)
        if 0 <= index < len(results):
            results[index] = [STATUS_BY_ROW_STATUS.get(result.get("status"), REJECTED),
                              result.get("certificate_number", ""),
                              "; ".join(result.get("errors", []))]
    return results


@dataclass
class Outcome:
    counts: Counts
    invalid: int
    result_file: Path
    state_file: Path

    @property
    def exit_code(self) -> Exit:
        return Exit.PARTIAL if self.counts.rejected or self.invalid else Exit.OK


def upload(api: Api, plan: Plan, console: Console, progress_kind: str = "auto",
           retry_for: float = 120.0) -> Outcome:
    """Send what is not done yet, then write the result file. KeyboardInterrupt (Ctrl-C or
    SIGTERM) leaves the state file as of the last finished batch."""
    path = plan.sheet.path
    with open(path, "rb") as held:
        try:  # advisory, on the input itself: two uploads of one file would race on its state
            if fcntl is not None:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CliError(Exit.UNAVAILABLE, f"another vocreg upload of {path.name} is running "
                                              "on this machine: wait for it, or stop it") from None
        return _upload(api, plan, console, progress_kind, retry_for)


def _upload(api, plan, console, progress_kind, retry_for) -> Outcome:
    path = plan.sheet.path
    state = State.load(state_path(path), plan)
    if state.discarded:
        console.print(f"[yellow]{state.path.name} belongs to another upload (the rows or the "
                      "options changed): starting over; rows issued before come back as "
                      "DUPLICATE with their numbers[/]")
    try:  # before sending anything: an answer that cannot be kept is an upload that cannot resume
        state.save(plan)
    except OSError as exc:
        raise CliError(Exit.BAD_INPUT, f"cannot write {state.path} beside the input "
                                       f"({exc.strerror}): copy the file to a folder you can "
                                       "write to") from None
    batches = plan.batches()
    counts = Counts()
    for done in state.done.values():
        counts.add(done["results"])
    progress = progress_for(progress_kind, console)
    progress.start(len(plan.rows), counts, len(batches), len(state.done))
    try:
        for batch in range(len(batches)):
            if batch in state.done:
                continue
            answer = send(api, plan, batch, progress, retry_for)
            results = batch_results(plan, batch, answer)
            state.done[batch] = {"batch_id": answer.get("batch_id", ""), "results": results}
            state.save(plan)
            counts.add(results)
            progress.advance(counts, batch)
    except KeyboardInterrupt:
        progress.stop()
        console.print(f"stopped · 已停止: {len(state.done)} of {len(batches)} batches sent, "
                      f"kept in {state.path.name}; run the same command again to resume "
                      "(nothing will be issued twice)", markup=False)
        raise
    finally:
        progress.stop()
    outcomes = [("", INVALID, "; ".join(plan.invalid[i])) if i in plan.invalid else None
                for i in range(len(plan.sheet.rows))]
    for batch, rows in enumerate(batches):
        for offset, row in zip(rows, state.done[batch]["results"], strict=True):
            status, number, reason = row
            outcomes[plan.positions[offset]] = (number, status, reason)
    try:
        result = sheets.write_result(plan.sheet, outcomes, sheets.result_path(path))
    except OSError as exc:
        raise CliError(Exit.ERROR, f"every batch was sent, but the result file cannot be "
                                   f"written ({exc.strerror}); the answers are kept in "
                                   f"{state.path.name}: run the same command again") from None
    return Outcome(counts, len(plan.invalid), result, state.path)


def today() -> date:
    return today_in_shanghai(datetime.now().astimezone())
