"""HTML pieces of the report: embedded figures, formatted numbers, tables."""

from __future__ import annotations

import base64
import html
from pathlib import Path


def img(path: Path, caption: str) -> str:
    if not path.exists():
        return f"<p class='missing'>(figure missing: {html.escape(str(path.name))})</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return (f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def fmt(x, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        if 0.999 < abs(x) < 1:  # a cosine of 0.99999 must not print as 1
            return f"{x:.7g}"
        return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.4g}"
    return html.escape(str(x))


def table(header: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, str) else fmt(c)}</td>"
                                    for c in row) + "</tr>" for row in rows)
    return f"<table class='{cls}'><tr>{head}</tr>{body}</table>"


