"""`vocreg grades ...`: integrity grading (vocreg.grading.v1.GradingService): the published
grades, one institution's grade with its explanation, the red and black lists and the
integrity file."""
from __future__ import annotations

from services.cli import output
from services.cli.commands import add_limit, add_output, bi, command, enum_choices, group
from services.cli.exits import Exit

SERVICE = "grading"


def register(subparsers) -> None:
    sub = group(subparsers, "grades", "诚信等级: 等级、红黑名单、诚信档案",
                "integrity grades: grades, red and black lists, integrity file")
    p = command(sub, "list", "已公布的等级 (公开)", "published grades (public)", run_list)
    p.add_argument("--year", type=int, help=bi("评级年度", "grading year"))
    p.add_argument("--grade", choices=sorted(enum_choices(SERVICE, "Grade")),
                   help=bi("等级", "grade"))
    _district(p)
    add_limit(p)
    add_output(p)
    p = command(sub, "show", "一个机构某年度的等级及其说明 (公开)",
                "an institution's grade for a year, explained (public)", run_show)
    p.add_argument("institution_id", metavar="ID",
                   help=bi("机构统一社会信用代码", "institution's credit code"))
    p.add_argument("--year", type=int, required=True, help=bi("评级年度", "grading year"))
    add_output(p)
    p = command(sub, "red-list", "红名单 (公开)", "the red list (public)", run_red)
    p.add_argument("--year", type=int, help=bi("年度 (默认全部)", "year (default: every year)"))
    _district(p)
    add_limit(p)
    add_output(p)
    p = command(sub, "black-list", "黑名单 (公开)", "the black list (public)", run_black)
    _district(p)
    add_limit(p)
    add_output(p)
    p = command(sub, "file", "机构诚信档案 (公众只看到已公布部分)",
                "an institution's integrity file (the public sees what is published)", run_file)
    p.add_argument("institution_id", metavar="ID",
                   help=bi("机构统一社会信用代码", "institution's credit code"))
    add_output(p)


def _district(p) -> None:
    p.add_argument("--district", metavar="CODE", help=bi("区县代码", "district code"))


GRADE_COLUMNS = [("institution_id", "institution 机构"), ("year", "year 年度"),
                 ("grade", "grade 等级"), ("score_centipoints", "score 分(×100)"),
                 ("district_code", "district 区县"), ("published_on", "published 公布"),
                 ("revision", "revision 修订")]


def run_list(ctx, args) -> Exit:
    request = {"year": args.year, "district_code": args.district}
    if args.grade:
        request["grade"] = enum_choices(SERVICE, "Grade")[args.grade]
    request = {k: v for k, v in request.items() if v}
    records = list(ctx.api.pages(SERVICE, "ListGrades", request, "grades", args.limit))
    output.emit_list(records, GRADE_COLUMNS, args.output, title="诚信等级 grades",
                     stream=ctx.stdout)
    return Exit.OK


def run_show(ctx, args) -> Exit:
    request = {"institution_id": args.institution_id.strip().upper(), "year": args.year}
    answer = ctx.api.call(SERVICE, "GetGrade", {k: v for k, v in request.items() if v})
    output.emit_one(answer.get("grade", {}), args.output, title=args.institution_id,
                    stream=ctx.stdout)
    return Exit.OK


RED_COLUMNS = [("institution_id", "institution 机构"), ("year", "year 年度"),
               ("district_code", "district 区县"), ("listed_on", "listed 列入"),
               ("state", "state 状态"), ("incentives", "incentives 激励")]
BLACK_COLUMNS = [("institution_id", "institution 机构"), ("summary", "summary 事由"),
                 ("basis", "basis 依据"), ("listed_on", "listed 列入"),
                 ("publish_until", "until 公示至"), ("state", "state 状态")]


def run_red(ctx, args) -> Exit:
    request = {k: v for k, v in {"year": args.year, "district_code": args.district}.items() if v}
    records = list(ctx.api.pages(SERVICE, "ListRedList", request, "entries", args.limit))
    output.emit_list(records, RED_COLUMNS, args.output, title="红名单 red list",
                     stream=ctx.stdout)
    return Exit.OK


def run_black(ctx, args) -> Exit:
    request = {"district_code": args.district} if args.district else {}
    records = list(ctx.api.pages(SERVICE, "ListBlackList", request, "entries", args.limit))
    output.emit_list(records, BLACK_COLUMNS, args.output, title="黑名单 black list",
                     stream=ctx.stdout)
    return Exit.OK


FILE_COLUMNS = [("recorded_on", "date 日期"), ("kind", "kind 类型"), ("summary", "summary 摘要"),
                ("basis", "basis 依据"), ("source_service", "source 来源"),
                ("published", "published 公开")]


def run_file(ctx, args) -> Exit:
    answer = ctx.api.call(SERVICE, "GetIntegrityFile",
                          {"institution_id": args.institution_id.strip().upper()})
    if args.output == "json":
        output.emit_one(answer, "json", stream=ctx.stdout)
    else:
        output.emit_list(answer.get("entries", []), FILE_COLUMNS, args.output,
                         title=f"诚信档案 integrity file {answer.get('institution_id', '')}",
                         stream=ctx.stdout)
    return Exit.OK
