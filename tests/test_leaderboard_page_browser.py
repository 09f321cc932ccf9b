"""The committed leaderboard page in headless Chromium: its rows are the CSV's, it sorts, it stays offline.

Opens ``leaderboards/index.html`` (generated from the committed records; tests/test_leaderboard.py checks
that regenerating it gives the same bytes) through ``file://`` and saves a screenshot artefact.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from browser import (
    REPO,
    artifacts_dir,
    click_header,
    header_sort_states,
    offsite_requests,
    open_in_chromium,
    row_order,
    table_rows,
)

pytestmark = pytest.mark.browser

LEADERBOARDS = REPO / "leaderboards"


def _tables() -> list[tuple[str, pd.DataFrame]]:
    """(accuracy table id, its CSV rows in table order) per test set of the synthetic page."""
    frame = pd.read_csv(LEADERBOARDS / "synthetic.csv", dtype={"manifest_sha256": str})
    out = []
    for (split, manifest), part in frame.groupby(["split", "manifest_sha256"], sort=False):
        out.append((f"synthetic-{split}-{manifest[:8]}", part.reset_index(drop=True)))
    return out


def _mean_std(mean: float, std: float) -> str:
    return f"{mean:.2f}" + ("" if math.isnan(std) else f" ± {std:.2f}")


def test_page_rows_equal_the_csv_rows_and_sort_by_miou():
    tables = _tables()
    assert tables, "leaderboards/synthetic.csv has no rows"
    with open_in_chromium(LEADERBOARDS / "index.html", height=1200) as opened:
        for table_id, rows in tables:
            shown = table_rows(opened.page, table_id)
            assert len(shown) == len(rows)
            for cells, (_, row) in zip(shown, rows.iterrows(), strict=True):
                assert cells[0].split()[0] == row["row_id"]
                assert cells[1:4] == [row["method"], row["strategy"], row["weak"]]
                assert cells[5] == _mean_std(row["mIoU mean"], row["mIoU std"])
                assert cells[7] == _mean_std(row["oIoU mean"], row["oIoU std"])
            click_header(opened.page, table_id, "mIoU")  # first click: high first (already the order)
            click_header(opened.page, table_id, "mIoU")  # second click: low first
            ascending = sorted(range(len(rows)), key=lambda i: (rows.loc[i, "mIoU mean"], i))
            assert row_order(opened.page, table_id)[0] == ascending[0]
            assert [rows.loc[i, "mIoU mean"] for i in row_order(opened.page, table_id)] == sorted(rows["mIoU mean"])
            assert "ascending" in header_sort_states(opened.page, table_id)
        opened.page.reload()
        opened.page.screenshot(path=str(artifacts_dir() / "leaderboard-synthetic.png"), full_page=True)
        assert offsite_requests(opened.requests) == []
    assert (artifacts_dir() / "leaderboard-synthetic.png").stat().st_size > 50_000
