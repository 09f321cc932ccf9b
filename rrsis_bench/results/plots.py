"""Figures for the leaderboard web page, drawn with matplotlib and returned as inline SVG text.

Every function returns the ``<svg>`` element alone (no XML declaration, no DOCTYPE, no metadata), ready
to be placed inside an HTML page. Output is deterministic: the same inputs give byte-identical SVG
(fixed figure size, fixed ``svg.hashsalt``, no date), and text stays text (``svg.fonttype = "none"``,
no embedded glyphs), which keeps each figure a few tens of kilobytes.

Error bars are given as distances from the value: a number (symmetric) or ``(below, above)``.
pyplot is never used, so drawing leaves no open figure and needs no GUI backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

#: Inches; at the SVG's 72 pt per inch this is 576 × 360 pt, scaled to the page width by CSS.
FIGURE_SIZE = (8.0, 5.0)
_RC = {
    "svg.hashsalt": "rrsis-bench",
    "svg.fonttype": "none",
    "font.size": 10.0,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")

ErrorBar = float | tuple[float, float] | None


@dataclass(frozen=True)
class Point:
    """One labelled point of a scatter plot; points of one ``group`` share a colour and a marker."""

    label: str
    x: float
    y: float
    xerr: ErrorBar = None
    yerr: ErrorBar = None
    group: str = ""


def scatter_svg(points: Sequence[Point], xlabel: str, ylabel: str, *, logx: bool = False,
                title: str = "") -> str:
    """A scatter plot (e.g. mIoU against GFLOPs), each point annotated with its label."""
    with _drawing(title) as (fig, ax):
        groups = list(dict.fromkeys(point.group for point in points))
        for index, group in enumerate(groups):
            style = {"color": _COLORS[index % len(_COLORS)], "marker": _MARKERS[index % len(_MARKERS)]}
            members = [p for p in points if p.group == group and _finite(p.x) and _finite(p.y)]
            for number, point in enumerate(members):
                ax.errorbar(
                    [point.x], [point.y], xerr=_error_array([point.xerr]), yerr=_error_array([point.yerr]),
                    linestyle="none", markersize=7, capsize=3, elinewidth=1,
                    label=(group or None) if number == 0 else None, **style,
                )
                ax.annotate(point.label, (point.x, point.y), xytext=(5, 5), textcoords="offset points",
                            fontsize=8, color=style["color"])
        if logx:
            _log_x(ax)
        ax.margins(0.08)  # room for the labels of the outermost points
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if any(groups):
            ax.legend(fontsize=8, loc="best")
        return _to_svg(fig)


def grouped_bars_svg(categories: Sequence[str], series: Mapping[str, Sequence[float]],
                     errors: Mapping[str, Sequence[ErrorBar]] | None, ylabel: str, title: str = "") -> str:
    """Bars per category, one bar per series side by side (e.g. mIoU per object-size bin per method).

    A NaN value draws no bar (that series has no sample in that category); a missing or NaN error
    draws no error bar.
    """
    for name, values in series.items():
        if len(values) != len(categories):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(categories)} categories")
    with _drawing(title) as (fig, ax):
        width = 0.8 / max(len(series), 1)
        positions = np.arange(len(categories), dtype=float)
        for index, (name, values) in enumerate(series.items()):
            shown = [i for i, value in enumerate(values) if _finite(value)]
            series_errors = (errors or {}).get(name)
            ax.bar(
                positions[shown] + (index - (len(series) - 1) / 2) * width, [values[i] for i in shown],
                width=width * 0.95, label=name, color=_COLORS[index % len(_COLORS)],
                yerr=None if series_errors is None else _error_array([series_errors[i] for i in shown]),
                capsize=2, error_kw={"elinewidth": 1},
            )
        ax.set_xticks(positions, list(categories))
        ax.set_ylabel(ylabel)
        ax.grid(axis="x", visible=False)
        if series:
            ax.legend(fontsize=8, loc="best")
        return _to_svg(fig)


def curves_svg(x: Sequence[float],
               series: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
               reference: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None,
               xlabel: str, ylabel: str, *, title: str = "", logx: bool = False) -> str:
    """Curves over ``x`` (e.g. mIoU against the accurate-label ratio) with their interval bands.

    ``series`` maps a name to ``(means, lows, highs)`` (lows/highs are the band's bounds, not distances;
    NaN leaves a gap); ``reference`` maps a name to published ``(x, y)`` points, drawn dashed.
    """
    with _drawing(title) as (fig, ax):
        xs = np.asarray(x, dtype=float)
        for index, (name, (means, lows, highs)) in enumerate(series.items()):
            arrays = [np.asarray(values, dtype=float) for values in (means, lows, highs)]
            if any(len(values) != len(xs) for values in arrays):
                raise ValueError(f"series {name!r} needs {len(xs)} means, lows and highs, one per x")
            color = _COLORS[index % len(_COLORS)]
            ax.plot(xs, arrays[0], marker=_MARKERS[index % len(_MARKERS)], color=color, label=name)
            band = np.isfinite(arrays[1]) & np.isfinite(arrays[2])
            if band.any():
                ax.fill_between(xs, arrays[1], arrays[2], where=band, color=color, alpha=0.18, linewidth=0)
        for index, (name, (ref_x, ref_y)) in enumerate((reference or {}).items()):
            color = _COLORS[(len(series) + index) % len(_COLORS)]
            ax.plot(ref_x, ref_y, linestyle="--", marker=".", color=color, label=name)
        if logx:
            _log_x(ax)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if series or reference:
            ax.legend(fontsize=8, loc="best")
        return _to_svg(fig)


@contextlib.contextmanager
def _drawing(title: str) -> Iterator[tuple[Figure, Axes]]:
    """A fresh figure with one axes; the whole drawing happens under the page's rc settings."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=FIGURE_SIZE)
        ax = fig.add_subplot()
        if title:
            ax.set_title(title)
        yield fig, ax


def _log_x(ax: Axes) -> None:
    """A log x axis labelled with plain numbers ("2", "0.5"), also between powers of ten: costs of the
    compared methods often span less than a decade, where only the minor ticks fall inside."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(LogFormatter())
    ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _error_array(errors: Sequence[ErrorBar]) -> np.ndarray | None:
    """Matplotlib's 2×N (below, above) array; None when no point has an error bar, NaN for those without."""
    if all(error is None for error in errors):
        return None
    below, above = [], []
    for error in errors:
        if error is None:
            error = (math.nan, math.nan)
        elif not isinstance(error, tuple):
            error = (error, error)
        below.append(error[0])
        above.append(error[1])
    array = np.array([below, above], dtype=float)
    if (array[np.isfinite(array)] < 0).any():
        raise ValueError(f"error bars are distances from the value and cannot be negative: {errors}")
    return array


# Matplotlib names its elements figure_1, axes_1, patch_1 ... in every figure; several figures on one
# page would repeat those ids. Prefixing them (and the references to them) with a hash of the figure
# keeps ids unique on the page.
_ID = re.compile(r'id="([^"]+)"')
_ID_OR_REFERENCE = re.compile(r'(id="|href="#|url\(#)([^")]+)')


def _to_svg(fig: Figure) -> str:
    buffer = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.tight_layout()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None,
                                                    "Type": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):].strip()
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.DOTALL)
    prefix = "f" + hashlib.sha256(text.encode()).hexdigest()[:8] + "-"
    ids = set(_ID.findall(text))

    def rename(match: re.Match[str]) -> str:
        start, name = match.groups()
        return start + (prefix + name if name in ids else name)

    return _ID_OR_REFERENCE.sub(rename, text)
