"""Every figure README.md and docs/ quote from the committed run records equals that record.

Figures are quoted inside a marked region that names the records folder and, in order, the record
and field of every figure in it::

    <!-- figures leaderboards/records/synthetic: fianet_lite-seed0:mIoU fianet_lite-seed0:wall - -->
    ... test mIoU 56.85 ... 21 min 58 s ... 43.65 ...<!-- /figures -->

A figure is a number with two decimals (a metric, formatted ``%.2f``) or a duration ``M min S s``
(``timing.wall_s``). ``RUN:FIELD`` takes FIELD (a metric key, ``wall``, or ``breakdown.PART``: the
seconds of one part of ``timing.breakdown_s``, ``%.2f``) from
``<folder>/RUN/record.json``; ``-`` marks a figure measured elsewhere (named in the text, e.g. the
class-only oracle of docs/datasets/synthetic.md), which is counted but not compared. Region markers
sit mid-line in paragraphs (a line starting with ``<!--`` would end the paragraph).

A region may also name a leaderboard CSV instead of a records folder (``<!-- figures
leaderboards/synthetic.csv: 1e3d5127:mIoU 1e3d5127:mIoU.std … -->``): ``GROUP:METRIC`` then takes the row
whose ``group_hash`` starts with GROUP, ``METRIC`` its mean over seeds, ``METRIC.std`` / ``.low`` /
``.high`` its sample std and 95 % interval (``%.2f``): the README's table of results at S is quoted so.

After the committed records change, rewrite the quoted figures with::

    python tests/test_readme_figures.py --write
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
REGION = re.compile(r"<!-- figures (?P<folder>[^:\s]+): (?P<refs>[^>]*?)\s*-->(?P<body>.*?)<!-- /figures -->", re.S)
FIGURE = re.compile(r"(?<![\w.])(?:\d+\.\d{2}|\d+ min \d+ s)(?![\w.]|\d)")
SKIP = "-"
# Documents that must quote record figures: a region deleted by accident fails the test.
EXPECTED_REGIONS = {"README.md": 1, "docs/methods/fianet-lavt.md": 3, "docs/methods/alignformer.md": 1,
                    "docs/strategies.md": 1, "docs/performance.md": 2}


def format_wall(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s"


def row_value(table: Path, ref: str) -> str:
    """The text a reference ``GROUP:METRIC[.std|.low|.high]`` into a leaderboard CSV must appear as."""
    import pandas as pd

    group, _, field = ref.partition(":")
    frame = pd.read_csv(table, dtype={"group_hash": str})
    rows = frame[frame["group_hash"].str.startswith(group)]
    if len(rows) != 1:
        raise ValueError(f"{table}: {len(rows)} rows have a group_hash starting with {group!r}; quote exactly one")
    metric, _, part = field.partition(".")
    column = {"": f"{metric} mean", "std": f"{metric} std", "low": f"{metric} ci low", "high": f"{metric} ci high"}[part]
    return f"{float(rows.iloc[0][column]):.2f}"


def figure_value(folder: Path, ref: str) -> str:
    """The text a reference ``RUN:FIELD`` must appear as."""
    run, sep, field = ref.partition(":")
    if not sep:
        raise ValueError(f"figure reference {ref!r} is not RUN:FIELD (or '-')")
    if folder.suffix == ".csv":
        return row_value(folder, ref)
    record = json.loads((folder / run / "record.json").read_text(encoding="utf-8"))
    if record["status"] != "complete":
        raise ValueError(f"{folder / run} is {record['status']!r}; quote complete runs only")
    if field == "wall":
        return format_wall(record["timing"]["wall_s"])
    if field.startswith("breakdown."):  # seconds of one part of the wall time (timing.breakdown_s)
        return f"{record['timing']['breakdown_s'][field.removeprefix('breakdown.')]:.2f}"
    return f"{record['metrics'][field]:.2f}"


def regions(text: str, root: Path = REPO):
    """(match, records folder, references) of every figures region of ``text``; folders are relative to ``root``."""
    for match in REGION.finditer(text):
        yield match, root / match["folder"], match["refs"].split()


def check(path: Path, root: Path = REPO) -> list[str]:
    """One line per figure of ``path`` that differs from its record (empty when all agree)."""
    problems = []
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(root)
    for match, folder, refs in regions(text, root):
        found = FIGURE.findall(match["body"])
        line = text.count("\n", 0, match.start()) + 1
        if len(found) != len(refs):
            problems.append(f"{where}:{line}: {len(found)} figures {found} but {len(refs)} references")
            continue
        for quoted, ref in zip(found, refs, strict=True):
            if ref != SKIP and quoted != (expected := figure_value(folder, ref)):
                problems.append(f"{where}:{line}: {quoted} should be {expected} ({ref})")
    return problems


def rewrite(path: Path, root: Path = REPO) -> bool:
    """Put each record's figure into ``path``'s regions; True when the file changed."""
    text = path.read_text(encoding="utf-8")

    def fill(match: re.Match) -> str:
        refs = iter(match["refs"].split())
        folder = root / match["folder"]

        def one(figure: re.Match) -> str:
            ref = next(refs)
            return figure[0] if ref == SKIP else figure_value(folder, ref)

        body = FIGURE.sub(one, match["body"])
        return match[0][: match.start("body") - match.start()] + body + "<!-- /figures -->"

    new = REGION.sub(fill, text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_quoted_figures_equal_the_committed_records(path):
    problems = check(path)
    assert not problems, "\n".join(problems) + "\nFix: python tests/test_readme_figures.py --write"


def test_the_documents_still_quote_the_records():
    counts = {str(p.relative_to(REPO)): len(list(regions(p.read_text(encoding="utf-8")))) for p in DOCUMENTS}
    for name, expected in EXPECTED_REGIONS.items():
        assert counts.get(name) == expected, f"{name}: {counts.get(name)} figures regions, expected {expected}"


def test_a_figure_edited_by_hand_fails(tmp_path):
    folder = tmp_path / "records"
    (folder / "a").mkdir(parents=True)
    record = {"status": "complete", "metrics": {"mIoU": 56.849, "oIoU": 63.856}, "timing": {"wall_s": 1318.2}}
    (folder / "a" / "record.json").write_text(json.dumps(record))
    doc = tmp_path / "doc.md"
    region = (
        "Intro.\nText <!-- figures records: a:mIoU a:oIoU a:wall - -->mIoU {} / oIoU\n{}, {}, "
        "oracle 43.65<!-- /figures --> and 1.00 outside."
    )
    doc.write_text(region.format("56.85", "63.86", "21 min 58 s"))
    assert check(doc, tmp_path) == []
    doc.write_text(region.format("56.85", "63.87", "21 min 58 s"))
    assert check(doc, tmp_path) == ["doc.md:2: 63.87 should be 63.86 (a:oIoU)"]
    doc.write_text(region.format("56.85", "63.86", "21 min 45 s"))
    assert check(doc, tmp_path) == ["doc.md:2: 21 min 45 s should be 21 min 58 s (a:wall)"]
    doc.write_text(region.format("56.85", "63.86", "21 min 58 s").replace("oracle 43.65", "oracle 43.65 or 1.50"))
    assert "5 figures" in check(doc, tmp_path)[0]  # a figure added without a reference
    doc.write_text(region.format("50.00", "63.86", "1 min 2 s"))
    assert rewrite(doc, tmp_path) and check(doc, tmp_path) == []
    assert doc.read_text() == region.format("56.85", "63.86", "21 min 58 s")


def test_a_leaderboard_row_is_quoted_by_its_group_hash(tmp_path):
    table = tmp_path / "board.csv"
    table.write_text("group_hash,mIoU mean,mIoU std,mIoU ci low,mIoU ci high\n"
                     "abc123ff,61.234,2.5,55.01,67.456\nabd99,50,1,49,51\n")
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- figures board.csv: abc1:mIoU abc1:mIoU.std abc1:mIoU.low abc1:mIoU.high -->"
                   "61.23 ± 2.50 [55.01, 67.46]<!-- /figures -->\n")
    assert check(doc, tmp_path) == []
    doc.write_text("<!-- figures board.csv: abc1:mIoU -->61.24<!-- /figures -->\n")
    assert check(doc, tmp_path) == ["doc.md:1: 61.24 should be 61.23 (abc1:mIoU)"]
    doc.write_text("<!-- figures board.csv: ab:mIoU -->61.23<!-- /figures -->\n")
    with pytest.raises(ValueError, match="2 rows have a group_hash starting with 'ab'"):
        check(doc, tmp_path)


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        for document in DOCUMENTS:
            if rewrite(document):
                print(f"updated {document.relative_to(REPO)}")
    problems = [problem for document in DOCUMENTS for problem in check(document)]
    print("\n".join(problems) or "all quoted figures equal their records")
    sys.exit(1 if problems else 0)
