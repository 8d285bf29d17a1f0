"""`vocreg cases ...` and `vocreg inspection results`: inspection (vocreg.inspection.v1.
InspectionService), the cases an officer or an institution follows and the published results
anyone may read."""
from __future__ import annotations

from services.cli import output
from services.cli.commands import add_limit, add_output, bi, command, enum_choices, group
from services.cli.exits import Exit

SERVICE = "inspection"


def register(subparsers) -> None:
    sub = group(subparsers, "cases", "检查案件: 列表与详情", "inspection cases: list and show")
    p = command(sub, "list", "按条件列出案件 (机构只看到自己的)",
                "cases by filters (an institution sees its own)", run_list)
    p.add_argument("--state", choices=sorted(enum_choices(SERVICE, "CaseState")),
                   help=bi("案件状态", "the case's state"))
    p.add_argument("--outcome", choices=sorted(enum_choices(SERVICE, "CaseOutcome")),
                   help=bi("案件结果", "an outcome the case ended in"))
    p.add_argument("--kind", choices=sorted(enum_choices(SERVICE, "InspectionKind")),
                   help=bi("检查类型", "kind of inspection"))
    p.add_argument("--institution", metavar="CODE",
                   help=bi("机构统一社会信用代码", "institution's credit code"))
    add_limit(p)
    add_output(p)
    p = command(sub, "show", "查看一个案件的全部信息", "one case in full", run_show)
    p.add_argument("case_id", metavar="CASE_ID", help=bi("案件编号", "the case's id"))
    add_output(p)

    sub = group(subparsers, "inspection", "监督检查: 公开的检查结果",
                "inspections: the published results")
    p = command(sub, "results", "公开的检查结果 (公开)", "published inspection results (public)",
                run_results)
    p.add_argument("--institution", metavar="CODE",
                   help=bi("机构统一社会信用代码", "institution's credit code"))
    p.add_argument("--kind", choices=sorted(enum_choices(SERVICE, "InspectionKind")),
                   help=bi("检查类型", "kind of inspection"))
    add_limit(p)
    add_output(p)


CASE_COLUMNS = [("case_id", "case 案件"), ("subject_name", "subject 对象"),
                ("institution_id", "institution 机构"), ("kind", "kind 类型"),
                ("origin", "origin 来源"), ("state", "state 状态"), ("opened_on", "opened 立案"),
                ("proposed_tier", "tier 档次")]


def run_list(ctx, args) -> Exit:
    request = {"institution_id": args.institution}
    for flag, enum, field in (("state", "CaseState", "state"),
                              ("outcome", "CaseOutcome", "outcome"),
                              ("kind", "InspectionKind", "kind")):
        value = getattr(args, flag)
        if value:
            request[field] = enum_choices(SERVICE, enum)[value]
    request = {k: v for k, v in request.items() if v}
    records = list(ctx.api.pages(SERVICE, "ListCases", request, "cases", args.limit))
    output.emit_list(records, CASE_COLUMNS, args.output, title="案件 cases", stream=ctx.stdout)
    return Exit.OK


def run_show(ctx, args) -> Exit:
    answer = ctx.api.call(SERVICE, "GetCase", {"case_id": args.case_id.strip()})
    output.emit_one(answer.get("case", {}), args.output, title=args.case_id, stream=ctx.stdout)
    return Exit.OK


RESULT_COLUMNS = [("case_id", "case 案件"), ("subject_name", "subject 对象"),
                  ("kind", "kind 类型"), ("result_on", "date 日期"), ("tier", "tier 档次"),
                  ("decision_summary", "decision 决定")]


def run_results(ctx, args) -> Exit:
    request = {"institution_id": args.institution}
    if args.kind:
        request["kind"] = enum_choices(SERVICE, "InspectionKind")[args.kind]
    request = {k: v for k, v in request.items() if v}
    records = list(ctx.api.pages(SERVICE, "ListPublishedResults", request, "results", args.limit))
    output.emit_list(records, RESULT_COLUMNS, args.output, title="检查结果 inspection results",
                     stream=ctx.stdout)
    return Exit.OK
