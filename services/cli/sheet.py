"""The spreadsheets of an upload: read (XLSX through openpyxl, or CSV), its header row mapped to
the API's fields (English field names or the Chinese headers institutions use), and the result
file written beside it: every original row and column, plus certificate number, status and
reason.

Reading only: no rule is decided here. What a row must be is the certificate registry's rule
(services/certificates/domain.py check_row, on services/common/identifiers.py and
vocabulary.py), which the upload runs on each row before sending anything.
"""
from __future__ import annotations

import csv
import hashlib
import io
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from services.cli.exits import CliError, Exit
from services.common.vocabulary import SKILL_LEVELS

# field -> the headers that name it (compared after NFKC, lower case, no spaces: full-width
# brackets and stray spaces of a typed header do not matter).
HEADERS = {
    "row_ref": ("row_ref", "ref", "ticket", "准考证号", "准考证", "考号", "考生编号"),
    "holder_name": ("holder_name", "name", "姓名", "考生姓名", "持证人姓名"),
    "holder_id_number": ("holder_id_number", "id_number", "身份证号", "身份证号码",
                         "证件号码", "公民身份号码"),
    "occupation_code": ("occupation_code", "职业编码", "职业代码", "职业(工种)编码",
                        "职业(工种)代码"),
    "occupation_name": ("occupation_name", "职业名称", "职业(工种)名称", "职业", "职业(工种)"),
    "skill_level": ("skill_level", "level", "等级", "技能等级", "职业技能等级", "级别"),
}
REQUIRED = ("holder_name", "holder_id_number", "occupation_code", "skill_level")
RESULT_HEADERS = {"en": ("certificate_number", "status", "reason"),
                  "zh": ("证书编号", "状态", "原因")}
SUFFIXES = (".xlsx", ".csv")

# A level as a sheet writes it: 4, "4", "四级", "4级", "中级工", "四级/中级工".
_NUMERALS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5}
_NAMES_LONGEST_FIRST = sorted(SKILL_LEVELS.items(), key=lambda item: -len(item[1]))


def header_key(text) -> str:
    return "".join(unicodedata.normalize("NFKC", str(text or "")).lower().split())


_FIELD_BY_HEADER = {header_key(h): name for name, names in HEADERS.items() for h in names}


