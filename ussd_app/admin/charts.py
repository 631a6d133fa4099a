"""Small server-rendered SVG charts (no script, no CDN): stacked bars by hour."""

from markupsafe import Markup, escape

PALETTE = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#b7791f", "#718096")


def stacked_bars(
    labels: list[str], series: dict[str, list[int]], *, title: str, fmt=str, width=720, height=200
) -> Markup:
    """``labels`` along the x axis; ``series`` name -> one value per label, stacked."""
    pad_left, pad_bottom, pad_top = 70, 28, 24
    plot_w, plot_h = width - pad_left - 10, height - pad_bottom - pad_top
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top = max(totals or [0]) or 1
    slot = plot_w / max(len(labels), 1)
    bar_w = max(slot * 0.7, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}"><title>{escape(title)}</title>',
        f'<text x="{pad_left}" y="14" class="chart-title">{escape(title)}</text>',
        f'<line x1="{pad_left}" y1="{pad_top + plot_h}" x2="{width - 10}" y2="{pad_top + plot_h}" '
        'stroke="#999"/>',
        f'<text x="{pad_left - 6}" y="{pad_top + 8}" text-anchor="end" class="axis">'
        f"{escape(fmt(top))}</text>",
        f'<text x="{pad_left - 6}" y="{pad_top + plot_h}" text-anchor="end" class="axis">0</text>',
    ]
    for i, label in enumerate(labels):
        x = pad_left + i * slot + (slot - bar_w) / 2
        y = pad_top + plot_h
        for n, (name, values) in enumerate(series.items()):
            value = values[i]
            if not value:
                continue
            h = plot_h * value / top
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[n % len(PALETTE)]}"><title>{escape(label)} {escape(name)}: '
                f"{escape(fmt(value))}</title></rect>"
            )
        if i % max(1, len(labels) // 8) == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - 10}" text-anchor="middle" class="axis">'
                f"{escape(label[-5:])}</text>"
            )
    legend_x = pad_left + 200
    for n, name in enumerate(series):
        parts.append(
            f'<rect x="{legend_x}" y="5" width="10" height="10" fill="{PALETTE[n % len(PALETTE)]}"/>'
            f'<text x="{legend_x + 14}" y="14" class="axis">{escape(name)}</text>'
        )
        legend_x += 20 + 8 * len(name)
    if not series:
        parts.append(
            f'<text x="{pad_left + plot_w / 2}" y="{pad_top + plot_h / 2}" text-anchor="middle" '
            'class="axis">nothing in the last 24 hours</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  # nosec B704  # built from escaped parts
