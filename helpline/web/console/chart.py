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
