"""Helpers for tests that open generated pages in headless Chromium (tests marked ``browser``).

The browser is Debian's ``chromium`` package at /usr/bin/chromium (``RRSIS_BENCH_CHROMIUM`` names
another executable), driven by playwright's sync API; playwright never downloads a browser here.
A missing playwright or Chromium fails the test with the command that installs it, never a skip.

    with open_in_chromium(path) as opened:
        rows = table_rows(opened.page, "synthetic-main")
        assert offsite_requests(opened.requests) == []
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# No GPU, no sandbox (CI containers run as root), and none of Chromium's own calls home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOCAL_SCHEMES = ("file:", "data:", "about:")


@dataclass
class OpenedPage:
    page: Any  # playwright.sync_api.Page
    requests: list[str] = field(default_factory=list)  # every URL the page asked for, in order


def chromium_path() -> Path:
    return Path(os.environ.get("RRSIS_BENCH_CHROMIUM", DEFAULT_CHROMIUM))


@contextlib.contextmanager
def open_in_chromium(path: str | os.PathLike, *, width: int = 1280,
                     height: int = 900) -> Iterator[OpenedPage]:
    """Open the HTML file ``path`` through ``file://`` in headless Chromium; close it afterwards."""
    executable = chromium_path()
    if not executable.is_file():
        pytest.fail(f"Chromium not found at {executable}: install Debian's package with `sudo apt-get "
                    "install -y --no-install-recommends chromium` (.ci/run does this), or point "
                    "RRSIS_BENCH_CHROMIUM at a Chromium executable")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: run `pip install -e '.[dev]'` (it drives the system "
                    "Chromium; no `playwright install` is needed)")
    url = Path(path).resolve().as_uri()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            opened = OpenedPage(page)
            page.on("request", lambda request: opened.requests.append(request.url))
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url, wait_until="load")
            assert not errors, f"JavaScript errors on {url}: {errors}"
            yield opened
            assert not errors, f"JavaScript errors on {url}: {errors}"
        finally:
            browser.close()


def offsite_requests(urls: list[str]) -> list[str]:
    """The URLs that would leave the machine (anything but file:, data: and about:)."""
    return [url for url in urls if not url.startswith(LOCAL_SCHEMES)]


def table_rows(page: Any, table_id: str) -> list[list[str]]:
    """The text of each body cell of table ``table_id``, row by row, in the order shown."""
    return page.eval_on_selector(
        f"table#{table_id}",
        "t => Array.from(t.tBodies[0].rows, r => Array.from(r.cells, c => c.textContent.trim()))",
    )


def row_order(page: Any, table_id: str) -> list[int]:
    """The original index (``data-row``) of each body row of table ``table_id``, in the order shown."""
    return page.eval_on_selector(
        f"table#{table_id}", "t => Array.from(t.tBodies[0].rows, r => Number(r.dataset.row))")


def header_sort_states(page: Any, table_id: str) -> list[str | None]:
    """Each header's ``aria-sort`` attribute (None where it has none)."""
    return page.eval_on_selector(
        f"table#{table_id}", "t => Array.from(t.tHead.rows[0].cells, th => th.getAttribute('aria-sort'))")


def click_header(page: Any, table_id: str, column: str) -> None:
    """Click the sort button of the header named ``column`` in table ``table_id``."""
    exact_name = re.compile(f"^{re.escape(column)}$")
    buttons = page.locator(f"table#{table_id} thead th button").filter(has_text=exact_name)
    assert buttons.count() == 1, f"table {table_id} has {buttons.count()} headers named {column!r}, not 1"
    buttons.click()


def artifacts_dir() -> Path:
    """Where browser tests save screenshots: $RRSIS_BENCH_ARTIFACTS, else .ci/artifacts/ (created)."""
    folder = Path(os.environ.get("RRSIS_BENCH_ARTIFACTS") or REPO / ".ci" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
