"""Markdown tables in a terminal of any width, without cutting or folding a word (`iqabench report`).

rich's Markdown squeezes a wide table to the terminal by cutting cells ("synthetic…" for both datasets
at 80 columns). Tables are laid out here instead: a cell wraps only at spaces, and a table whose
columns cannot fit is split into several, each repeating the row labels (the leading left-aligned columns).
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

TABLE_PAD = 3  # per column: one space each side and the box's divider
MIN_WIDTH = 20  # a COLUMNS below it (0, say) is taken as unset: rich printed nothing at all at 0


def console(stderr: bool = False) -> Console:
    """A console made now (it reads COLUMNS and whether the stream is a terminal at the call, not at import), at
    least ``MIN_WIDTH`` columns wide: ``COLUMNS=0`` printed nothing and exited 0."""
    made = Console(stderr=stderr)
    return made if made.width >= MIN_WIDTH else Console(stderr=stderr, width=80)


def markdown_renderables(text: str, width: int, styled: bool = True, folder: Path = Path(".")) -> list:
    """``text`` (markdown) as rich renderables that fit ``width`` columns without cutting or folding a word.

    ``styled``: render ``**bold**`` cells in bold (on a terminal); otherwise cells keep their markdown as
    written, so the best value of a column stays marked in piped output. An image line becomes its path.
    """
    out, prose, table = [], [], []

    def flush_prose():
        if any(line.strip() for line in prose):
            out.append(Markdown("\n".join(prose)))
        prose.clear()

    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            flush_prose()
            table.append(line)
            continue
        if len(table) == 1:  # a lone "|" line is not a table (no header rule)
            prose.append(table.pop())
        if table:
            for part in _tables(table, width, styled):
                out += [Text(), part]  # rich's Markdown ends a paragraph without a blank line
            out.append(Text())
            table = []
        image = re.fullmatch(r"!\[(.*)\]\((.*)\)\s*", line)
        prose.append(f"Figure: {image[1]}: `{folder / image[2]}`" if image else line)
    flush_prose()
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _tables(lines: list[str], width: int, styled: bool) -> list:
    header, rules, rows = _cells(lines[0]), _cells(lines[1]), [_cells(line) for line in lines[2:]]
    right = [r.endswith(":") and not r.startswith(":") for r in rules]
    n = len(header)
    cells = [[_styled(c, styled) for c in col] for col in zip(header, *((r + [""] * n)[:n] for r in rows))]
    longest = [max(c.cell_len for c in col) for col in cells]
    shortest = [max(len(word) for c in col for word in c.plain.split() or [""]) for col in cells]
    # A wrapped header costs a line, a wrapped cell a line per row: headers wrap first, onto two lines at most.
    whole = [max([c.cell_len for c in col[1:]] + [_two_lines(col[0].plain, least)])
             for col, least in zip(cells, shortest)]
    # Row labels: the leading left-aligned columns (model, dataset) when the numbers are right-aligned.
    keys = 1
    while any(right) and keys < min(2, n - 1) and not right[keys]:
        keys += 1
    labels = list(range(keys))

    def layout(floor):  # the fewest tables whose columns fit at ``floor``, then each table's widths
        groups = [[]]
        for i in range(keys, n):
            if groups[-1] and sum(floor[c] + TABLE_PAD for c in [*labels, *groups[-1], i]) > width:
                groups.append([])
            groups[-1].append(i)
        if len(groups) > 1:  # spread the columns evenly over that many tables, if they still fit
            rest, size = list(range(keys, n)), -(-(n - keys) // len(groups))
            even = [rest[k:k + size] for k in range(0, len(rest), size)]
            if all(sum(floor[c] + TABLE_PAD for c in [*labels, *g]) <= width for g in even):
                groups = even
        return [_widths([*labels, *g], cells, longest, (whole, shortest), width) for g in groups]

    # Cells whole in more tables, or wrapped at spaces in fewer: whichever prints fewer lines.
    best = min((layout(whole), layout(shortest)), key=lambda tables: (sum(_height(cells, w) for w in tables),
                                                                       len(tables)))
    out = []
    for widths in best:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for i, w in widths.items():
            table.add_column(cells[i][0], justify="right" if right[i] else "left", width=w)
        for r in range(1, len(cells[0])):
            table.add_row(*(cells[i][r] for i in widths))
        out.append(table)
    return out


def _widths(cols: list[int], cells: list[list[Text]], longest: list[int], floors: tuple, width: int) -> dict:
    """Column widths for ``cols``: each as wide as its longest cell, then, until the table fits ``width``,
    narrowing the column that wraps the fewest more lines (down to the first floor, then the next)."""
    widths = {i: longest[i] for i in cols}

    def lines(i, w):
        return sum(len(textwrap.wrap(c.plain, w, break_long_words=False)) for c in cells[i])

    for floor in floors:
        while sum(widths.values()) + TABLE_PAD * len(cols) > width:
            wrappable = [i for i in cols if widths[i] > floor[i]]
            if not wrappable:
                break
            i = min(wrappable, key=lambda i: (lines(i, widths[i] - 1) - lines(i, widths[i]), -widths[i]))
            widths[i] -= 1
    return widths


def _height(cells: list[list[Text]], widths: dict[int, int]) -> int:
    """Lines a table prints: each row as tall as its most wrapped cell, plus the rule under the header."""
    return 1 + sum(max(len(textwrap.wrap(cells[i][r].plain, w, break_long_words=False)) or 1
                       for i, w in widths.items()) for r in range(len(cells[0])))


def _two_lines(header: str, least: int) -> int:
    """The narrowest width, from ``least`` on, that wraps ``header`` onto two lines at most."""
    width = least
    while len(textwrap.wrap(header, width, break_long_words=False)) > 2:
        width += 1
    return width


def _styled(cell: str, styled: bool) -> Text:
    """A table cell: ``**bold**`` in bold and ``code`` plain on a terminal; as written otherwise."""
    if not styled:
        return Text(cell)
    text = Text()
    for piece in re.split(r"(\*\*.+?\*\*)", re.sub(r"`(.+?)`", r"\1", cell)):
        bold = len(piece) > 4 and piece.startswith("**") and piece.endswith("**")
        text.append(piece[2:-2] if bold else piece, style="bold" if bold else "")
    return text
