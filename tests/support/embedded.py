"""The images a report.html embeds, read back: data-file (the PNG report.md links) -> the bytes of its data: URI."""
from __future__ import annotations

import base64
from html.parser import HTMLParser

PNG = b"\x89PNG\r\n\x1a\n"


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, bytes] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        source = attributes.get("src") or ""
        if tag == "img" and source.startswith("data:image/png;base64,") and attributes.get("data-file"):
            self.images[attributes["data-file"]] = base64.b64decode(source.split(",", 1)[1], validate=True)


def embedded_pngs(html: str) -> dict[str, bytes]:
    """Each embedded PNG by the file name it carries; only images whose bytes are in the page itself."""
    parser = _Images()
    parser.feed(html)
    return parser.images
