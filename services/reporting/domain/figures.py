"""Figures from events: the daily read model, an edition's table, its hashes, and the
difference between two editions. Pure functions of logged events (`Logged`), so the read
model kept event by event, a rebuild from the log and an edition all agree by construction.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from services.reporting.domain import definition as d
from services.reporting.domain.schedule import Period

PERIOD, CUMULATIVE = "FIGURE_COLUMN_PERIOD", "FIGURE_COLUMN_CUMULATIVE"
COLUMNS = (PERIOD, CUMULATIVE)
# A diff lists at most this many events per direction and cell (the counts say how many).
MAX_DIFF_EVENTS = 100


@dataclass(frozen=True)
class Logged:
    """An event as the reporting log holds it: its position (1, 2, ... in the order logged),
    id, kind ("escrow.ComplaintResolved") and body (proto JSON, proto field names)."""

    position: int
    event_id: str
    kind: str
    body: dict


@dataclass(frozen=True)
class Contribution:
    figure: str
    subject_id: str
    amount: int
    day: date
    event_id: str
    kind: str
    position: int

    @property
    def key(self) -> tuple:
        return self.event_id, self.figure, self.subject_id

    def to_dict(self) -> dict:
        return {"subject_id": self.subject_id, "event_id": self.event_id,
                "event_type": self.kind, "day": self.day.isoformat(),
                "amount": str(self.amount), "log_position": str(self.position)}


def contributions(entry: Logged) -> list[Contribution]:
    """What one logged event adds to the table, and on which day."""
    found = d.counted(entry.kind, entry.body)
    if not found:
        return []
    day = d.event_day(entry.kind, entry.body)
    if day is None:
        return []
    return [Contribution(c.figure, c.subject_id, c.amount, day, entry.event_id, entry.kind,
                         entry.position) for c in found]


def value(figure: str, items: Iterable[Contribution]) -> int:
    items = list(items)
    measure = d.BY_KEY[figure].measure
    if measure == d.DISTINCT:
        return len({c.subject_id for c in items})
    if measure == d.SUM:
        return sum(c.amount for c in items)
    return len(items)


# --- the daily read model -----------------------------------------------------------------
def figure_day_id(figure: str, day: date) -> str:
    return f"{figure}|{day.isoformat()}"


def stored_contribution(c: Contribution) -> dict:
    """A contribution as a daily figure document keeps it (short keys: a busy day has many)."""
    return {"s": c.subject_id, "e": c.event_id, "k": c.kind, "a": c.amount, "p": c.position}


def day_value(figure: str, stored: list[dict]) -> int:
    """A daily figure's value from its stored contributions."""
    measure = d.BY_KEY[figure].measure
    if measure == d.DISTINCT:
        return len({c["s"] for c in stored})
    if measure == d.SUM:
        return sum(int(c["a"]) for c in stored)
    return len(stored)


def rebuild(entries: Iterable[Logged]) -> dict[str, dict]:
    """Every daily figure from the log, as the projector builds them one event at a time:
    {figure|day: {figure, day, value, position, contributions}}."""
    docs: dict[str, dict] = {}
    for entry in sorted(entries, key=lambda e: e.position):
        for c in contributions(entry):
            key = figure_day_id(c.figure, c.day)
            doc = docs.setdefault(key, {"figure": c.figure, "day": c.day.isoformat(),
                                        "contributions": [], "position": 0})
            doc["contributions"].append(stored_contribution(c))
            doc["position"] = c.position
    for doc in docs.values():
        doc["value"] = day_value(doc["figure"], doc["contributions"])
    return docs


# --- editions -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Table:
    """An edition's content: its rows, what each cell counted, and the events it read."""

    rows: list[dict]
    cells: dict[tuple[str, str], list[Contribution]]
    counted_events: list[Logged]

    @property
    def input_hash(self) -> str:
        return input_hash(self.counted_events)


def table(entries: Iterable[Logged], period: Period, log_position: int) -> Table:
    """The edition of `period` from the events logged up to `log_position`: a pure function
    of those events, the period and the definition."""
    cells: dict[tuple[str, str], list[Contribution]] = {
        (f.figure, col): [] for f in d.FIGURES for col in COLUMNS}
    counted: dict[str, Logged] = {}
    for entry in entries:
        if entry.position > log_position:
            continue
        for c in contributions(entry):
            if not period.action_start <= c.day <= period.cut_off:
                continue
            counted[entry.event_id] = entry
            cells[(c.figure, CUMULATIVE)].append(c)
            if c.day >= period.period_start:
                cells[(c.figure, PERIOD)].append(c)
    for items in cells.values():
        items.sort(key=lambda c: (c.position, c.figure, c.subject_id))
    rows = [{"figure": f.figure, "label": f.label, "unit": f.unit,
             "period_value": value(f.figure, cells[(f.figure, PERIOD)]),
             "cumulative_value": value(f.figure, cells[(f.figure, CUMULATIVE)])}
            for f in d.FIGURES]
    return Table(rows, cells, sorted(counted.values(), key=lambda e: e.position))


def input_hash(events: Iterable[Logged]) -> str:
    """SHA-256 over the events an edition counts: each one's id and the digest of its body,
    ordered by id, so the hash names the set of facts whatever order they were logged in."""
    lines = sorted(f"{e.event_id}\t{d.sha256_hex(d.canonical_json(e.body))}\n" for e in events)
    return d.sha256_hex("".join(lines))


def output_document(period: Period, rows: list[dict], definition_hash: str) -> dict:
    return {"definition_hash": definition_hash, "year": period.year, "number": period.number,
            "kind": period.kind, "period_start": period.period_start.isoformat(),
            "cut_off": period.cut_off.isoformat(),
            "rows": [[r["figure"], int(r["period_value"]), int(r["cumulative_value"])]
                     for r in rows]}


def output_hash(period: Period, rows: list[dict], definition_hash: str) -> str:
    return d.sha256_hex(d.canonical_json(output_document(period, rows, definition_hash)))


@dataclass(frozen=True)
class CellChange:
    figure: str
    column: str
    before: int
    after: int
    added: list[Contribution]
    removed: list[Contribution]

    def to_dict(self) -> dict:
        return {"figure": self.figure, "label": d.BY_KEY[self.figure].label,
                "column": self.column, "before": str(self.before), "after": str(self.after),
                "delta": str(self.after - self.before),
                "added": [c.to_dict() for c in self.added[:MAX_DIFF_EVENTS]],
                "removed": [c.to_dict() for c in self.removed[:MAX_DIFF_EVENTS]],
                "added_count": len(self.added), "removed_count": len(self.removed)}


def diff(before: Table, after: Table) -> list[CellChange]:
    """Every cell whose value or whose events differ, in the table's order, with the events
    counted in one edition and not in the other."""
    changes = []
    values_before = {(r["figure"], col): r[_field(col)] for r in before.rows for col in COLUMNS}
    values_after = {(r["figure"], col): r[_field(col)] for r in after.rows for col in COLUMNS}
    for f in d.FIGURES:
        for col in COLUMNS:
            cell = (f.figure, col)
            old = {c.key: c for c in before.cells.get(cell, [])}
            new = {c.key: c for c in after.cells.get(cell, [])}
            added = [c for k, c in new.items() if k not in old]
            removed = [c for k, c in old.items() if k not in new]
            b, a = int(values_before.get(cell, 0)), int(values_after.get(cell, 0))
            if a != b or added or removed:
                changes.append(CellChange(f.figure, col, b, a, added, removed))
    return changes


def _field(column: str) -> str:
    return "period_value" if column == PERIOD else "cumulative_value"
