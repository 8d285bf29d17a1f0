"""`vocreg log ...`: the public, tamper-evident log of published decisions
(vocreg.transparency.v1.TransparencyLogService): its signed head and its entries."""
from __future__ import annotations

import base64

from services.cli import output
from services.cli.commands import add_limit, add_output, bi, command, group
from services.cli.exits import Exit

SERVICE = "transparency"


def register(subparsers) -> None:
    sub = group(subparsers, "log", "公开决定日志 (防篡改): 签名树头与条目",
                "the tamper-evident log of published decisions: head and entries")
    p = command(sub, "head", "当前签名树头 (公开)", "the current signed tree head (public)",
                run_head)
    add_output(p)
    p = command(sub, "entries", "日志条目, 可按对象筛选 (公开)",
                "the log's entries, by subject (public)", run_entries)
    p.add_argument("--subject", metavar="ID",
                   help=bi("对象, 如机构统一社会信用代码", "a subject, e.g. an institution's credit code"))
    add_limit(p)
    add_output(p)


def _hex(value: str) -> str:
    """bytes fields come as base64 in the JSON mapping; hashes read better in hex."""
    try:
        return base64.b64decode(value).hex()
    except ValueError:
        return value


def run_head(ctx, args) -> Exit:
    answer = ctx.api.call(SERVICE, "GetLogHead", {})
    if args.output != "json":
        head = answer.get("head", {})
        for key in ("root_hash", "log_id", "signature"):
            if head.get(key):
                head[key] = _hex(head[key])
    output.emit_one(answer, args.output, title="日志树头 log head", stream=ctx.stdout)
    return Exit.OK


ENTRY_COLUMNS = [("leaf_index", "index 序号"), ("kind", "kind 类型"),
                 ("subjects", "subjects 对象"), ("entry_json", "entry 内容")]


def run_entries(ctx, args) -> Exit:
    request = {"subject": args.subject} if args.subject else {}
    records = list(ctx.api.pages(SERVICE, "ListLogEntries", request, "entries", args.limit))
    output.emit_list(records, ENTRY_COLUMNS, args.output, title="日志条目 log entries",
                     stream=ctx.stdout)
    return Exit.OK
