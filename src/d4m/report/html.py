"""One self-contained HTML page: images inlined as base64 PNG, tables from plain dicts. No I/O but the PNG reads."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

STYLE = """body{font-family:sans-serif;margin:24px;max-width:1150px;color:#222}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px}
th{background:#eee}pre{background:#f6f6f6;padding:8px;font-size:12px;overflow-x:auto}
img{max-width:100%;border:1px solid #ddd}.note{color:#a40;font-style:italic}"""


def esc(value) -> str:
    return html.escape("-" if value is None else str(value))


def inline_png(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return '<p class="note">none</p>'
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def card_section(card: dict | None) -> str:
    if card is None:
        return ('<p class="note">No fair-evaluation card in this run '
                '(make one with <code>d4m evaluate --card</code>).</p>')

    def cell(ms):
        return None if ms.get("mean") is None else f"{ms['mean']:.2f} ± {ms.get('std') or 0:.2f}"
    row = {"soft (distilled)": cell(card["soft"]), "random (real)": cell(card["random"]),
           "hard (distilled, CE)": cell(card["hard"]), "full data (hard)": card["full"]["mean"],
           "IOR": card["IOR"], "HLR": card["HLR"]}
    limit = f", val subset of {card['val_limit']}" if card.get("val_limit") else ""
    return (table([row]) + f"<p>Student {esc(card['student'])}, recipe {esc(card['recipe'])} ({esc(card['epochs'])} "
            f"epochs), teacher {esc(card['teacher'])}, {esc(card['seeds'])} seed(s){esc(limit)}; "
            f"{esc(card['metric'])}. Full data: {esc(card['full']['source'])}.</p>")


def render(title: str, sections: list[tuple[str, str]]) -> str:
    """``sections``: (heading, already-escaped HTML body)."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>"]
    for heading, body in sections:
        parts.append(f"<h2>{esc(heading)}</h2>\n{body}")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def pre(obj) -> str:
    text = obj if isinstance(obj, str) else json.dumps(obj, indent=2, default=str)
    return f"<pre>{esc(text)}</pre>"
