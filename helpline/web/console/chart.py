"""A small inline SVG of the queue over the last 24 hours, drawn on the server."""

from __future__ import annotations

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


def chart(title: str, unit: str, points: list[tuple[float, float]], now: float) -> Markup:
    """Return one labelled line chart as inline SVG (empty axes when no samples yet)."""
    top = max((value for _, value in points), default=0.0)
    top = max(top, 1.0)
    peak = f"{top:.0f} {unit}"
    label = f"{title} (max {peak})" if points else f"{title} (no samples yet)"
    summary = (
        f"{title}: highest {peak} in the last 24 hours"
        if points
        else f"{title}: no samples in the last 24 hours yet"
    )
    line = (
        f'<polyline class="series" points="{_line(points, now, top)}" fill="none"/>'
        if points
        else ""
    )
    bottom, right = HEIGHT - PAD, WIDTH - PAD
    svg = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(summary)}" preserveAspectRatio="none">'
        f"<title>{escape(summary)}</title>"
        f'<line class="axis" x1="{PAD}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
        f'<line class="axis" x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{bottom}"/>'
        f'<text x="{PAD + 4}" y="{PAD - 8}">{escape(label)}</text>'
        f'<text x="{PAD}" y="{HEIGHT - 8}">24 h ago</text>'
        f'<text x="{right}" y="{HEIGHT - 8}" text-anchor="end">now</text>'
        f"{line}</svg>"
    )
    return Markup(svg)


def history_charts(queue: CallbackQueue, now: float) -> list[Markup]:
    """Return the depth chart and the longest-wait chart."""
    found = samples(queue, now)
    return [
        chart("Waiting", "people", [(s.at, float(s.waiting)) for s in found], now),
        chart("Longest wait", "min", [(s.at, s.longest / 60) for s in found], now),
    ]
