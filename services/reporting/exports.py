"""The edition as files a ministry clerk opens: XLSX, PDF and CSV.

Each is a pure function of the stored edition: the same edition gives the same bytes, every
time, on every machine. What would vary is pinned: the XLSX's document properties carry the
edition's generation time (xlsxwriter otherwise stamps the current time) and its zip entries
xlsxwriter's fixed date; the PDF is written in reportlab's invariant mode (fixed creation
date and document id) with the built-in CID font STSong-Light (Adobe-GB1; no font file to
ship or embed: every PDF reader has it or a substitute for it); the CSV is UTF-8 with a byte
order mark (so Excel reads the Chinese labels) and CRLF line ends (RFC 4180).
"""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

from services.reporting.domain import definition as d
from services.reporting.domain.schedule import FINAL

XLSX, PDF, CSV = "EXPORT_FORMAT_XLSX", "EXPORT_FORMAT_PDF", "EXPORT_FORMAT_CSV"
FORMATS = (XLSX, PDF, CSV)
CONTENT_TYPES = {
    XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    PDF: "application/pdf",
    CSV: "text/csv; charset=utf-8",
}
EXTENSIONS = {XLSX: "xlsx", PDF: "pdf", CSV: "csv"}

TITLE_PROGRESS = "职业技能培训和评价问题专项治理行动进展情况表"
TITLE_FINAL = "职业技能培训和评价问题专项治理行动工作总结（数据表）"
HEADER = ("序号", "指标", "单位", "本期", "累计")
FONT = "STSong-Light"


def title(edition: dict) -> str:
    return TITLE_FINAL if edition["kind"] == FINAL else TITLE_PROGRESS


def subtitle(edition: dict) -> str:
    kind = "工作总结" if edition["kind"] == FINAL else f"第{edition['number']}期"
    return (f"{edition['year']}年{kind}　统计期间：{edition['period_start']} 至 "
            f"{edition['cut_off']}（累计自{edition['action_start']}）　报送期限：{edition['due_on']}")


def footer(edition: dict) -> list[str]:
    # Not its state: the file of an edition is the same before and after its submission.
    lines = [f"版本 {edition['edition_id']}（第{edition['revision']}稿）"
             f"　口径 {edition['definition_version']}（{edition['definition_hash'][:16]}）",
             f"输入 {edition['input_hash'][:16]}（{edition['event_count']} 条事件，"
             f"日志位置 {edition['log_position']}）",
             f"输出 SHA-256 {edition['output_sha256']}"]
    if edition.get("corrects_edition_id"):
        lines.append(f"更正 {edition['corrects_edition_id']}")
    return lines


def display(figure: str, value: int) -> str:
    """A cell as the clerk reads it: money in yuan with two decimals, counts as they are."""
    if d.BY_KEY[figure].money:
        sign = "-" if value < 0 else ""
        return f"{sign}{abs(value) // 100:,}.{abs(value) % 100:02d}"
    return f"{value:,}"


def plain(figure: str, value: int) -> str:
    """A cell for a program: counts as integers, money in yuan with two decimals, no
    thousands separators."""
    if d.BY_KEY[figure].money:
        sign = "-" if value < 0 else ""
        return f"{sign}{abs(value) // 100}.{abs(value) % 100:02d}"
    return str(value)


def filename(edition: dict, fmt: str) -> str:
    return f"vocreg-report-{edition['edition_id']}.{EXTENSIONS[fmt]}"


def render(edition: dict, fmt: str) -> bytes:
    return {XLSX: xlsx, PDF: pdf, CSV: csv_bytes}[fmt](edition)


def _created(edition: dict) -> datetime:
    created = edition["generated_at"]
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    # xlsxwriter writes the time as given (naive, read as UTC), to the second.
    return created.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0)


