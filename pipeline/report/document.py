"""A report as a list of blocks (headings, text, verdict tallies, tables, images), rendered to Markdown and to HTML
from the same blocks, so that report.md and report.html always agree.

report.md links its images (PNG files beside it); report.html embeds the same PNG bytes as base64 data: URIs, so it
is one file that can be mailed, copied or logged to W&B alone. (Inline SVG was the other way: it would mean drawing
every plot twice, and the image plots, heatmaps and digit strips, would still be base64 rasters inside the SVG.)
The HTML is plain HTML and CSS: no script, and a Content-Security-Policy that lets it load nothing but its own
data: images and inline style, so the page never makes a network request. A table wider than the page scrolls inside
its own box with its first column (the model, the claim) held in place, so a wide table never widens the page.
"""
from __future__ import annotations

import base64
import html
import mimetypes
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Iterable

import pandas as pd

from pipeline.paper.verdicts import VERDICTS

VERDICT_COLUMN = "verdict"            # a table's cells in this column are drawn as verdict badges
# A verdict is the leading word of a cell, so that "PASS (1 seed)" counts and looks like PASS.
_LEADING_VERDICT = re.compile("(" + "|".join(map(re.escape, VERDICTS)) + r")\b")
# A number as the report prints it: 0.25, 99.9%, −3, 1,000, 84.9 ± 2.4%, 1e-05, a bound (> 0.3) and a flagged one
# (99.1% ⚑).
_NUMBER = r"[−+-]?\d[\d,]*(?:\.\d+)?(?:e[−+-]?\d+)?%?"
_NUMERIC = re.compile(rf"(?:> )?{_NUMBER}(?: ± {_NUMBER})?(?: ⚑)?")
_PLACEHOLDERS = {"", "–", "—", "-", "nan", "None"}   # empty cells, which say nothing about a column's alignment
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body{font:15px/1.45 system-ui,sans-serif;color:#1f2328;max-width:1200px;margin:2em auto;padding:0 1em}
h1{font-size:1.7em;margin-bottom:.3em}
h2{font-size:1.3em;margin-top:2em;padding-bottom:.2em;border-bottom:1px solid #d0d7de}
.table{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}
th,td{padding:3px 8px;border-bottom:1px solid #d0d7de;text-align:left;vertical-align:top;background:#fff}
th{background:#f6f8fa;border-bottom:2px solid #d0d7de}
tbody tr:hover td{background:#f6f8fa}
th:first-child,td:first-child{position:sticky;left:0;z-index:1;box-shadow:inset -1px 0 #d0d7de}
.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 .6em;border-radius:1em;color:#fff;font-weight:600;font-size:.85em;
white-space:nowrap}
.pass{background:#1a7f37}.fail{background:#cf222e}.unclear{background:#9a6700}.not-run{background:#6e7781}
.tally{font-size:1.1em}.tally .badge{font-size:1em;padding:.15em .8em;margin-right:.3em}.tally .zero{opacity:.35}
nav{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:.6em 1.2em;display:inline-block}
nav ol{margin:.3em 0;padding-left:1.4em}
figure{margin:1em 0}img{max-width:100%;height:auto}figcaption{color:#57606a;font-size:.9em}
"""


def leading_verdict(cell: object) -> str | None:
    """The verdict a cell starts with ("PASS (1 seed)" -> "PASS"), or None."""
    match = _LEADING_VERDICT.match(str(cell))
    return match.group(1) if match else None


def numeric(cells: Iterable[str]) -> bool:
    """A column is numeric (right-aligned) when it holds a number and every other cell is a number or empty."""
    values = [cell for cell in cells if cell.strip() not in _PLACEHOLDERS]
    return bool(values) and all(_NUMERIC.fullmatch(cell.strip()) for cell in values)


def anchors(headings: Iterable[str]) -> list[str]:
    """GitHub's heading anchors (lower case, punctuation dropped, spaces to hyphens, -1, -2 on repeats), so that the
    contents' links work in report.md on GitHub and in report.html alike."""
    seen: Counter[str] = Counter()
    out = []
    for heading in headings:
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        out.append(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return out


def count_verdicts(verdicts: Iterable[object]) -> dict[str, int]:
    """How many cells lead with each verdict, every verdict listed (0 when absent)."""
    counts = Counter(leading_verdict(v) for v in verdicts)
    return {verdict: counts[verdict] for verdict in VERDICTS}


def _cells(frame: pd.DataFrame) -> tuple[list[str], list[list[str]], list[bool]]:
    """Header, rows as strings, and which columns are numeric: what both renderings of a table share."""
    strings = frame.astype(str)
    columns = [str(c) for c in strings.columns]
    return columns, strings.values.tolist(), [numeric(strings[c]) for c in strings.columns]


@dataclass
class Document:
    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("heading", text))

    def text(self, text: str) -> None:
        self.blocks.append(("text", text))

    def tally(self, verdicts: Iterable[object]) -> None:
        """A count of each verdict among `verdicts` (a table's verdict column)."""
        self.blocks.append(("tally", count_verdicts(verdicts)))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(("table", frame))

    def image(self, path: str, caption: str) -> None:
        """An image file, `path` relative to the folder the Markdown is saved in."""
        self.blocks.append(("image", (path, caption)))

    def _rendered_blocks(self) -> list[tuple[str, object]]:
        """The blocks as both renderings draw them: headings carry their anchors, and the table of contents comes
        before the first heading (after the opening text and tally)."""
        texts = [value for kind, value in self.blocks if kind == "heading"]
        headings = list(zip(texts, anchors(texts)))
        anchored = iter(headings)
        blocks = [(kind, next(anchored) if kind == "heading" else value) for kind, value in self.blocks]
        first = next((i for i, (kind, _) in enumerate(blocks) if kind == "heading"), None)
        if first is None:
            return blocks
        return blocks[:first] + [("contents", headings)] + blocks[first:]

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self._rendered_blocks():
            out += [*MARKDOWN[kind](value), ""]
        return "\n".join(out)

    def html(self, folder: Path) -> str:
        """One self-contained page; image paths are read relative to `folder` and embedded."""
        render = {**HTML, "image": partial(_html_image, folder=folder)}
        body = "\n".join(render[kind](value) for kind, value in self._rendered_blocks())
        title = html.escape(self.title)
        return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
                f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
                f"<title>{title}</title><style>{STYLE}</style></head>\n<body>\n<h1>{title}</h1>\n{body}\n"
                f"</body></html>\n")


# --- Markdown: one function per kind of block, each returning lines --------------------------------------------

# What would make Markdown markup of a name (a setting, a model's name): a backslash, the start of an HTML tag or
# autolink, a link's "](", and in a table cell its "|". Escaped, they show as they are (report.html escapes all).
_MARKUP = re.compile(r"\\|<(?=[A-Za-z/!?])|\](?=\()")


def _md(text: object, cell: bool = False) -> str:
    escaped = _MARKUP.sub(lambda found: "\\" + found.group(0), str(text))
    return escaped.replace("|", "\\|") if cell else escaped


def _md_table(frame: pd.DataFrame) -> list[str]:
    columns, rows, numbers = _cells(frame)
    rule = "|" + "".join("---:|" if number else "---|" for number in numbers)   # ---: right-aligns
    return ["| " + " | ".join(_md(c, cell=True) for c in columns) + " |", rule] + [
        "| " + " | ".join(_md(c, cell=True) for c in row) + " |" for row in rows]


MARKDOWN = {
    "heading": lambda heading: [f"## {_md(heading[0])}"],
    "text": lambda text: [_md(text)],
    "tally": lambda counts: ["**Verdicts:** " + ", ".join(f"{n} {verdict}" for verdict, n in counts.items())],
    "contents": lambda headings: ["**Contents**", ""] + [f"{i}. [{_md(text)}](#{anchor})"
                                                         for i, (text, anchor) in enumerate(headings, 1)],
    "table": _md_table,
    "image": lambda image: [f"![{_md(image[1])}]({image[0]})"],
}

# --- HTML: one function per kind of block, each returning markup -----------------------------------------------


def _badge(verdict: str, text: str, extra: str = "") -> str:
    css = verdict.lower().replace(" ", "-")
    return f'<span class="badge {css}{extra}">{html.escape(text)}</span>'


def _html_cell(cell: str, badge: bool) -> str:
    """A verdict cell's leading word as a badge, its qualifier ("(1 seed)") as text after it: badges stay short."""
    verdict = leading_verdict(cell) if badge else None
    return _badge(verdict, verdict) + html.escape(cell[len(verdict):]) if verdict else html.escape(cell)


def _html_table(frame: pd.DataFrame) -> str:
    columns, rows, numbers = _cells(frame)
    align = [' class="num"' if number else "" for number in numbers]   # header cells aligned like their column
    badges = [column == VERDICT_COLUMN for column in columns]
    head = "".join(f"<th{a}>{html.escape(c)}</th>" for c, a in zip(columns, align))
    body = "".join("<tr>" + "".join(f"<td{a}>{_html_cell(cell, badge)}</td>"
                                    for cell, a, badge in zip(row, align, badges)) + "</tr>" for row in rows)
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _html_tally(counts: dict[str, int]) -> str:
    badges = " ".join(_badge(verdict, f"{n} {verdict}", "" if n else " zero") for verdict, n in counts.items())
    return f'<p class="tally">Verdicts: {badges}</p>'


def _html_contents(headings: list[tuple[str, str]]) -> str:
    items = "".join(f'<li><a href="#{html.escape(anchor)}">{html.escape(text)}</a></li>' for text, anchor in headings)
    return f"<nav><strong>Contents</strong><ol>{items}</ol></nav>"


def _html_image(image: tuple[str, str], folder: Path) -> str:
    path, caption = image
    data = base64.b64encode((folder / path).read_bytes()).decode("ascii")
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    # data-file keeps the name of the PNG that report.md links (the same bytes)
    return (f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(caption)}" '
            f'data-file="{html.escape(path)}"><figcaption>{html.escape(caption)}</figcaption></figure>')


HTML = {
    "heading": lambda heading: f'<h2 id="{html.escape(heading[1])}">{html.escape(heading[0])}</h2>',
    "text": lambda text: f"<p>{html.escape(str(text))}</p>",
    "tally": _html_tally,
    "contents": _html_contents,
    "table": _html_table,
}
