"""`vocreg filing ...` and `vocreg register search`: filing (vocreg.filing.v1.FilingService), an
institution's record and the public register of filed institutions."""
from __future__ import annotations

from services.cli import output
from services.cli.commands import add_limit, add_output, bi, command, group
from services.cli.exits import Exit

SERVICE = "filing"


def register(subparsers) -> None:
    sub = group(subparsers, "filing", "备案: 机构档案、地区", "filing: institutions, areas")
    p = command(sub, "show", "查看一个已备案机构及其历史",
                "a filed institution with its history", run_show)
    p.add_argument("institution_id", metavar="ID",
                   help=bi("机构统一社会信用代码", "the institution's unified social credit code"))
    add_output(p)
    p = command(sub, "areas", "可备案的区县及其名额", "districts and counties with their quotas",
                run_areas)
    add_output(p)

    sub = group(subparsers, "register", "公开备案名录", "the public register of filed institutions")
    p = command(sub, "search", "按职业或区县查询备案名录",
                "search the register by occupation or district", run_search)
    p.add_argument("--occupation", metavar="CODE", help=bi("职业编码", "occupation code"))
    p.add_argument("--district", metavar="CODE", help=bi("区县代码", "district code"))
    add_limit(p)
    add_output(p)


def run_show(ctx, args) -> Exit:
    answer = ctx.api.call(SERVICE, "GetInstitution",
                          {"institution_id": args.institution_id.strip().upper()})
    output.emit_one(answer.get("institution", {}), args.output, title=args.institution_id,
                    stream=ctx.stdout)
    return Exit.OK


AREA_COLUMNS = [("district_code", "code 代码"), ("name", "name 名称"), ("kind", "kind 类型"),
                ("quota_per_occupation", "quota 每职业名额")]


def run_areas(ctx, args) -> Exit:
    records = list(ctx.api.pages(SERVICE, "ListAreas", {}, "areas", 0))
    output.emit_list(records, AREA_COLUMNS, args.output, title="区县 areas", stream=ctx.stdout)
    return Exit.OK


REGISTER_COLUMNS = [("receipt.filing_code", "filing code 备案编号"),
                    ("receipt.institution_name", "institution 机构"),
                    ("district_code", "district 区县"), ("status", "status 状态"),
                    ("receipt.filed_on", "filed 备案日期"),
                    ("receipt.valid_until", "valid until 有效期至")]


def run_search(ctx, args) -> Exit:
    request = {"occupation_code": args.occupation, "district_code": args.district}
    request = {k: v for k, v in request.items() if v}
    records = list(ctx.api.pages(SERVICE, "ListRegister", request, "entries", args.limit))
    output.emit_list(records, REGISTER_COLUMNS, args.output, title="备案名录 register",
                     stream=ctx.stdout)
    return Exit.OK