def xlsx(edition: dict) -> bytes:
    import xlsxwriter

    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True, "constant_memory": False})
    book.set_properties({"title": title(edition), "subject": edition["edition_id"],
                         "author": "vocreg", "company": "vocreg",
                         "comments": edition["output_sha256"], "created": _created(edition)})
    sheet = book.add_worksheet("进展情况表")
    bold = book.add_format({"bold": True, "font_size": 14, "font_name": "SimSun"})
    plain = book.add_format({"font_name": "SimSun"})
    head = book.add_format({"bold": True, "border": 1, "align": "center",
                            "font_name": "SimSun", "bg_color": "#DDDDDD"})
    cell = book.add_format({"border": 1, "font_name": "SimSun"})
    count = book.add_format({"border": 1, "num_format": "#,##0", "font_name": "SimSun"})
    money = book.add_format({"border": 1, "num_format": "#,##0.00", "font_name": "SimSun"})
    sheet.set_column(0, 0, 6)
    sheet.set_column(1, 1, 34)
    sheet.set_column(2, 2, 6)
    sheet.set_column(3, 4, 14)
    sheet.write(0, 0, title(edition), bold)
    sheet.write(1, 0, subtitle(edition), plain)
    sheet.write_row(3, 0, HEADER, head)
    for i, row in enumerate(edition["rows"]):
        r = 4 + i
        is_money = d.BY_KEY[row["figure"]].money
        sheet.write_number(r, 0, i + 1, cell)
        sheet.write_string(r, 1, row["label"], cell)
        sheet.write_string(r, 2, row["unit"], cell)
        for c, key in ((3, "period_value"), (4, "cumulative_value")):
            v = int(row[key])
            if is_money:
                sheet.write_number(r, c, v / 100, money)
            else:
                sheet.write_number(r, c, v, count)
    end = 4 + len(edition["rows"]) + 1
    for j, line in enumerate(footer(edition)):
        sheet.write(end + j, 0, line, plain)
    # The figure keys beside the table (hidden): a program reads the file by key, not label.
    sheet.write_string(3, 6, "figure", plain)
    for i, row in enumerate(edition["rows"]):
        sheet.write_string(4 + i, 6, row["figure"], plain)
    sheet.set_column(6, 6, 30, None, {"hidden": True})
    book.close()
    return out.getvalue()


def pdf(edition: dict) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, invariant=1, title=title(edition),
                            author="vocreg", subject=edition["edition_id"],
                            creator="vocreg reporting", producer="vocreg reporting",
                            leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm,
                            bottomMargin=16 * mm)
    heading = ParagraphStyle("title", fontName=FONT, fontSize=16, leading=22, alignment=1)
    small = ParagraphStyle("small", fontName=FONT, fontSize=8.5, leading=12)
    data = [list(HEADER)]
    for i, row in enumerate(edition["rows"]):
        data.append([str(i + 1), row["label"].strip(), row["unit"],
                     display(row["figure"], int(row["period_value"])),
                     display(row["figure"], int(row["cumulative_value"]))])
    grid = Table(data, colWidths=[12 * mm, 88 * mm, 14 * mm, 30 * mm, 30 * mm], repeatRows=1)
    grid.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, -1), FONT, 9.5),
        ("GRID", (0, 0), (-1, -1), 0.6, colors.black),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#DDDDDD")),
        ("ALIGN", (0, 0), (-1, 0), "CENTER"),
        ("ALIGN", (3, 1), (-1, -1), "RIGHT"),
        ("ALIGN", (0, 1), (0, -1), "CENTER"),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
    ]))
    story = [Paragraph(title(edition), heading), Spacer(1, 3 * mm),
             Paragraph(subtitle(edition), small), Spacer(1, 4 * mm), grid, Spacer(1, 5 * mm)]
    story += [Paragraph(line, small) for line in footer(edition)]
    doc.build(story)
    return out.getvalue()


def csv_bytes(edition: dict) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["edition_id", "figure", *HEADER])
    for i, row in enumerate(edition["rows"]):
        writer.writerow([edition["edition_id"], row["figure"], i + 1, row["label"].strip(),
                         row["unit"], plain(row["figure"], int(row["period_value"])),
                         plain(row["figure"], int(row["cumulative_value"]))])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
