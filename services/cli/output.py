"""Answers printed as `--output table` (for people), `json` (the API's own dicts, for jq) or
`csv` (one header row, for a spreadsheet or a script)."""
from __future__ import annotations

import csv
import json
import os
import sys
from functools import cache

from rich.console import Console
from rich.table import Table

from services.common.spec import registry

FORMATS = ("table", "json", "csv")
# Off a terminal (a pipe, a file, a pager) a table is as wide as this instead of rich's 80.
PIPE_WIDTH = 160


@cache
def _enum_short_names() -> dict[str, str]:
    """Every enum value of the declared services' protos -> its name without the enum's prefix
    (CERTIFICATE_STATUS_VALID -> VALID): what a table shows; JSON and CSV keep the API's."""
    from services.common.protos import service_proto

    short = {}

    def collect(enums):
        for enum in enums:
            names = [v.name for v in enum.values]
            prefix = os.path.commonprefix(names)
            prefix = prefix[:prefix.rfind("_") + 1] if len(names) > 1 else ""
            for name in names:
                short[name] = name[len(prefix):] or name

    def walk(messages):
        for message in messages:
            collect(message.enum_types)
            walk(message.nested_types)

    for name in registry():
        proto = service_proto(name)
        for module in filter(None, (proto.messages, proto.events)):
            collect(module.DESCRIPTOR.enum_types_by_name.values())
            walk(module.DESCRIPTOR.message_types_by_name.values())
    return short


def console_for(stream) -> Console:
    console = Console(file=stream, soft_wrap=False, highlight=False)
    if not console.is_terminal:
        console = Console(file=stream, soft_wrap=False, highlight=False, width=PIPE_WIDTH)
    return console


def flatten(value, prefix: str = "") -> dict:
    """A nested answer as one level: `receipt.filing_code`, `scope[0].skill_levels` (lists of
    plain values joined with commas)."""
    flat: dict = {}
    if isinstance(value, dict):
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}.{key}" if prefix else key))
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        for i, inner in enumerate(value):
            flat.update(flatten(inner, f"{prefix}[{i}]"))
    elif isinstance(value, list):
        flat[prefix] = ",".join(str(v) for v in value)
    else:
        flat[prefix] = value
    return flat


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _shown(value) -> str:
    """A table's cell: enum values without their prefix."""
    if isinstance(value, str):
        return _enum_short_names().get(value, value)
    return _cell(value)


def _empty(value) -> bool:
    return value in (None, "", [], {}) or (isinstance(value, str) and value.endswith("_UNSPECIFIED"))


def pick(record: dict, column: str):
    """A column of a record: a dotted path into it."""
    value = record
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def emit_list(records: list[dict], columns: list[tuple[str, str]], fmt: str,
              title: str = "", stream=None) -> None:
    """`columns`: (path into the record, header). JSON prints the records whole."""
    stream = stream or sys.stdout
    if fmt == "json":
        json.dump(records, stream, ensure_ascii=False, indent=2)
        stream.write("\n")
    elif fmt == "csv":
        writer = csv.writer(stream)
        writer.writerow([header for _, header in columns])
        for record in records:
            writer.writerow([_cell(pick(record, path)) for path, _ in columns])
    else:
        table = Table(title=title or None, show_lines=False)
        for _, header in columns:
            table.add_column(header, overflow="fold")
        for record in records:
            table.add_row(*(_shown(pick(record, path)) for path, _ in columns))
        console = console_for(stream)
        console.print(table)
        console.print(f"{len(records)} rows · {len(records)} 条", markup=False)


def emit_one(record: dict, fmt: str, title: str = "", stream=None) -> None:
    """One record: JSON whole; a CSV of one row (flattened); a table of field and value."""
    stream = stream or sys.stdout
    if fmt == "json":
        json.dump(record, stream, ensure_ascii=False, indent=2)
        stream.write("\n")
        return
    flat = flatten(record)
    if fmt == "csv":
        writer = csv.writer(stream)
        writer.writerow(list(flat))
        writer.writerow([_cell(v) for v in flat.values()])
        return
    table = Table(title=title or None, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in flat.items():
        if not _empty(value):  # zeros and unset fields: JSON and CSV show them
            table.add_row(key, _shown(value))
    console_for(stream).print(table)
