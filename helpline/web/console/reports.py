"""The admins' reports: counts per day as a page of charts and tables, and as CSV."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta

from flask import Response, render_template, request
from markupsafe import Markup

from helpline.reports import summary, tally
from helpline.web.console import bp
from helpline.web.console.auth import admin_required
from helpline.web.console.chart import column_chart, row_chart
from helpline.web.services import helpline

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class BadRange(ValueError):
    """The dates asked for cannot be reported on; the message says why, to the admin."""


def asked_range(args: Mapping[str, str], today: date) -> tuple[date, date]:
    """Return (first, last) day from ?from= and ?to=; default the last DEFAULT_DAYS days."""

    def day(name: str, default: date) -> date:
        raw = args.get(name, "").strip()
        if not raw:
            return default
        if not _DATE.match(raw):
            raise BadRange(f"'{name}' must be a date written as YYYY-MM-DD, e.g. 2026-01-31.")
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise BadRange(f"'{name}' is not a date on the calendar: {raw}.") from None

    last = day("to", today)
    first = day("from", last - timedelta(summary.DEFAULT_DAYS - 1))
    if first > last:
        raise BadRange("'from' must not be after 'to'.")
    if (last - first).days + 1 > summary.MAX_DAYS:
        raise BadRange(f"A report covers at most {summary.MAX_DAYS} days; choose a shorter range.")
    return first, last


def _today() -> date:
    return tally.local_day(helpline().zone, datetime.now(helpline().zone))


def _chart(table: summary.Table) -> Markup:
    if table.by_day:
        series = [
            (name, [float(summary.visible(row.values[i])) for row in table.rows])
            for i, name in enumerate(table.columns)
        ]
        return column_chart([row.label for row in table.rows], series, unit="count")
    return row_chart([(row.label, float(summary.visible(row.values[0]))) for row in table.rows])


def _drawn(value: float | None) -> float:
    """A wait as a column is drawn: none for too few, the last bucket for longer."""
    if value is None:
        return 0.0
    return min(value, float(tally.WAIT_BUCKETS[-1]))


def _wait_chart(waits: list[summary.Waits]) -> Markup:
    labels = [w.label for w in waits]
    series = [
        ("90th percentile", [_drawn(w.p90) for w in waits]),
        ("Median", [_drawn(w.median) for w in waits]),
    ]
    return column_chart(labels, series, unit="minutes", stacked=False)


@bp.get("/admin/reports")
@admin_required
def reports_page() -> tuple[str, int] | str:
    today = _today()
    try:
        first, last = asked_range(request.args, today)
    except BadRange as exc:
        default = today - timedelta(summary.DEFAULT_DAYS - 1), today
        page = render_template("console/reports.html", error=str(exc), span=default)
        return page, 400
    days = tally.read(helpline().client, first, last)
    tables = summary.tables(days)
    by_day = summary.waits_by_day(days)
    by_hour = summary.waits_by_hour_of_week(days)
    return render_template(
        "console/reports.html",
        error=None,
        span=(first, last),
        figures=[(table, _chart(table)) for table in tables],
        waits_by_day=by_day,
        waits_by_day_chart=_wait_chart(by_day),
        waits_by_hour=[w for w in by_hour if w.waits],
        waits_by_hour_chart=_wait_chart(by_hour),
        shown=summary.shown,
        minutes=summary.minutes,
        small=summary.SMALL,
    )


@bp.get("/admin/reports.csv")
@admin_required
def reports_csv() -> Response:
    try:
        first, last = asked_range(request.args, _today())
    except BadRange as exc:
        return Response(f"{exc}\n", 400, mimetype="text/plain")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("date", "measure", "count"))
    writer.writerows(summary.csv_rows(tally.read(helpline().client, first, last)))
    name = f"helpline-reports-{first.isoformat()}-to-{last.isoformat()}.csv"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
