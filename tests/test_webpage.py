"""The leaderboard web page without a browser: structure, escaping, self-containment, determinism, plots."""

from __future__ import annotations

import math
import os
import re
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest
from browser import open_in_chromium
from webpage_sample import MAIN_COLUMNS, MAIN_TABLE, SCRIPT_TEXT, SIZE_TABLE, main_cells, sample_page

from rrsis_bench.results.plots import Point, curves_svg, grouped_bars_svg, scatter_svg
from rrsis_bench.results.webpage import Cell, Figure, Page, Section, Table, render_page, write_page

SVG_NS = "{http://www.w3.org/2000/svg}"


class PageParser(HTMLParser):
    """Collects what the tests look at: tables (header and body cells), elements with attributes, text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, dict] = {}
        self.elements: list[tuple[str, dict[str, str | None]]] = []  # (tag, attributes) in document order
        self.script_texts: list[str] = []
        self._table: dict | None = None
        self._cell: dict | None = None
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.elements.append((tag, attributes))
        if tag == "table":
            self._table = {"header": [], "rows": [], "row_ids": []}
            self.tables[attributes["id"]] = self._table
        elif tag == "tr" and self._table is not None and "data-row" in attributes:
            self._table["rows"].append([])
            self._table["row_ids"].append(attributes["data-row"])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = {"text": "", "attrs": attributes, "href": None}
            (self._table["rows"][-1] if tag == "td" else self._table["header"]).append(self._cell)
        elif tag == "a" and self._cell is not None:
            self._cell["href"] = attributes.get("href")
        elif tag == "script":
            self._in_script = True
            self.script_texts.append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th"):
            self._cell = None
        elif tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_script:
            self.script_texts[-1] += data


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def page() -> Page:
    return sample_page()


@pytest.fixture(scope="module")
def parsed(page) -> PageParser:
    return parse(render_page(page))


def test_table_cells_equal_the_page_data(parsed):
    table = parsed.tables[MAIN_TABLE]
    assert [th["text"] for th in table["header"]] == MAIN_COLUMNS
    assert [th["attrs"]["data-type"] for th in table["header"]] == [
        "text", "text", "number", "number", "number", "text"]
    assert table["row_ids"] == ["0", "1", "2", "3", "4"]
    expected = main_cells()
    assert [[c["text"] for c in row] for row in table["rows"]] == [[c.text for c in row] for row in expected]
    for row, expected_row in zip(table["rows"], expected, strict=True):
        for cell, want in zip(row, expected_row, strict=True):
            assert cell["href"] == want.href
            assert cell["attrs"].get("title") == want.title
            assert set(want.classes) <= set((cell["attrs"].get("class") or "").split())
    # Sort keys: text as given, numbers as JavaScript's Number() reads them back, missing ones absent.
    assert [c["attrs"].get("data-sort") for c in table["rows"][3]] == [
        "zeta_method", SCRIPT_TEXT, "45.0", "46.0", None, None]
    assert table["rows"][1][2]["attrs"]["class"] == "num best"
    assert table["rows"][2][2]["attrs"]["class"] == "num tied"
    size = parsed.tables[SIZE_TABLE]
    assert [[c["text"] for c in row] for row in size["rows"]] == [
        ["baseline", "10.0", "25.0", "48.0", "70.0"], ["fianet_lite", "–", "30.0", "52.0", "75.0"]]


def test_text_is_escaped_and_only_figures_are_markup(page, parsed):
    html = render_page(page)
    # The cell holding a <script> tag shows it as text: the page's only script is the sorting one.
    assert len(parsed.script_texts) == 1 and "sortTable" in parsed.script_texts[0]
    assert parsed.tables[MAIN_TABLE]["rows"][3][1]["text"] == SCRIPT_TEXT
    assert "&lt;script&gt;document.title=" in html
    # Headings, captions, paragraphs, notes: escaped too; backticks become <code> around escaped text.
    hostile = Page(title="<b>T</b>", paragraphs=["run `a<b>` & <i>x</i>"], generated_by="`<img src=x>`",
                   sections=[Section("<em>S</em>", ["<u>p</u>"], [Table("<cap>", ["<col>"], [True],
                                                                        [[Cell("<c>", sort=1)]], note="<n>")],
                                     [Figure("<fig>", "<svg id='raw'></svg>")])])
    html = render_page(hostile)
    for raw in ("<b>T</b>", "<i>x</i>", "<em>S</em>", "<u>p</u>", "<cap>", "<col>", "<c>", "<n>", "<fig>",
                "<img src=x>"):
        assert raw not in html
    assert "<p>run <code>a&lt;b&gt;</code> &amp; &lt;i&gt;x&lt;/i&gt;</p>" in html
    assert "<code>&lt;img src=x&gt;</code>" in html
    assert "<svg id='raw'></svg>" in html  # figure markup goes in as is


def test_page_references_nothing_remote(parsed):
    remote = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)  # any scheme, or protocol-relative
    for tag, attributes in parsed.elements:
        for name in ("src", "srcset", "data", "poster", "action"):
            assert attributes.get(name) is None, f"<{tag} {name}=...> loads a resource"
        href = attributes.get("href") or attributes.get("xlink:href")
        if href is not None:
            assert tag != "link", "no stylesheet or icon link: the page is self-contained"
            assert not remote.match(href), f"<{tag} href={href!r}> points off the page's folder"
        assert not re.search(r"url\(\s*['\"]?(?!#)", attributes.get("style") or ""), (tag, attributes)
    tags = {tag for tag, _ in parsed.elements}
    assert not tags & {"link", "img", "iframe", "object", "embed", "base"}
    csp = [attributes["content"] for tag, attributes in parsed.elements
           if tag == "meta" and attributes.get("http-equiv") == "Content-Security-Policy"]
    assert csp and csp[0].startswith("default-src 'none';")


def test_table_of_contents_links_every_section_in_order(parsed):
    toc_links = []
    in_nav = False
    for tag, attributes in parsed.elements:
        if tag == "nav":
            in_nav = True
        elif tag == "main":
            in_nav = False
        elif tag == "a" and in_nav:
            toc_links.append(attributes["href"])
    section_ids = [a["id"] for t, a in parsed.elements if t == "section"]
    assert toc_links == [f"#{i}" for i in section_ids]
    assert section_ids == ["s-synthetic-test-777-samples", "s-per-object-size", "s-weak-label-ratio",
                           "s-reported-numbers"]
    headings = [t for t, _ in parsed.elements if re.fullmatch(r"h[1-6]", t)]
    assert headings == ["h1", "h2", "h2", "h3", "h3", "h2"]  # title, "Contents", sections by depth


def test_ids_are_unique_and_generated_when_missing():
    twice = Section("Same", [], [Table("a", ["x"], [True], [[Cell("1", sort=1)]])], [])
    html = render_page(Page("t", [], [twice, twice], "g"))
    ids = [a["id"] for _, a in parse(html).elements if "id" in a]
    assert ids == ["s-same", "table-1", "s-same-2", "table-2"]


def test_numeric_sort_keys_read_back_by_javascript():
    keys = [3, np.float64(0.1), math.nan, math.inf, -math.inf, None, 1e-07]
    table = Table("t", ["v"], [True], [[Cell(str(k), sort=k)] for k in keys], table_id="t")
    rows = parse(render_page(Page("t", [], [Section("s", [], [table], [])], "g"))).tables["t"]["rows"]
    assert [row[0]["attrs"].get("data-sort") for row in rows] == [
        "3.0", "0.1", None, "Infinity", "-Infinity", None, "1e-07"]


@pytest.mark.parametrize(("table", "message"), [
    (Table("t", ["a", "b"], [True], []), "2 columns but 1 numeric flags"),
    (Table("t", ["a"], [True], [[Cell("x", sort=1), Cell("y")]]), "row 0 has 2 cells for 1 columns"),
    (Table("t", ["a"], [True], [[Cell("x", sort="12")]]),
     "numeric column 'a': sort key '12' is not a number"),
    (Table("t", ["a"], [True], [], table_id="1st table"), "must start with a letter"),
])
def test_malformed_tables_are_refused(table, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        render_page(Page("t", [], [Section("s", [], [table], [])], "g"))


def test_duplicate_table_ids_are_refused():
    tables = [Table("a", ["x"], [True], [], table_id="same"), Table("b", ["x"], [True], [], table_id="same")]
    with pytest.raises(ValueError, match="share the DOM id 'same'"):
        render_page(Page("t", [], [Section("s", [], tables, [])], "g"))


def test_render_is_deterministic():
    # Built twice from scratch (plots redrawn), rendered twice: byte-identical.
    assert render_page(sample_page()) == render_page(sample_page())


def _svg_checks(svg: str) -> ET.Element:
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    assert root.find(f"{SVG_NS}metadata") is None and "<?xml" not in svg and "DOCTYPE" not in svg
    ids = {element.get("id") for element in root.iter() if element.get("id")}
    references = set(re.findall(r'href="#([^"]+)"', svg)) | set(re.findall(r"url\(#([^)]+)\)", svg))
    assert references and references <= ids, references - ids
    assert 'font-family' in svg and "<path" in svg and "glyph" not in svg  # text as text, no embedded font
    return root


def _texts(root: ET.Element) -> list[str]:
    return ["".join(element.itertext()) for element in root.iter(f"{SVG_NS}text")]


def test_plots_are_deterministic_self_contained_svg():
    points = [Point("baseline", 1.0, 40.0, yerr=(1.0, 2.0), group="a"),
              Point("fianet_lite", 3.0, 45.0, group="b"),
              Point("fianet_big", 9.0, 50.0, xerr=0.5, yerr=1.0, group="b")]
    drawings = {
        "scatter": lambda: scatter_svg(points, "GFLOPs", "mIoU", logx=True, title="cost"),
        "bars": lambda: grouped_bars_svg(["small", "large"], {"a": [1.0, 2.0], "b": [3.0, math.nan]},
                                         {"a": [0.5, (0.1, 0.2)], "b": [1.0, 1.0]}, "mIoU"),
        "curves": lambda: curves_svg([0.1, 1.0], {"a": ([1.0, 2.0], [0.5, 1.5], [1.5, 2.5])},
                                     {"paper": ([0.1, 1.0], [3.0, 4.0])}, "ratio", "mIoU"),
    }
    svgs = {name: draw() for name, draw in drawings.items()}
    for name, draw in drawings.items():
        assert draw() == svgs[name], f"{name} is not deterministic"
        assert len(svgs[name]) < 60_000
    roots = {name: _svg_checks(svg) for name, svg in svgs.items()}
    # Labels are annotated next to their points, one legend entry per group.
    scatter_texts = _texts(roots["scatter"])
    for label in ("baseline", "fianet_lite", "fianet_big", "GFLOPs", "mIoU", "cost"):
        assert label in scatter_texts
    assert scatter_texts.count("a") == 1 and scatter_texts.count("b") == 1
    assert "paper" in _texts(roots["curves"])
    # Figures on one page never share an element id.
    id_sets = [{e.get("id") for e in root.iter() if e.get("id")} for root in roots.values()]
    assert not (id_sets[0] & id_sets[1] or id_sets[0] & id_sets[2] or id_sets[1] & id_sets[2])


def _bar_count(svg: str) -> int:
    # matplotlib writes the figure and axes backgrounds as patch_1, patch_2, then one patch per bar and
    # four spines/legend frame as further patches; count bars as the patches beyond a reference drawing.
    return len(re.findall(r'<g id="[^"]*patch_\d+">', svg))


def test_nan_values_draw_no_bar():
    full = grouped_bars_svg(["x", "y", "z"], {"a": [1.0, 2.0, 3.0]}, None, "mIoU")
    with_gap = grouped_bars_svg(["x", "y", "z"], {"a": [1.0, math.nan, 3.0]}, None, "mIoU")
    assert _bar_count(full) - _bar_count(with_gap) == 1
    assert "nan" not in with_gap.lower()


def test_plot_inputs_are_checked():
    with pytest.raises(ValueError, match="series 'a' has 1 values for 2 categories"):
        grouped_bars_svg(["x", "y"], {"a": [1.0]}, None, "mIoU")
    with pytest.raises(ValueError, match="cannot be negative"):
        scatter_svg([Point("p", 1.0, 2.0, yerr=-1.0)], "x", "y")
    with pytest.raises(ValueError, match="series 'a' needs 2 means, lows and highs"):
        curves_svg([0.1, 1.0], {"a": ([1.0], [0.5], [1.5])}, None, "ratio", "mIoU")


def test_write_page_is_atomic(tmp_path, monkeypatch):
    page = sample_page()
    target = tmp_path / "board" / "index.html"
    assert write_page(target, page) == target
    assert target.read_text(encoding="utf-8") == render_page(page)
    assert os.listdir(target.parent) == ["index.html"]
    # A write that fails at the last step leaves the previous page whole and no temporary file behind.
    before = target.read_bytes()
    changed = Page("changed", [], [], "g")

    def failing_replace(src, dst):
        raise OSError("simulated failure while replacing the page")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated failure"):
        write_page(target, changed)
    assert target.read_bytes() == before
    assert os.listdir(target.parent) == ["index.html"]


def test_browser_helper_fails_loudly_without_chromium_or_playwright(tmp_path, monkeypatch):
    page = tmp_path / "index.html"
    page.write_text("<!DOCTYPE html><title>t</title>", encoding="utf-8")
    monkeypatch.setenv("RRSIS_BENCH_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(pytest.fail.Exception, match="Chromium not found at .*no-chromium: install Debian's"):
        with open_in_chromium(page):
            pass
    monkeypatch.setenv("RRSIS_BENCH_CHROMIUM", sys.executable)  # any existing file passes the first check
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # makes the import fail
    with pytest.raises(pytest.fail.Exception, match=r"playwright is not installed: run `pip install -e"):
        with open_in_chromium(page):
            pass
