"""A small inline SVG of the queue over the last 24 hours, drawn on the server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from markupsafe import Markup, escape

from helpline.callbacks.queue import CallbackQueue

DAY = 24 * 60 * 60
WIDTH, HEIGHT, PAD = 600, 120, 28


@dataclass(frozen=True)
class Sample:
    at: float
    urgent: int
    normal: int
    longest: float  # seconds the longest-waiting request had waited

    @property
    def waiting(self) -> int:
        return self.urgent + self.normal


def samples(queue: CallbackQueue, now: float) -> list[Sample]:
    """Return the last 24 hours' samples (taken by the workers' housekeeping), oldest first."""
    found = []
    for member in queue.history(now - DAY):
        try:
            at, urgent, normal, longest = member.decode().split(":")
            found.append(Sample(float(at), int(urgent), int(normal), float(longest)))
        except ValueError:
            continue
    return found


def _line(points: list[tuple[float, float]], now: float, top: float) -> str:
    coords = []
    for at, value in points:
        x = PAD + (WIDTH - 2 * PAD) * (1 - (now - at) / DAY)
        y = HEIGHT - PAD - (HEIGHT - 2 * PAD) * (value / top if top else 0)
        coords.append(f"{x:.1f},{y:.1f}")
    return " ".join(coords)


def people(count: float) -> str:
    """Say a number of people: "1 person", "2 people", "0 people"."""
    whole = round(count)
    return f"{whole} {'person' if whole == 1 else 'people'}"


def minutes(value: float) -> str:
    """Say a wait in whole minutes ("min" reads the same for one or many)."""
    if 0 < value < 1:
        return "under 1 min"
    return f"{round(value)} min"


def _at(x: float, y: float) -> str:
    """Place text where the plot's own (x, y) falls, in percent of the chart's box.

    The plot stretches to fill the box; text placed in percent follows it there while
    keeping its own shape, which text inside the stretched group could not.
    """
    return f'x="{100 * x / WIDTH:.2f}%" y="{100 * y / HEIGHT:.2f}%"'


def chart(
    title: str, say: Callable[[float], str], points: list[tuple[float, float]], now: float
) -> Markup:
    """Return one labelled line chart as inline SVG (empty axes when no samples yet)."""
    highest = max((value for _, value in points), default=0.0)
    peak = say(highest)
    label = f"{title} (max {peak})" if points else f"{title} (no samples yet)"
    summary = (
        f"{title}: highest {peak} in the last 24 hours"
        if points
        else f"{title}: no samples in the last 24 hours yet"
    )
    line = (
        f'<polyline class="series" points="{_line(points, now, max(highest, 1.0))}" fill="none"/>'
        if points
        else ""
    )
    bottom, right = HEIGHT - PAD, WIDTH - PAD
    # The outer box has no viewBox, so its text is drawn at its true size; only the
    # inner plot is stretched to the box's width and height.
    svg = (
        f'<svg class="chart" role="img" aria-label="{escape(summary)}">'
        f"<title>{escape(summary)}</title>"
        f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" '
        'width="100%" height="100%" aria-hidden="true">'
        f'<line class="axis" x1="{PAD}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
        f'<line class="axis" x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{bottom}"/>'
        f"{line}</svg>"
        f"<text {_at(PAD + 4, PAD - 8)}>{escape(label)}</text>"
        f"<text {_at(PAD, HEIGHT - 8)}>24 h ago</text>"
        f'<text {_at(right, HEIGHT - 8)} text-anchor="end">now</text>'
        "</svg>"
    )
    return Markup(svg)


def history_charts(queue: CallbackQueue, now: float) -> list[Markup]:
    """Return the depth chart and the longest-wait chart."""
    found = samples(queue, now)
    return [
        chart("Waiting", people, [(s.at, float(s.waiting)) for s in found], now),
        chart("Longest wait", minutes, [(s.at, s.longest / 60) for s in found], now),
    ]


# -- the reports' bar charts --------------------------------------------------------------
# Drawn in a box about a phone's width, so at 100% width their text stays readable there;
# each goes beside a table of the same figures for screen readers (the chart is hidden from
# them). Values are drawn as given: the caller passes small counts as 0.
BAR_WIDTH, BAR_HEIGHT, BAR_LEFT, BAR_BOTTOM, BAR_TOP = 320, 160, 30, 20, 18


def _bar_frame(peak: float, unit: str) -> str:
    bottom = BAR_HEIGHT - BAR_BOTTOM
    return (
        f'<line class="axis" x1="{BAR_LEFT}" y1="{bottom}" x2="{BAR_WIDTH}" y2="{bottom}"/>'
        f'<line class="axis" x1="{BAR_LEFT}" y1="{BAR_TOP}" x2="{BAR_LEFT}" y2="{bottom}"/>'
        f'<text x="{BAR_LEFT - 3}" y="{BAR_TOP + 4}" text-anchor="end">{peak:g}</text>'
        f'<text x="{BAR_LEFT - 3}" y="{bottom}" text-anchor="end">0</text>'
        f'<text x="{BAR_LEFT + 2}" y="10">{escape(unit)}</text>'
    )


def column_chart(
    labels: list[str],
    series: list[tuple[str, list[float]]],
    *,
    unit: str,
    stacked: bool = True,
) -> Markup:
    """Columns over labels (days, hours): series stacked, or drawn over each other."""
    count = max(len(labels), 1)
    heights = [
        sum(values[i] for _, values in series)
        if stacked
        else max((values[i] for _, values in series), default=0)
        for i in range(len(labels))
    ]
    peak = max(heights, default=0) or 1
    plot = BAR_HEIGHT - BAR_BOTTOM - BAR_TOP
    step = (BAR_WIDTH - BAR_LEFT - 2) / count
    width = max(step * 0.8, 0.5)
    bars = []
    for i in range(len(labels)):
        base = 0.0
        for n, (_, values) in enumerate(series):
            height = plot * values[i] / peak
            y = BAR_HEIGHT - BAR_BOTTOM - (base if stacked else 0) - height
            x = BAR_LEFT + 1 + i * step
            bars.append(
                f'<rect class="s{n}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                f'height="{height:.1f}"/>'
            )
            base += height
    # A row above the plot, after the unit: the series' keys, side by side.
    keys, x = [], BAR_LEFT + 60
    for n, (name, _) in enumerate(series if len(series) > 1 else []):
        keys.append(
            f'<rect class="s{n}" x="{x}" y="2" width="8" height="8"/>'
            f'<text x="{x + 11}" y="10">{escape(name)}</text>'
        )
        x += 20 + 6 * len(name)  # about a 10-unit font's width per letter
    legend = "".join(keys)
    ends = (
        f'<text x="{BAR_LEFT}" y="{BAR_HEIGHT - 5}">{escape(labels[0])}</text>'
        f'<text x="{BAR_WIDTH}" y="{BAR_HEIGHT - 5}" text-anchor="end">{escape(labels[-1])}</text>'
        if labels
        else ""
    )
    return Markup(
        f'<svg class="bars" viewBox="0 0 {BAR_WIDTH} {BAR_HEIGHT}" width="100%" '
        f'aria-hidden="true">{_bar_frame(peak, unit)}{"".join(bars)}{ends}{legend}</svg>'
    )


def _short(label: str, most: int = 21) -> str:
    """A row's label as it fits left of its bar (the table beside it has it in full)."""
    return label if len(label) <= most else label[: most - 1] + "…"


def row_chart(rows: list[tuple[str, float]]) -> Markup:
    """One bar per row (topics, the call back funnel), labelled, longest = widest."""
    peak = max((value for _, value in rows), default=0) or 1
    line = 22
    left = 130
    height = line * len(rows) + 4
    parts = []
    for i, (label, value) in enumerate(rows):
        y = 4 + i * line
        width = (BAR_WIDTH - left - 4) * value / peak
        parts.append(
            f'<text x="{left - 4}" y="{y + 13}" text-anchor="end">{escape(_short(label))}</text>'
            f'<rect class="s0" x="{left}" y="{y + 2}" width="{width:.1f}" height="14"/>'
        )
    return Markup(
        f'<svg class="bars" viewBox="0 0 {BAR_WIDTH} {height}" width="100%" '
        f'aria-hidden="true">{"".join(parts)}</svg>'
    )
