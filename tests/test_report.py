"""The report's Document: one list of blocks rendered to Markdown (images linked) and to a self-contained HTML page
(images embedded, verdict badges and their tally, a table of contents, numbers right-aligned)."""
from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from pipeline.report.document import Document
from pipeline.plotting import pyplot, save
from tests.support.chromium import Browser

CLAIMS = pd.DataFrame({
    "claim": ["softmax is fooled", "maxout is fooled", "RBF is fooled less", "ensembles", "conv net"],
    "error": ["99.2 ± 0.4%", "84.9%", "–", "1,000", "−3"],         # numbers, and a placeholder
    "seeds": [3, 3, 0, 1, 2],
    "note": ["PASS on 3 seeds", "", "1 seed", "–", "FAIL"],         # text, even where it starts like a number
    "verdict": ["PASS", "PASS (1 seed)", "FAIL", "UNCLEAR", "NOT RUN"],
})


class Page(HTMLParser):
    """What report.html shows: heading anchors, the contents' links, images, table rows (each cell's text and
    class) and badges (class, text)."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.anchors: list[str] = []
        self.links: list[str] = []
        self.images: list[dict] = []
        self.rows: list[list[dict]] = []
        self.badges: list[list[str]] = []
        self._open: dict | list | None = None          # the cell or badge whose text is being read
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "h2":
            self.anchors.append(attrs["id"])
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("th", "td"):
            self._open = {"text": "", "class": attrs.get("class"), "badge": None}
            self.rows[-1].append(self._open)
        elif tag == "span" and "badge" in attrs.get("class", ""):
            badge = [attrs["class"].removeprefix("badge ").removesuffix(" zero"), ""]
            self.badges.append(badge)
            if isinstance(self._open, dict):
                self._open["badge"] = badge[0]
            else:
                self._open = badge

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td") or (tag == "span" and isinstance(self._open, list)):
            self._open = None

    def handle_data(self, data: str) -> None:
        if isinstance(self._open, dict):
            self._open["text"] += data
        elif isinstance(self._open, list):
            self._open[1] += data


def markdown_rows(markdown: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown.splitlines()
            if line.startswith("|")]


def draw_png(path: Path) -> Path:
    """A real plot, saved the way the report saves its plots."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = pyplot().subplots(figsize=(3, 2))
    ax.plot([0, 0.1, 0.25], [0.1, 0.6, 0.99], marker="o")
    save(fig, path)
    return path


