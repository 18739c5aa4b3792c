"""Server-side SVG for the activity chart: stacked bars of execs per time bucket, split
by effect. Pure; styled by classes (the console's CSS), no inline style or script."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

from markupsafe import Markup, escape

from policies.audit.browse import BucketCount

Bucket = Literal["hour", "day"]

EFFECTS = ("allow", "approve", "deny")
WIDTH, HEIGHT, PAD, AXIS = 720, 160, 4, 18


def bucket_starts(since: dt.datetime, until: dt.datetime, bucket: Bucket) -> list[dt.datetime]:
    """Every bucket start from ``since`` (rounded down) to before ``until``."""
    step = dt.timedelta(hours=1) if bucket == "hour" else dt.timedelta(days=1)
    start = since.replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        start = start.replace(hour=0)
    out: list[dt.datetime] = []
    while start < until and len(out) < 1000:
        out.append(start)
        start += step
    return out


def bar_chart(
    counts: Sequence[BucketCount], starts: Sequence[dt.datetime], bucket: Bucket
) -> Markup:
    """An accessible SVG of ``counts`` over ``starts`` (buckets with no row are 0)."""
    table: dict[dt.datetime, dict[str, int]] = {s: {} for s in starts}
    for c in counts:
        table.setdefault(c.start, {})[c.effect] = c.count
    keys = sorted(table)
    top = max((sum(v.values()) for v in table.values()), default=0) or 1
    n = max(len(keys), 1)
    slot = (WIDTH - 2 * PAD) / n
    usable = HEIGHT - AXIS - PAD
    total = sum(c.count for c in counts)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{total} execs by {bucket}">'
    ]
    fmt = "%H:00" if bucket == "hour" else "%m-%d"
    for i, key in enumerate(keys):
        x = PAD + i * slot
        y: float = HEIGHT - AXIS
        for effect in EFFECTS:
            value = table[key].get(effect, 0)
            if not value:
                continue
            h = usable * value / top
            y -= h
            label = escape(f"{key.strftime('%Y-%m-%d %H:%M')} {effect}: {value}")
            parts.append(
                f'<rect class="bar {effect}" x="{x + 1:.1f}" y="{y:.1f}" '
                f'width="{max(slot - 2, 1):.1f}" height="{h:.1f}"><title>{label}</title></rect>'
            )
        if i % max(1, n // 8) == 0:
            parts.append(
                f'<text class="tick" x="{x:.1f}" y="{HEIGHT - 4}">{key.strftime(fmt)}</text>'
            )
    parts.append(f'<text class="tick" x="{WIDTH - PAD}" y="12" text-anchor="end">{top}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated value is escaped or numeric
