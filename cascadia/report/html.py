"""The report's HTML page: one file, readable offline, that shows the figures and tables.

Why this shape: a report is mailed, archived and opened years later, so the page carries
its own style (no script, no font or stylesheet fetched from anywhere) and links only the
files beside it - each figure as PNG (shown) and PDF (for a paper), each table as CSV
(the same numbers at full precision). Cells are formatted per column; a missing value
reads "n/a".
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

__all__ = ["Column", "Page", "Table", "cell"]


def _t(text: str) -> str:
    """Escape text content (quotes need escaping only inside attributes)."""
    return html.escape(text, quote=False)


STYLE = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 1.5em auto;
       max-width: 1180px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; margin-top: 2em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #333; text-align: left; }
figure.table { overflow-x: auto; }
figure.table figcaption { margin-bottom: 0.4em; }
table { border-collapse: collapse; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.files { font-size: 0.85em; }
nav ol { columns: 2; font-size: 0.9em; }
.note { color: #555; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class Column:
    """A table column: its key in the data, its heading (with units) and number format
    (a ``str.format`` spec such as ``"{:.2f}"``; ``""`` for text)."""

    key: str
    heading: str
    fmt: str = ""


@dataclass
class Table:
    """A table of the page: the rows, the columns shown, its caption and CSV file name."""

    name: str
    caption: str
    frame: pd.DataFrame
    columns: Sequence[Column]


def cell(value: object, fmt: str) -> str:
    """One cell's text: ``fmt`` applied to numbers, "n/a" for a missing value."""
    if value is None or (isinstance(value, float | np.floating) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, str) and not value:
        return "n/a" if fmt else ""
    return fmt.format(value) if fmt else str(value)


@dataclass
class Page:
    """Sections of headings, paragraphs, figures and tables, rendered in order."""

    title: str
    subtitle: str = ""
    parts: list[str] = field(default_factory=list)
    sections: list[tuple[str, str]] = field(default_factory=list)

    def section(self, title: str) -> None:
        anchor = f"s{len(self.sections) + 1}"
        self.sections.append((anchor, title))
        self.parts.append(f'<h2 id="{anchor}">{_t(title)}</h2>')

    def text(self, paragraph: str, note: bool = False) -> None:
        css = ' class="note"' if note else ""
        self.parts.append(f"<p{css}>{_t(paragraph)}</p>")

    def items(self, lines: Sequence[str]) -> None:
        body = "".join(f"<li>{_t(line)}</li>" for line in lines)
        self.parts.append(f"<ul>{body}</ul>")

    def figure(self, stem: str, title: str, caption: str) -> None:
        """A figure ``<stem>.png`` beside the page, with its PDF linked."""
        png, pdf = f"{stem}.png", f"{stem}.pdf"
        self.parts.append(
            f'<figure id="f-{html.escape(stem)}">'
            f'<img src="{html.escape(png)}" alt="{html.escape(title)}">'
            f"<figcaption><b>{_t(title)}.</b> {_t(caption)} "
            f'<span class="files">[<a href="{html.escape(png)}">PNG</a> · '
            f'<a href="{html.escape(pdf)}">PDF</a>]</span></figcaption></figure>'
        )

    def table(self, table: Table) -> None:
        """The table, its caption, and the link to ``<name>.csv`` beside the page."""
        csv = f"{table.name}.csv"
        head = "".join(f"<th>{_t(c.heading)}</th>" for c in table.columns)
        rows = []
        for record in table.frame.to_dict("records"):
            cells = []
            for column in table.columns:
                css = ' class="num"' if column.fmt else ""
                text = _t(cell(record.get(column.key), column.fmt))
                cells.append(f"<td{css}>{text}</td>")
            rows.append(f"<tr>{''.join(cells)}</tr>")
        self.parts.append(
            f'<figure class="table"><figcaption>{_t(table.caption)} '
            f'<span class="files">[<a href="{html.escape(csv)}">CSV</a>]</span></figcaption>'
            f'<table id="t-{html.escape(table.name)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></figure>"
        )

    def link(self, text: str, href: str, description: str) -> None:
        self.parts.append(
            f'<p><a href="{html.escape(href)}">{_t(text)}</a> - {_t(description)}</p>'
        )

    def render(self) -> str:
        """The page as one HTML document."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        toc = "".join(
            f'<li><a href="#{anchor}">{_t(title)}</a></li>' for anchor, title in self.sections
        )
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_t(self.title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{_t(self.title)}</h1>"
            f'<p class="note">{_t(self.subtitle)} Written {stamp}.</p>'
            f"<nav><ol>{toc}</ol></nav>" + "\n".join(self.parts) + "</body></html>\n"
        )
