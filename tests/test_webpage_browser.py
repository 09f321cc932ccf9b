"""The leaderboard web page in headless Chromium: the DOM, sorting, no network, a screenshot artefact.

Run with ``pytest -m browser`` (needs Debian's ``chromium`` and playwright from the dev extra).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import (
    artifacts_dir,
    click_header,
    header_sort_states,
    offsite_requests,
    open_in_chromium,
    row_order,
    table_rows,
)
from webpage_sample import MAIN_COLUMNS, MAIN_TABLE, SCRIPT_TEXT, SIZE_TABLE, main_cells, sample_page

from rrsis_bench.results.webpage import write_page

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page_path(tmp_path_factory) -> Path:
    return write_page(tmp_path_factory.mktemp("board") / "index.html", sample_page())


def expected_order(keys: list, descending: bool) -> list[int]:
    """Row indices sorted by key (stable: ties keep their order), rows without a key last."""
    present = [i for i, key in enumerate(keys) if key is not None]
    missing = [i for i, key in enumerate(keys) if key is None]
    return sorted(present, key=lambda i: keys[i], reverse=descending) + missing  # reverse= keeps ties stable


def column_keys(column: str) -> list:
    index = MAIN_COLUMNS.index(column)
    return [row[index].sort for row in main_cells()]


def test_rendered_rows_equal_the_page_rows(page_path):
    with open_in_chromium(page_path) as opened:
        assert table_rows(opened.page, MAIN_TABLE) == [[cell.text for cell in row] for row in main_cells()]
        assert table_rows(opened.page, SIZE_TABLE)[1] == ["fianet_lite", "–", "30.0", "52.0", "75.0"]
        assert row_order(opened.page, MAIN_TABLE) == [0, 1, 2, 3, 4]
        assert header_sort_states(opened.page, MAIN_TABLE) == [None] * len(MAIN_COLUMNS)
        # The <script> in a cell is text, not code: it shows verbatim and never ran.
        assert opened.page.title() == "rrsis-bench leaderboard: synthetic"
        assert table_rows(opened.page, MAIN_TABLE)[3][1] == SCRIPT_TEXT


@pytest.mark.parametrize("column", ["mIoU", "GFLOPs"])
def test_numeric_header_sorts_high_first_then_low_first(page_path, column):
    keys = column_keys(column)
    position = MAIN_COLUMNS.index(column)
    with open_in_chromium(page_path) as opened:
        click_header(opened.page, MAIN_TABLE, column)
        assert row_order(opened.page, MAIN_TABLE) == expected_order(keys, descending=True)
        assert header_sort_states(opened.page, MAIN_TABLE)[position] == "descending"
        click_header(opened.page, MAIN_TABLE, column)
        assert row_order(opened.page, MAIN_TABLE) == expected_order(keys, descending=False)
        states = header_sort_states(opened.page, MAIN_TABLE)
        assert states[position] == "ascending" and states.count(None) == len(MAIN_COLUMNS) - 1
    # The fixture holds ties and a missing value, so stability and "missing last" are really exercised.
    assert len(set(keys)) < len(keys) or None in keys


def test_text_header_sorts_a_first_then_z_first(page_path):
    keys = column_keys("Method")
    with open_in_chromium(page_path) as opened:
        click_header(opened.page, MAIN_TABLE, "mIoU")
        click_header(opened.page, MAIN_TABLE, "Method")
        assert row_order(opened.page, MAIN_TABLE) == expected_order(keys, descending=False) == [2, 0, 1, 4, 3]
        assert header_sort_states(opened.page, MAIN_TABLE) == [
            "ascending", None, None, None, None, None]
        click_header(opened.page, MAIN_TABLE, "Method")
        assert row_order(opened.page, MAIN_TABLE) == [3, 4, 1, 0, 2]
        assert header_sort_states(opened.page, MAIN_TABLE)[0] == "descending"
        # Rows 2 and 3 tie on mIoU and are now shown 3 before 2: ties go back to the original order.
        click_header(opened.page, MAIN_TABLE, "mIoU")
        assert row_order(opened.page, MAIN_TABLE) == expected_order(column_keys("mIoU"), True) == [1, 2, 3, 0, 4]
        # A column without sort keys keeps the original order in both directions.
        click_header(opened.page, MAIN_TABLE, "Record")
        assert row_order(opened.page, MAIN_TABLE) == [0, 1, 2, 3, 4]
        click_header(opened.page, MAIN_TABLE, "Record")
        assert row_order(opened.page, MAIN_TABLE) == [0, 1, 2, 3, 4]
        # Sorting one table leaves the other alone.
        assert row_order(opened.page, SIZE_TABLE) == [0, 1]


def test_page_loads_nothing_from_the_network(page_path):
    with open_in_chromium(page_path) as opened:
        click_header(opened.page, MAIN_TABLE, "oIoU")
        assert opened.requests and opened.requests[0] == page_path.resolve().as_uri()
        assert offsite_requests(opened.requests) == []


def test_layout_and_screenshot(page_path):
    with open_in_chromium(page_path) as opened:
        page = opened.page
        # Figures scale to the content width, the header row sticks, numbers align right.
        widths = page.eval_on_selector_all("figure svg",
                                           "svgs => svgs.map(s => s.getBoundingClientRect().width)")
        assert len(widths) == 3 and all(500 < width <= 860 for width in widths), widths
        th = f"table#{MAIN_TABLE} thead th"
        assert page.eval_on_selector(th, "th => getComputedStyle(th).position") == "sticky"
        style = "td => getComputedStyle(td)"
        assert page.eval_on_selector(f"table#{MAIN_TABLE} td.num", f"{style}.textAlign") == "right"
        assert page.eval_on_selector(f"table#{MAIN_TABLE} td.best", f"{style}.fontWeight") == "700"
        shot = artifacts_dir() / "webpage-sample.png"
        page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 30_000


def test_narrow_screen_scrolls_the_table_not_the_page(page_path):
    with open_in_chromium(page_path, width=420, height=800) as opened:
        page = opened.page
        wrapper = page.eval_on_selector(
            f"table#{MAIN_TABLE}", "t => [t.parentElement.scrollWidth, t.parentElement.clientWidth]")
        assert wrapper[0] > wrapper[1], "the wide table should scroll inside its box"
        assert page.evaluate("document.documentElement.scrollWidth") <= 420
        page.screenshot(path=str(artifacts_dir() / "webpage-sample-narrow.png"), full_page=True)
