"""`vocreg certificates ...`: the certificate registry (vocreg.certificates.v1.CertificateRegistry):
upload an exam session's results from a spreadsheet, verify, show, list and count."""
from __future__ import annotations

from pathlib import Path

from services.cli import output, upload
from services.cli import sheet as sheets
from services.cli.commands import add_limit, add_output, bi, command, group
from services.cli.exits import Exit

SERVICE = "certificates"

UPLOAD_EPILOG = """\
表头 / headers (中文或英文 / Chinese or English):
  姓名 holder_name · 身份证号 holder_id_number · 职业编码 occupation_code ·
  职业名称 occupation_name (可选 optional) · 等级 skill_level (1-5 或 or 中级工…) ·
  准考证号 row_ref (可选 optional)
每行先在本地检查, 有错误的行全部列出且不发送任何数据 (--skip-invalid 只发送正确的行)。
Every row is checked here first; bad rows are all listed and nothing is sent (--skip-invalid
sends the good ones). Interrupted (Ctrl-C)? Run the same command again: finished batches are
skipped and a batch sent again issues nothing twice. Result file: NAME.result.xlsx|csv."""

STATUSES = {"valid": "CERTIFICATE_STATUS_VALID", "invalidated": "CERTIFICATE_STATUS_INVALIDATED",
            "withdrawn": "CERTIFICATE_STATUS_WITHDRAWN"}


def register(subparsers) -> None:
    sub = group(subparsers, "certificates", "职业技能等级证书: 上传、核验、查询、统计",
                "skills certificates: upload, verify, show, list, stats")

    p = command(sub, "upload", "从 Excel/CSV 上传一个考试场次的证书结果",
                "upload an exam session's results from an XLSX or CSV sheet", run_upload,
                epilog=UPLOAD_EPILOG)
    p.add_argument("file", metavar="FILE", help=bi("XLSX 或 CSV 文件", "the .xlsx or .csv file"))
    p.add_argument("--session", required=True,
                   help=bi("考试场次编号", "the exam session's id") + " (A-Z a-z 0-9 . _ : -)")
    p.add_argument("--assessment-date", required=True, metavar="YYYY-MM-DD",
                   help=bi("认定(考核)日期", "date of the assessment"))
    p.add_argument("--sheet", help=bi("工作表名称 (默认第一个)", "worksheet (default: the first)"))
    p.add_argument("--batch-rows", type=int, default=upload.DEFAULT_BATCH_ROWS, metavar="N",
                   help=bi(f"每批行数 (默认 {upload.DEFAULT_BATCH_ROWS})",
                           f"rows per request (default {upload.DEFAULT_BATCH_ROWS}, at most 10000)"))
    p.add_argument("--skip-invalid", action="store_true",
                   help=bi("跳过本地检查未通过的行, 只发送正确的行",
                           "send the rows that pass the local checks, skip the others"))
    p.add_argument("--check", action="store_true",
                   help=bi("只做本地检查, 不发送", "check the rows only, send nothing"))
    p.add_argument("--progress", choices=("auto", "bar", "plain", "none"), default="auto",
                   help=bi("进度显示: 进度条、逐批一行或不显示",
                           "progress: a bar (terminal), a line per batch, or none"))
    p.add_argument("--retry-for", type=float, default=120.0, metavar="SECONDS",
                   help=bi("平台暂不可用时重试多久 (默认 120 秒)",
                           "how long to keep retrying a batch while the platform is away"))

    p = command(sub, "verify", "按证书编号和持证人姓名核验证书 (公开, 结果脱敏)",
                "verify a certificate by number and holder name (public, masked)", run_verify)
    p.add_argument("number", metavar="NUMBER", help=bi("证书编号", "certificate number"))
    p.add_argument("name", metavar="NAME", help=bi("持证人姓名", "holder's name"))
    add_output(p)

    p = command(sub, "show", "查看一张证书的全部信息", "one certificate in full", run_show)
    p.add_argument("number", metavar="NUMBER", help=bi("证书编号", "certificate number"))
    add_output(p)

    p = command(sub, "list", "按条件列出证书", "certificates by filters", run_list)
    _filters(p)
    p.add_argument("--session", help=bi("考试场次编号", "exam session id"))
    p.add_argument("--status", choices=sorted(STATUSES), help=bi("证书状态", "status"))
    p.add_argument("--holder-id-number", metavar="ID", help=bi("持证人身份证号", "holder's ID number"))
    add_limit(p)
    add_output(p)

    p = command(sub, "stats", "按机构、职业、等级统计发证数量",
                "counts per institution, occupation and level", run_stats)
    _filters(p)
    add_output(p)


