"""`vocreg refunds ...` and `vocreg escrow ...`: prepaid-fee escrow (vocreg.escrow.v1.
EscrowService): the refund figures of any period, refund complaints, filed schemes and an
institution's custody. Amounts are integer fen, as the API gives them (`refunded_fen`); the
refund figures carry yuan too, and custody's table shows yuan beside each amount."""
from __future__ import annotations

from services.cli import output
from services.cli.commands import add_limit, add_output, bi, command, enum_choices, group
from services.cli.exits import Exit

SERVICE = "escrow"


def register(subparsers) -> None:
    sub = group(subparsers, "refunds", "预付费退费: 统计与投诉", "prepaid-fee refunds: figures and complaints")
    p = command(sub, "stats", "某期间收到和办结的退费投诉及退费金额 (公开)",
                "refund complaints received and resolved, and the amount refunded, in a "
                "period (public)", run_stats)
    p.add_argument("--from", dest="date_from", required=True, metavar="YYYY-MM-DD",
                   help=bi("起始日期 (含)", "from (inclusive)"))
    p.add_argument("--to", dest="date_to", required=True, metavar="YYYY-MM-DD",
                   help=bi("截止日期 (含)", "to (inclusive)"))
    p.add_argument("--institution", metavar="CODE",
                   help=bi("机构统一社会信用代码", "institution's credit code"))
    p.add_argument("--district", metavar="CODE", help=bi("区县代码", "district code"))
    p.add_argument("--as-of", metavar="TIME",
                   help=bi("按某一时刻的数据 (可复现)", "as the data stood at this time (repeatable)"))
    p.add_argument("--ids", action="store_true",
                   help=bi("列出计入的投诉和转账编号", "list the ids the figures were summed from"))
    add_output(p)
    p = command(sub, "complaints", "退费投诉列表 (机构、学员只看到自己的)",
                "refund complaints (an institution or a trainee sees its own)", run_complaints)
    p.add_argument("--institution", metavar="CODE",
                   help=bi("机构统一社会信用代码", "institution's credit code"))
    p.add_argument("--state", choices=sorted(enum_choices(SERVICE, "ComplaintState")),
                   help=bi("投诉状态", "the complaint's state"))
    add_limit(p)
    add_output(p)

    sub = group(subparsers, "escrow", "资金监管: 收费方案与监管账户",
                "fee custody: schemes and custody accounts")
    p = command(sub, "schemes", "已备案的预收费方案 (公开)", "filed prepaid-fee schemes (public)",
                run_schemes)
    p.add_argument("--institution", metavar="CODE",
                   help=bi("机构统一社会信用代码", "institution's credit code"))
    add_limit(p)
    add_output(p)
    p = command(sub, "custody", "一个机构的监管资金概况", "an institution's custody", run_custody)
    p.add_argument("institution_id", metavar="ID",
                   help=bi("机构统一社会信用代码", "institution's credit code"))
    add_output(p)


def yuan(fen) -> str:
    fen = int(fen or 0)
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def run_stats(ctx, args) -> Exit:
    request = {"from": args.date_from, "to": args.date_to, "institution_id": args.institution,
               "district_code": args.district, "as_of": args.as_of, "include_ids": args.ids}
    answer = ctx.api.call(SERVICE, "GetRefundStatistics",
                          {k: v for k, v in request.items() if v})
    output.emit_one(answer, args.output, title=f"退费统计 refunds {args.date_from} – {args.date_to}",
                    stream=ctx.stdout)
    return Exit.OK


COMPLAINT_COLUMNS = [("complaint_id", "complaint 投诉"), ("institution_id", "institution 机构"),
                     ("filed_on", "filed 受理"), ("state", "state 状态"),
                     ("refunded_fen", "refunded 退费(分)"), ("resolved_on", "resolved 办结")]


def run_complaints(ctx, args) -> Exit:
    request = {"institution_id": args.institution}
    if args.state:
        request["state"] = enum_choices(SERVICE, "ComplaintState")[args.state]
    request = {k: v for k, v in request.items() if v}
    records = list(ctx.api.pages(SERVICE, "ListComplaints", request, "complaints", args.limit))
    output.emit_list(records, COMPLAINT_COLUMNS, args.output, title="退费投诉 complaints",
                     stream=ctx.stdout)
    return Exit.OK


SCHEME_COLUMNS = [("scheme_code", "code 编号"), ("name", "name 名称"),
                  ("institution_id", "institution 机构"), ("class_hours", "hours 课时"),
                  ("price_per_hour_fen", "price/hour 每课时(分)"), ("valid_from", "from 起"),
                  ("valid_until", "until 止")]


def run_schemes(ctx, args) -> Exit:
    request = {"institution_id": args.institution} if args.institution else {}
    records = list(ctx.api.pages(SERVICE, "ListSchemes", request, "schemes", args.limit))
    output.emit_list(records, SCHEME_COLUMNS, args.output, title="收费方案 schemes",
                     stream=ctx.stdout)
    return Exit.OK


def run_custody(ctx, args) -> Exit:
    answer = ctx.api.call(SERVICE, "GetCustodySummary",
                          {"institution_id": args.institution_id.strip().upper()})
    summary = answer.get("summary", {})
    if args.output == "table":  # yuan beside each fen amount, for a person
        summary = {k: (f"{v} ({yuan(v)} 元)" if k.endswith("_fen") else v)
                   for k, v in summary.items()}
    output.emit_one(summary, args.output, title=args.institution_id, stream=ctx.stdout)
    return Exit.OK
