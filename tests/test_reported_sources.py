"""Every published number in ``reported.csv`` cites the paper (or the authors' README) and the table that first
published it; a row whose primary table could not be confirmed cites its compilation and says so."""

import math
import re

from rrsis_bench.results.leaderboard import load_reported

NOT_FOUND = "primary not found"
#: "Table II", "Table 1", "table III": a table with its number, or a README table named by its heading.
NAMES_A_TABLE = re.compile(r"\b[Tt]able\s+(?:[0-9]+|[IVXL]+)\b|README table '[^']+'")
#: How a source says it is a secondary compilation rather than the paper that first published the number.
COMPILATION = "(compilation"
#: Rows whose primary source (paper or authors' README, with its table) was confirmed, per dataset.
#: Raise these when more primaries are confirmed; they guard against a regression to compilation citations.
MIN_PRIMARY_FOUND = {"refsegrs": 2, "rrsisd": 24, "ris-lad": 34, "risbench": 1}
MIN_PRIMARY_FOUND_TOTAL = 61


def test_every_source_names_the_table_holding_the_number():
    reported = load_reported()
    assert len(reported) == 107
    missing = reported.loc[~reported["source"].str.contains(NAMES_A_TABLE), ["dataset", "method", "source"]]
    assert missing.empty, missing.to_string()


def test_a_compilation_is_the_source_only_where_the_primary_was_not_found():
    reported = load_reported()
    for _, row in reported.iterrows():
        where = f"{row['dataset']} {row['split']} {row['method']} {row['setting']!r}"
        cites_compilation = COMPILATION in row["source"]
        not_found = row["secondary_source"].startswith(NOT_FOUND)
        assert cites_compilation == not_found, where
        # DiCoR's manuscript is the primary only for DiCoR's own rows; elsewhere it is a compilation.
        if "DiCoR manuscript" in row["source"]:
            assert cites_compilation, where
        if not_found:
            # "primary not found: <what was checked>", and the note says so as well.
            checked = row["secondary_source"].removeprefix(NOT_FOUND)
            assert checked.startswith(": ") and len(checked) > 40, where
            assert "not confirmed" in row["note"], where


def test_a_second_source_never_repeats_the_source():
    reported = load_reported()
    assert (reported["source"] != reported["secondary_source"]).all()
    # A number taken from a compilation although its primary is known names that compilation second.
    second = reported["secondary_source"]
    from_compilation = second.str.contains(COMPILATION, regex=False) & ~second.str.startswith(NOT_FOUND)
    taken_from_compilation = reported[from_compilation]
    assert len(taken_from_compilation) == 3  # RS2-SAM2 on RefSegRS and RRSIS-D, EVF-SAM on RRSIS-D
    assert not taken_from_compilation["source"].str.contains("DiCoR manuscript").any()


def test_primary_found_counts_do_not_regress():
    reported = load_reported()
    primary = ~reported["source"].str.contains(COMPILATION, regex=False) & reported["source"].str.contains(
        NAMES_A_TABLE
    )
    found = reported[primary & ~reported["secondary_source"].str.startswith(NOT_FOUND)]
    per_dataset = found.groupby("dataset").size().to_dict()
    for dataset, minimum in MIN_PRIMARY_FOUND.items():
        assert per_dataset.get(dataset, 0) >= minimum, (dataset, per_dataset)
    assert len(found) >= MIN_PRIMARY_FOUND_TOTAL


# RS2-SAM2 (AAAI 2026) Tables 1 and 2, test columns, as printed: Pr@0.5, Pr@0.6, Pr@0.7, Pr@0.8, Pr@0.9, oIoU,
# mIoU. A blank cell in reported.csv is a value the compilation the row was first taken from did not carry.
RS2SAM2_TABLES = {
    ("refsegrs", "RS2-SAM 2", "Table 1"): (84.31, 79.42, 70.89, 55.70, 21.19, 80.87, 73.90),
    ("rrsisd", "RS2-SAM 2", "Table 2"): (77.56, 72.34, 61.76, 47.92, 29.73, 78.99, 66.72),
    ("rrsisd", "EVF-SAM", "Table 2"): (72.16, 66.50, 56.59, 43.92, 25.48, 76.77, 62.75),
}


def test_rows_citing_rs2sam2_hold_the_numbers_of_the_cited_table():
    reported = load_reported()
    columns = ["Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9", "oIoU", "mIoU"]
    source = reported["source"]
    cited = reported[source.str.startswith("RS2-SAM2") & ~source.str.contains(COMPILATION, regex=False)]
    cited_rows = sorted(zip(cited["dataset"], cited["method"], strict=True))
    assert cited_rows == sorted((dataset, method) for dataset, method, _ in RS2SAM2_TABLES)
    for (dataset, method, table), printed in RS2SAM2_TABLES.items():
        row = cited[(cited["dataset"] == dataset) & (cited["method"] == method)].iloc[0]
        assert row["source"].endswith(table)
        for column, value in zip(columns, printed, strict=True):
            assert math.isnan(row[column]) or row[column] == value, (dataset, method, column)