def parse_level(value) -> int:
    """The skill level a cell names (1-5), or 0 when it names none (the row check says so)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else 0
    text = unicodedata.normalize("NFKC", str(value or "")).strip()
    if text.isdigit():
        return int(text)
    for level, name in _NAMES_LONGEST_FIRST:  # 高级技师 before 技师
        if name in text:
            return level
    head = text.removesuffix("级")
    if head in _NUMERALS:
        return _NUMERALS[head]
    if head.isdigit():
        return int(head)
    return 0


def cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def _halfwidth(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


@dataclass
class Sheet:
    path: Path
    sha256: str
    header: list              # the header row as it is in the file
    header_line: int          # its line number in the sheet (1-based, as Excel shows it)
    rows: list = field(default_factory=list)   # each data row's cells, as read
    lines: list = field(default_factory=list)  # each data row's line number
    columns: dict = field(default_factory=dict)  # field -> column index

    @property
    def chinese(self) -> bool:
        return any(any("\u4e00" <= ch <= "\u9fff" for ch in str(h or "")) for h in self.header)

    def fields(self, i: int) -> tuple[dict, list[str]]:
        """Row i as the API's row (what the sheet says, before any rule) and what reading it
        found wrong that the rules cannot see (an ID number Excel stored as a number)."""
        cells = self.rows[i]

        def get(name):
            index = self.columns.get(name)
            return cells[index] if index is not None and index < len(cells) else None

        problems = []
        id_cell = get("holder_id_number")
        if isinstance(id_cell, float) and abs(id_cell) >= 1e15:
            problems.append("holder_id_number: stored as a number, so Excel kept only 15 "
                            "digits; format the column as text and type it again")
        # Codes typed with a Chinese input method come in full-width (４１０５…, ４－１０…):
        # the same characters once NFKC-normalised. Names are sent as typed.
        row = {"holder_name": cell_text(get("holder_name")),
               "holder_id_number": _halfwidth(cell_text(id_cell)),
               "occupation_code": _halfwidth(cell_text(get("occupation_code"))),
               "occupation_name": cell_text(get("occupation_name")),
               "skill_level": parse_level(get("skill_level")),
               "row_ref": cell_text(get("row_ref"))}
        return row, problems


def map_header(header: list) -> tuple[dict, list[str]]:
    columns, problems = {}, []
    for index, text in enumerate(header):
        name = _FIELD_BY_HEADER.get(header_key(text))
        if name is None:
            continue  # kept in the result file, not sent
        if name in columns:
            problems.append(f"two columns name {name}: {header[columns[name]]!r} and {text!r}")
        columns.setdefault(name, index)
    for name in REQUIRED:
        if name not in columns:
            problems.append(f"no column for {name} (headers it takes: "
                            f"{', '.join(HEADERS[name])})")
    return columns, problems


def _xlsx_rows(path: Path, sheet_name: str | None):
    from openpyxl import load_workbook  # noqa: PLC0415 (only uploads need it)

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zipfile.BadZipFile, KeyError, InvalidFileException...
        raise CliError(Exit.BAD_INPUT, f"{path} is not a readable XLSX workbook: {exc}") from None
    try:
        if sheet_name is not None and sheet_name not in workbook.sheetnames:
            raise CliError(Exit.BAD_INPUT, f"{path} has no sheet {sheet_name!r} "
                                           f"(sheets: {', '.join(workbook.sheetnames)})")
        sheet = workbook[sheet_name] if sheet_name else workbook.worksheets[0]
        return [list(row) for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()


def _csv_rows(data: bytes) -> list:
    # Excel saves "CSV UTF-8" with a BOM and plain "CSV" in the machine's code page: GB18030
    # (a superset of GBK) on a Chinese Windows.
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover (gb18030 decodes any byte string)
        raise CliError(Exit.BAD_INPUT, "the CSV file is neither UTF-8 nor GB18030")
    return [list(row) for row in csv.reader(io.StringIO(text, newline=""))]


def read(path: Path, sheet_name: str | None = None) -> Sheet:
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise CliError(Exit.BAD_INPUT, f"{path}: give an .xlsx or a .csv file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(Exit.BAD_INPUT, f"cannot read {path}: {exc.strerror}") from None
    raw = _xlsx_rows(path, sheet_name) if path.suffix.lower() == ".xlsx" else _csv_rows(data)
    blank = [all(cell_text(c) == "" for c in row) for row in raw]
    if all(blank):
        raise CliError(Exit.BAD_INPUT, f"{path} is empty: it needs a header row and rows")
    first = blank.index(False)
    # Every row as wide as the widest: the result's own columns then line up after them.
    width = max(max((i + 1 for i, c in enumerate(row) if cell_text(c) != ""), default=0)
                for row in raw)
    raw = [(list(row) + [None] * width)[:width] for row in raw]
    sheet = Sheet(path=path, sha256=hashlib.sha256(data).hexdigest(), header=raw[first],
                  header_line=first + 1)
    sheet.columns, problems = map_header([cell_text(h) for h in sheet.header])
    if problems:
        raise CliError(Exit.BAD_INPUT, f"{path}: the header row (line {first + 1}) does not "
                                       "name the columns an upload needs", problems)
    for offset, row in enumerate(raw[first + 1:], start=first + 2):
        if not blank[offset - 1]:
            sheet.rows.append(row)
            sheet.lines.append(offset)
    if not sheet.rows:
        raise CliError(Exit.BAD_INPUT, f"{path} has a header row but no rows")
    return sheet


def result_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.result{path.suffix.lower()}")


def write_result(sheet: Sheet, outcomes: list[tuple[str, str, str]], path: Path) -> Path:
    """Every row of the sheet as it was, plus (certificate number, status, reason); written
    to a temporary name first, so an interruption never leaves half a file."""
    extra = list(RESULT_HEADERS["zh" if sheet.chinese else "en"])
    header = list(sheet.header) + extra
    temporary = path.with_name(f".{path.name}.partial")
    if path.suffix == ".xlsx":
        from openpyxl import Workbook  # noqa: PLC0415

        book = Workbook(write_only=True)
        out = book.create_sheet("result")
        out.append(header)
        for cells, outcome in zip(sheet.rows, outcomes, strict=True):
            out.append(list(cells) + list(outcome))
        book.save(temporary)
    else:
        with open(temporary, "w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow([cell_text(h) for h in header])
            for cells, outcome in zip(sheet.rows, outcomes, strict=True):
                writer.writerow([cell_text(c) for c in cells] + list(outcome))
    temporary.replace(path)
    return path
