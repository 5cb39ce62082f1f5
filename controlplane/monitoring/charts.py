"""Small server-side SVG line charts (no JavaScript library to ship or fetch)."""
from __future__ import annotations

from flask_babel import get_locale
from markupsafe import Markup, escape


def line_chart(points: list[tuple[str, float]], *, title: str, unit: str = "",
               width: int = 420, height: int = 120) -> Markup:
    """A polyline of (label, value) with min/max marks; an empty series says so."""
    pad = 28
    if not points:
        return Markup(f'<figure class="chart"><figcaption>{escape(title)}</figcaption>'
                      f'<p class="hint">—</p></figure>')
    values = [v for _, v in points]
    top = max(values) or 1.0
    step = (width - 2 * pad) / max(len(points) - 1, 1)
    coords = " ".join(f"{pad + i * step:.1f},{height - pad - (v / top) * (height - 2 * pad):.1f}"
                      for i, v in enumerate(values))
    first, last = escape(points[0][0]), escape(points[-1][0])
    return Markup(
        f'<figure class="chart"><figcaption>{escape(title)}</figcaption>'
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        f'stroke="#aab4bf"/>'
        f'<polyline fill="none" stroke="#1f5f3a" stroke-width="2" points="{coords}"/>'
        f'<text x="2" y="{pad}" font-size="10">{top:.3g}{escape(unit)}</text>'
        f'<text x="{pad}" y="{height - 6}" font-size="10">{first}</text>'
        f'<text x="{width - pad}" y="{height - 6}" font-size="10" text-anchor="end">{last}'
        f'</text></svg></figure>')


def human_bytes(n: float | int | None) -> str:
    """Binary units in the reader's language: "1,5 Gio" in French, "1.5 GiB" in English."""
    if n is None:
        return "—"
    try:
        french = str(get_locale() or "fr").startswith("fr")
    except Exception:  # noqa: BLE001 - outside a request
        french = True
    units = ("o", "Kio", "Mio", "Gio", "Tio") if french else ("B", "KiB", "MiB", "GiB", "TiB")
    n = float(n)
    for unit in units:
        if abs(n) < 1024 or unit == units[-1]:
            text = f"{n:.0f} {unit}" if unit == units[0] else f"{n:.1f} {unit}"
            return text.replace(".", ",") if french else text
        n /= 1024
    return f"{n:.1f} {units[-1]}"
