"""A report as a list of blocks (headings, text, tables, images), rendered to Markdown and to HTML from the same
blocks, so that report.md and report.html always agree."""
from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Document:
    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("heading", text))

    def text(self, text: str) -> None:
        self.blocks.append(("text", text))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(("table", frame))

    def image(self, path: str, caption: str) -> None:
        self.blocks.append(("image", (path, caption)))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                out += [f"## {value}", ""]
            elif kind == "text":
                out += [str(value), ""]
            elif kind == "table":
                frame = value.astype(str)
                out += ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
                out += ["| " + " | ".join(row) + " |" for row in frame.itertuples(index=False)] + [""]
            else:
                path, caption = value
                out += [f"![{caption}]({path})", ""]
        return "\n".join(out)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "heading":
                body.append(f"<h2>{html.escape(str(value))}</h2>")
            elif kind == "text":
                body.append(f"<p>{html.escape(str(value))}</p>")
            elif kind == "table":
                body.append(value.to_html(index=False, escape=True, border=0))
            else:
                path, caption = value
                body.append(f'<figure><img src="{html.escape(path)}" alt="{html.escape(caption)}">'
                            f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
                 "td,th{padding:2px 8px;border-bottom:1px solid #ddd}img{max-width:100%}")
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