def _filters(p) -> None:
    p.add_argument("--institution", metavar="CODE",
                   help=bi("机构统一社会信用代码", "institution's credit code"))
    p.add_argument("--occupation", metavar="CODE", help=bi("职业编码", "occupation code"))
    p.add_argument("--level", type=int, choices=range(1, 6), metavar="1-5",
                   help=bi("技能等级", "skill level"))
    p.add_argument("--from", dest="issued_from", metavar="YYYY-MM-DD",
                   help=bi("发证日期起 (含)", "issued from (inclusive)"))
    p.add_argument("--to", dest="issued_to", metavar="YYYY-MM-DD",
                   help=bi("发证日期止 (含)", "issued to (inclusive)"))


def _filter_request(args) -> dict:
    request = {"institution_id": args.institution, "occupation_code": args.occupation,
               "skill_level": args.level, "issued_from": args.issued_from,
               "issued_to": args.issued_to}
    return {k: v for k, v in request.items() if v not in (None, "")}


def run_upload(ctx, args) -> Exit:
    path = Path(args.file)
    sheet = sheets.read(path, args.sheet)
    plan = upload.make_plan(sheet, args.session, args.assessment_date, args.batch_rows,
                            args.skip_invalid, upload.today())
    console = ctx.console
    console.print(f"{path.name}: {len(sheet.rows)} rows, {len(plan.rows)} pass the checks, "
                  f"{len(plan.invalid)} do not", markup=False)
    if plan.invalid:
        upload.show_invalid(plan, console)
        if args.check or not args.skip_invalid:
            console.print("nothing was sent · 未发送任何数据: correct these rows and run it "
                          "again, or add --skip-invalid to send the others", markup=False)
            return Exit.BAD_INPUT
    if args.check:
        console.print("every row passes the local checks · 全部通过本地检查 (--check: nothing "
                      "sent)", markup=False)
        return Exit.OK
    outcome = upload.upload(ctx.api, plan, console, args.progress, args.retry_for)
    c = outcome.counts
    console.print(f"done · 完成: rows {c.rows} · issued {c.issued} · duplicate {c.duplicate} · "
                  f"rejected {c.rejected} · not sent (invalid) {outcome.invalid}", markup=False)
    console.print(f"result · 结果文件: {outcome.result_file}", markup=False)
    return outcome.exit_code


def run_verify(ctx, args) -> Exit:
    answer = ctx.api.call(SERVICE, "VerifyCertificate", {
        "certificate_number": args.number.strip().upper(), "holder_name": args.name})
    output.emit_one(answer, args.output, title="证书核验 certificate verification",
                    stream=ctx.stdout)
    result = answer.get("result", "")
    if result == "VERIFICATION_RESULT_VALID":
        return Exit.OK
    if result == "VERIFICATION_RESULT_NOT_FOUND":
        return Exit.NOT_FOUND
    return Exit.NOT_VALID


def run_show(ctx, args) -> Exit:
    answer = ctx.api.call(SERVICE, "GetCertificate",
                          {"certificate_number": args.number.strip().upper()})
    output.emit_one(answer.get("certificate", {}), args.output, title=args.number,
                    stream=ctx.stdout)
    return Exit.OK


LIST_COLUMNS = [("certificate_number", "number 编号"), ("holder_name", "name 姓名"),
                ("occupation_code", "occupation 职业"), ("skill_level", "level 等级"),
                ("exam_session_id", "session 场次"), ("issued_on", "issued 发证日期"),
                ("status", "status 状态"), ("institution_id", "institution 机构")]


def run_list(ctx, args) -> Exit:
    request = _filter_request(args)
    if args.session:
        request["exam_session_id"] = args.session
    if args.status:
        request["status"] = STATUSES[args.status]
    if args.holder_id_number:
        request["holder_id_number"] = args.holder_id_number.strip().upper()
    records = list(ctx.api.pages(SERVICE, "ListCertificates", request, "certificates",
                                 args.limit))
    output.emit_list(records, LIST_COLUMNS, args.output, title="证书 certificates",
                     stream=ctx.stdout)
    return Exit.OK


STATS_COLUMNS = [("institution_id", "institution 机构"), ("occupation_code", "occupation 职业"),
                 ("skill_level", "level 等级"), ("issued_count", "issued 发证"),
                 ("valid_count", "valid 有效"), ("invalidated_count", "invalidated 作废"),
                 ("withdrawn_count", "withdrawn 撤销"), ("late_reported_count", "late 迟报")]


def run_stats(ctx, args) -> Exit:
    answer = ctx.api.call(SERVICE, "GetIssuanceStats", _filter_request(args))
    if args.output == "json":
        output.emit_one(answer, "json", stream=ctx.stdout)
    else:
        output.emit_list(answer.get("stats", []), STATS_COLUMNS, args.output,
                         title=f"发证统计 issuance: {answer.get('issued_count', 0)}",
                         stream=ctx.stdout)
    return Exit.OK
