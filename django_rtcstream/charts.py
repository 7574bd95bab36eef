"""Small inline SVG line charts of a session's stats history (the admin's change page).

Drawn on the server: the page needs no script, no CDN and no chart library, and a
test can read what was drawn. The built-in stream page draws the same charts live
in its own static JS (``rtcstream-page.js``).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD = 320, 80, 4
COLORS = ("#2563eb", "#dc2626", "#16a34a")  # first, second, third line


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.3g}"


def line_chart(
    title: str,
    unit: str,
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> SafeString:
    """One chart: a line per ``(name, values)``, samples evenly spaced, None a gap.

    The vertical scale starts at 0 and ends at the largest value; the title says
    the newest value of each line and the top of the scale.
    """
    present = [v for _name, values in series for v in values if v is not None]
    top = max(present, default=0.0) or 1.0
    count = max((len(values) for _name, values in series), default=0)
    step = (width - 2 * PAD) / max(1, count - 1)
    lines = []
    latest = []
    for index, (name, values) in enumerate(series):
        runs: list[list[str]] = [[]]
        for i, value in enumerate(values):
            if value is None:
                runs.append([])
                continue
            x = PAD + i * step
            y = height - PAD - (value / top) * (height - 2 * PAD)
            runs[-1].append(f"{x:.1f},{y:.1f}")
        for run in runs:
            if len(run) == 1:  # a lone point still shows
                run.append(run[0])
            if run:
                color = COLORS[index % len(COLORS)]
                lines.append((f"rtc-line rtc-line-{index}", color, " ".join(run), name))
        newest = next((v for v in reversed(values) if v is not None), None)
        latest.append(f"{name} {_fmt(newest)} {unit}" if newest is not None else f"{name} –")
    polylines = format_html_join(
        "",
        '<polyline class="{}" stroke="{}" points="{}" fill="none" stroke-width="1.5"><title>{}</title>'
        "</polyline>",
        lines,
    )
    return format_html(
        '<figure class="rtc-chart" data-figure="{}"><figcaption>{}: {} '
        "<small>(scale 0-{} {})</small></figcaption>"
        '<svg role="img" aria-label="{}" viewBox="0 0 {} {}" width="{}" height="{}" '
        'xmlns="http://www.w3.org/2000/svg">'
        '<rect x="0" y="0" width="{}" height="{}" fill="none" stroke="#ccc"/>{}</svg></figure>',
        title,
        title,
        "; ".join(latest),
        _fmt(top),
        unit,
        title,
        width,
        height,
        width,
        height,
        width,
        height,
        polylines or mark_safe(""),
    )
