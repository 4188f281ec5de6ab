"""Reports: each a table, a server-rendered SVG bar chart and CSV / Excel exports of exactly the
rows shown (the same ``Report`` object feeds all four)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from html import escape
from typing import Any
from urllib.parse import quote

from aiohttp import web
from markupsafe import Markup
from openpyxl import Workbook
from openpyxl.styles import Font

from bot.keys import DB
from handlers.console.base import OFFICE_ROLES, institution_of, page, render, secure
from handlers.console.report_data import REPORTS, Report, build, default_range
from handlers.console.session import ConsoleSession
from scheduling import institutions

routes = web.RouteTableDef()
MAX_DAYS = 366


def _number(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.endswith("%"):
        try:
            return float(value[:-1])
        except ValueError:
            return 0.0
    return 0.0


def bar_chart(report: Report, width: int = 720) -> Markup:
    """A horizontal bar chart as inline SVG (no script, no external file)."""
    rows = report.rows[:30]
    if not rows:
        return Markup("")
    bar_height, gap, label_width = 22, 6, 200
    values = [_number(r[report.chart_value]) for r in rows]
    top = max(values) or 1.0
    height = len(rows) * (bar_height + gap) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" aria-label="{escape(report.title)}">']
    for index, (row, value) in enumerate(zip(rows, values, strict=True)):
        y = index * (bar_height + gap) + 5
        label = " · ".join(str(row[i]) for i in range(report.chart_value) if i != report.chart_value)
        length = (width - label_width - 80) * value / top
        parts.append(f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end" font-size="13">'
                     f'{escape(label[:24])}</text>')
        parts.append(f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height}" fill="#0b6e4f" '
                     f'rx="3"></rect>')
        parts.append(f'<text x="{label_width + length + 6:.1f}" y="{y + 16}" font-size="13">'
                     f'{escape(str(row[report.chart_value]))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _range(request: web.Request) -> tuple[dt.date, dt.date, str]:
    first, last = default_range()
    problem = ""
    try:
        if request.query.get("from"):
            first = dt.date.fromisoformat(request.query["from"])
        if request.query.get("to"):
            last = dt.date.fromisoformat(request.query["to"])
    except ValueError:
        problem = "日期格式应为 YYYY-MM-DD"
    if last < first:
        problem, (first, last) = "结束日期早于开始日期，已交换", (last, first)
    if (last - first).days > MAX_DAYS:
        problem, last = f"统计区间最长 {MAX_DAYS} 天，已截短", first + dt.timedelta(days=MAX_DAYS)
    return first, last, problem


def _filename(report: Report, institution: dict[str, Any], first: dt.date, last: dt.date, ext: str) -> str:
    name = f"{institution.get('name', institution['_id'])}-{report.title}-{first}-{last}.{ext}"
    return f"attachment; filename*=UTF-8''{quote(name)}"


def csv_bytes(report: Report) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(report.columns)
    writer.writerows(report.rows)
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")  # BOM: Excel opens UTF-8 CSV correctly


def xlsx_bytes(report: Report, heading: str) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = report.title[:31]
    sheet.append([heading])
    sheet["A1"].font = Font(bold=True)
    sheet.append(list(report.columns))
    for cell in sheet[2]:
        cell.font = Font(bold=True)
    for row in report.rows:
        sheet.append(list(row))
    for index, column in enumerate(report.columns, start=1):
        sheet.column_dimensions[sheet.cell(row=2, column=index).column_letter].width = max(12, len(column) * 2 + 4)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


@routes.get("/console/reports")
@page(*OFFICE_ROLES)
async def reports(request: web.Request, s: ConsoleSession) -> web.StreamResponse:
    db = request.app[DB]
    institution_id = institution_of(request, s)
    if institution_id is None:
        return await render(request, "pick_institution.html", {
            "title": "选择机构", "institutions": await institutions.list_institutions(db), "path": request.path},
            s=s, active="reports")
    institution = await institutions.get_institution(db, institution_id) or {"_id": institution_id}
    key = request.query.get("report") if request.query.get("report") in REPORTS else "service"
    first, last, problem = _range(request)
    report = await build(db, key, institution, first, last)
    heading = f"{institution.get('name', institution_id)} · {report.title} · {first} 至 {last}"
    export = request.query.get("format")
    if export == "csv":
        return secure(web.Response(body=csv_bytes(report), content_type="text/csv", charset="utf-8",
                                   headers={"Content-Disposition": _filename(report, institution, first, last, "csv")}))
    if export == "xlsx":
        return secure(web.Response(
            body=xlsx_bytes(report, heading),
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": _filename(report, institution, first, last, "xlsx")}))
    query = f"report={key}&from={first}&to={last}"
    if not s.member.institution_id:
        query += f"&institution={institution_id}"
    return await render(request, "reports.html", {
        "title": "统计报表", "report": report, "reports": REPORTS, "key": key, "first": first.isoformat(),
        "last": last.isoformat(), "problem": problem, "chart": bar_chart(report), "heading": heading,
        "query": query, "institution_param": "" if s.member.institution_id else institution_id,
    }, s=s, active="reports")
