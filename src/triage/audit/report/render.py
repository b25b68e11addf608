"""The report as Markdown and as a self-contained HTML page, from the Jinja2 templates in
``templates/``."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from triage.audit.report.sections import Section


def _fmt(value: Any) -> str:
    """A table cell: floats to three decimals, NaN as n/a."""
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def markdown_table(table: tuple[list[str], list[list[Any]]]) -> str:
    """A ``(header, rows)`` table of a :class:`Section` as a Markdown (pipe) table; cells
    formatted by :func:`_fmt`, ``|`` in them escaped."""
    header, rows = table
    cells = [[_fmt(c).replace("|", "\\|") for c in row] for row in rows]
    # disable_numparse: the cells are already formatted text ("0.100" stays "0.100")
    return pd.DataFrame(cells, columns=header).to_markdown(index=False, disable_numparse=True)


@cache
def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("triage.audit.report", "templates"),
        # every value on the page is escaped: message texts never become markup
        autoescape=select_autoescape(enabled_extensions=("html.j2",)),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = _fmt
    env.filters["markdown_table"] = markdown_table
    return env


def render_markdown(title: str, sections: list[Section]) -> str:
    """The report as Markdown (tables and relative image links)."""
    return _templates().get_template("report.md.j2").render(title=title, sections=sections)


def render_html(title: str, sections: list[Section]) -> str:
    """A self-contained page; every value is escaped (message texts never become markup)."""
    return _templates().get_template("report.html.j2").render(title=title, sections=sections)
