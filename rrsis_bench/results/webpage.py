"""The leaderboard web page: one static, self-contained HTML file per leaderboard folder.

The leaderboard code describes the page as plain data (:class:`Page` → :class:`Section` →
:class:`Table` / :class:`Figure`); :func:`render_page` turns it into HTML with the packaged jinja2
template ``templates/leaderboard.html.j2``. The page works from ``file://`` with no server and no
network: CSS and the small sorting script are inline, figures are inline SVG, and a
Content-Security-Policy forbids the page to load anything else.

All text is escaped (autoescape); only figure SVG, produced by :mod:`rrsis_bench.results.plots`, is
inserted as markup. In paragraphs, notes and the footer, text between backticks is shown as code.
Rendering is deterministic: the same :class:`Page` gives byte-identical HTML.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import markupsafe

from rrsis_bench.io import atomic_write_text


@dataclass
class Cell:
    """One table cell.

    ``sort`` is the value the column sorts by: a number in a numeric column, a string in a text
    column; None (or NaN) sorts last in both directions (e.g. a "–" cell).
    """

    text: str
    sort: float | str | None = None
    href: str | None = None
    title: str | None = None
    classes: tuple[str, ...] = ()


@dataclass
class Table:
    caption: str
    columns: list[str]
    numeric: list[bool]  # per column: right-aligned and sorted as numbers
    rows: list[list[Cell]]
    note: str = ""  # a paragraph under the table
    table_id: str = ""  # stable DOM id; generated from the position on the page when empty


@dataclass
class Figure:
    caption: str
    svg: str  # inline SVG markup (from rrsis_bench.results.plots)


@dataclass
class Section:
    heading: str
    paragraphs: list[str]
    tables: list[Table]
    figures: list[Figure]
    subsections: list[Section] = field(default_factory=list)


@dataclass
class Page:
    title: str
    paragraphs: list[str]
    sections: list[Section]
    generated_by: str


TEMPLATE = "leaderboard.html.j2"
# Section headings start at <h2> (the page title is <h1>); HTML has no level below <h6>.
_TOP_HEADING_LEVEL, _MAX_HEADING_LEVEL = 2, 6
_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-:.]*$")


def render_page(page: Page) -> str:
    """The complete HTML5 document for ``page``."""
    ids = _IdAllocator()
    sections = [_section_view(section, _TOP_HEADING_LEVEL, ids) for section in page.sections]
    return _environment().get_template(TEMPLATE).render(page=page, sections=sections)


def write_page(path: str | Path, page: Page) -> Path:
    """Render ``page`` and write it to ``path`` atomically (a reader never sees half a page)."""
    return atomic_write_text(path, render_page(page))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("rrsis_bench.results", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["inline_code"] = _inline_code
    return env


def _inline_code(text: str) -> markupsafe.Markup:
    """Escape ``text``, then show `backticked` spans as <code> (they are escaped already)."""
    escaped = str(markupsafe.escape(text))
    return markupsafe.Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


class _IdAllocator:
    """Unique DOM ids: section ids from their headings, table ids as given or by position."""

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.tables = 0

    def section(self, heading: str) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-") or "section"
        candidate, number = f"s-{slug}", 1
        while candidate in self.used:
            number += 1
            candidate = f"s-{slug}-{number}"
        self.used.add(candidate)
        return candidate

    def table(self, table: Table) -> str:
        self.tables += 1
        table_id = table.table_id or f"table-{self.tables}"
        if not _ID_RE.match(table_id):
            raise ValueError(f"table id {table_id!r} (table {table.caption!r}) must start with a letter and "
                             "hold only letters, digits, '-', '_', ':' or '.'")
        if table_id in self.used:
            raise ValueError(f"two tables (or a table and a section) share the DOM id {table_id!r}; give "
                             "each table its own table_id")
        self.used.add(table_id)
        return table_id


def _section_view(section: Section, level: int, ids: _IdAllocator) -> dict:
    return {
        "id": ids.section(section.heading),
        "level": min(level, _MAX_HEADING_LEVEL),
        "heading": section.heading,
        "paragraphs": section.paragraphs,
        "tables": [_table_view(table, ids) for table in section.tables],
        "figures": [{"caption": f.caption, "svg": markupsafe.Markup(f.svg)} for f in section.figures],
        "subsections": [_section_view(sub, level + 1, ids) for sub in section.subsections],
    }


def _table_view(table: Table, ids: _IdAllocator) -> dict:
    table_id = ids.table(table)
    if len(table.numeric) != len(table.columns):
        raise ValueError(f"table {table_id!r}: {len(table.columns)} columns but {len(table.numeric)} "
                         "numeric flags; give one flag per column")
    rows = []
    for index, row in enumerate(table.rows):
        if len(row) != len(table.columns):
            raise ValueError(f"table {table_id!r}: row {index} has {len(row)} cells for "
                             f"{len(table.columns)} columns")
        rows.append([_cell_view(cell, numeric, table_id, column)
                     for cell, numeric, column in zip(row, table.numeric, table.columns, strict=True)])
    return {"id": table_id, "caption": table.caption, "note": table.note,
            "columns": list(zip(table.columns, table.numeric, strict=True)), "rows": rows}


def _cell_view(cell: Cell, numeric: bool, table_id: str, column: str) -> dict:
    return {"text": cell.text, "href": cell.href, "title": cell.title,
            "classes": " ".join(("num",) * numeric + tuple(cell.classes)),
            "sort": _sort_key(cell.sort, numeric, table_id, column)}


def _sort_key(value: float | str | None, numeric: bool, table_id: str, column: str) -> str | None:
    """The ``data-sort`` attribute: a number JavaScript's ``Number()`` reads back exactly, or the text."""
    if value is None:
        return None
    if not numeric:
        return str(value)
    if isinstance(value, str) or isinstance(value, bool):
        raise ValueError(f"table {table_id!r}, numeric column {column!r}: sort key {value!r} is not a number")
    number = float(value)
    if math.isnan(number):
        return None
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return repr(number)