def png_width(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")     # the IHDR chunk's width


def report(folder: Path) -> Document:
    doc = Document("Harness sweep 'test'")
    doc.text("5 complete jobs.")
    doc.tally(CLAIMS["verdict"])
    doc.heading("Paper vs this run")
    doc.table(CLAIMS)
    doc.heading("FGSM error by ε")
    draw_png(folder / "plots" / "error_vs_eps.png")
    doc.image("plots/error_vs_eps.png", "error rate vs ε")
    doc.heading("Transfer")
    doc.heading("Transfer")
    return doc


def test_html_embeds_the_png_that_markdown_links(tmp_path):
    doc = report(tmp_path)
    [image] = Page(doc.html(tmp_path)).images
    scheme, data = image["src"].split(",", 1)
    assert scheme == "data:image/png;base64"
    assert base64.b64decode(data) == (tmp_path / "plots" / "error_vs_eps.png").read_bytes()
    assert image["alt"] == "error rate vs ε" and image["data-file"] == "plots/error_vs_eps.png"
    assert "![error rate vs ε](plots/error_vs_eps.png)" in doc.markdown()


def test_both_renderings_hold_the_same_cells_with_numbers_right_aligned(tmp_path):
    doc = report(tmp_path)
    page, markdown = Page(doc.html(tmp_path)), doc.markdown()
    assert [[cell["text"] for cell in row] for row in page.rows] == [
        cells for i, cells in enumerate(markdown_rows(markdown)) if i != 1]          # the rule line left out
    right = [None, "num", "num", None, None]
    assert all([cell["class"] for cell in row] == right for row in page.rows)      # header cells too
    assert "| claim | error | seeds | note | verdict |\n|---|---:|---:|---|---|" in markdown


def test_flagged_numbers_and_bounds_are_numbers_too():
    from pipeline.report.document import numeric

    assert numeric(["99.1% ⚑", "> 0.3", "0.12 ± 0.03", "–"]) and numeric(["84.9 ± 2.4% ⚑"])
    assert not numeric(["chance_error", "0.3"]) and not numeric(["⚑"]) and not numeric(["> mynet"])


def test_verdicts_are_badges_by_their_leading_word_and_counted_at_the_top(tmp_path):
    doc = report(tmp_path)
    markup, markdown = doc.html(tmp_path), doc.markdown()
    page = Page(markup)
    assert [row[-1]["badge"] for row in page.rows[1:]] == ["pass", "pass", "fail", "unclear", "not-run"]
    assert all(row[3]["badge"] is None for row in page.rows)            # "PASS on 3 seeds" outside the verdicts
    tally = ["2 PASS", "1 FAIL", "1 UNCLEAR", "1 NOT RUN"]
    assert [text for _, text in page.badges[:4]] == tally
    assert "**Verdicts:** " + ", ".join(tally) in markdown
    for rendering, tally_at, first_section in ((markup, 'class="tally"', "<h2"), (markdown, "**Verdicts:**", "## ")):
        assert rendering.index("5 complete jobs.") < rendering.index(tally_at) < rendering.index(first_section)


def test_contents_link_every_heading_in_both_renderings(tmp_path):
    doc = report(tmp_path)
    page, markdown = Page(doc.html(tmp_path)), doc.markdown()
    assert page.anchors == ["paper-vs-this-run", "fgsm-error-by-ε", "transfer", "transfer-1"]   # GitHub's anchors
    assert page.links == [f"#{anchor}" for anchor in page.anchors]
    assert re.findall(r"\]\(#(.+?)\)", markdown) == page.anchors
    assert markdown.index("**Contents**") < markdown.index("## Paper vs this run")


def test_the_page_declares_it_loads_nothing_but_itself(tmp_path):
    """The policy forbids what a page copied alone must not do: load anything from outside itself (no remote or
    relative `src`), connect anywhere (`connect-src` falls back to `default-src 'none'`) or run scripts."""
    markup = report(tmp_path).html(tmp_path)
    head = markup[:markup.index("</head>")]
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', head).group(1)
    directives = {name: sources for name, *sources in (d.split() for d in policy.split(";") if d.strip())}
    assert directives["default-src"] == ["'none'"]           # every kind not named below: scripts, fetches, fonts
    assert directives["img-src"] == ["data:"]                # images only from the page itself
    assert set(directives) <= {"default-src", "img-src", "style-src"}, policy   # nothing reopened (connect-src...)
    assert set(directives.get("style-src", [])) <= {"'unsafe-inline'"}, policy  # styles only inline
    assert "<script" not in markup and "<link" not in markup


@pytest.mark.browser
@pytest.mark.slow
def test_chromium_shows_the_embedded_plot_and_flags_a_linked_one(chromium_path, tmp_path):
    sweep = tmp_path / "sweep"
    markup = report(sweep).html(sweep)
    alone = tmp_path / "alone" / "report.html"          # copied alone: no plots/ beside it
    alone.parent.mkdir()
    alone.write_text(markup)
    linked = sweep / "linked.html"                      # beside plots/, but the policy forbids loading it
    linked.write_text(markup.replace("</body>", '<img src="plots/error_vs_eps.png"></body>'))
    with Browser() as browser:
        shown, flagged = browser.load(alone), browser.load(linked)
    width = png_width(sweep / "plots" / "error_vs_eps.png")
    assert shown.image_widths == [width] and shown.console_errors == []
    assert shown.requests[0] == alone.as_uri() and all(url.startswith("data:") for url in shown.requests[1:])
    assert flagged.image_widths == [width, 0]
    assert any("Content Security Policy" in error for error in flagged.console_errors), flagged.console_errors


def test_the_honest_tables_are_at_the_eps_where_more_than_the_curve_ran():
    """FGSM and the minimum-norm attack run at every ε of the curve (Models side by side shows them); the per-ε
    tables of stronger attacks are kept to the ε where some other attack ran, and to every ε when none did (a
    median's ε is no ε of the curve)."""
    from pipeline.report.sweep_report import checked_epsilons

    curve = [(name, eps) for name in ("fgsm", "fgsm_predicted_labels", "minimum_norm", "strongest")
             for eps in (0.1, 0.2, 0.3)] + [("minimum_norm:median_eps", 0.137)]

    def rows(pairs: list[tuple[str, float]]) -> pd.DataFrame:
        return pd.DataFrame([{"evaluation": name, "eps": eps} for name, eps in pairs])

    assert checked_epsilons(rows(curve + [("pgd", 0.2), ("autoattack:apgd-ce", 0.2)])) == [0.2]
    assert checked_epsilons(rows(curve + [("pgd", eps) for eps in (0.1, 0.2, 0.3)])) == [0.1, 0.2, 0.3]
    assert checked_epsilons(rows(curve)) == [0.1, 0.2, 0.3]
