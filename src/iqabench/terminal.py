"""Markdown tables in a terminal of any width, without cutting or folding a word (`iqabench report`).

rich's Markdown squeezes a wide table to the terminal by cutting cells ("synthetic…" for both datasets
at 80 columns). Tables are laid out here instead: a cell wraps only at spaces, and a table whose
columns cannot fit is split into several, each repeating the row labels (the leading left-aligned columns).
A word wider than the terminal is never cut: its table is printed wider than the terminal, which wraps it.
Also the rest of every command's terminal door: its console, and the check on a path typed as an option.
"""
from __future__ import annotations

import re
from pathlib import Path

import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markdown import Heading, Markdown
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

TABLE_PAD = 3  # per column: one space each side and the box's divider
MIN_WIDTH = 20  # a COLUMNS below it (0, say) is taken as unset: rich printed nothing at all at 0
# Words visited while choosing column widths, per table, before the choice stops weighing lines one column
# at a time and narrows the columns in proportion (floors kept): a 4000-word header kept `report` busy for
# minutes. A results.md table takes under 3,000.
WORK = 400_000
# C0 controls but tab, newline and carriage return (line ends), DEL and C1: in a .md they reached the
# terminal as escape sequences (`\033[2J` cleared the screen, `\033]0;...\007` retitled the window). Also
# the bidirectional overrides and isolates: U+202E printed the rest of a line backwards, so a model name
# could show as another's ("Trojan Source").
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# A table's second line, the delimiter row (GitHub-flavoured markdown): without it the lines are a paragraph.
_RULE = re.compile(r"\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*")


def console(stderr: bool = False) -> Console:
    """A console made now (it reads COLUMNS and whether the stream is a terminal at the call, not at import), at
    least ``MIN_WIDTH`` columns wide: ``COLUMNS=0`` printed nothing and exited 0."""
    made = Console(stderr=stderr)
    return made if made.width >= MIN_WIDTH else Console(stderr=stderr, width=80)


def typed_path(text: str) -> Path:
    """A path option's value (typer's ``parser=``): an empty one, from an unset shell variable, was Path("."),
    the working folder, listed or registered as the file the user meant."""
    if not text.strip():
        raise typer.BadParameter(f"{text!r} is empty (an unset shell variable?): give a path, or leave the option "
                                 "out for its default")
    return Path(text)


def can_style(out: Console) -> bool:
    """Whether ``out`` draws bold: a terminal with a colour system (``TERM=dumb`` has none, so rich drops every
    style, and bold cells printed without their ``**`` markers looked like any other)."""
    return out.is_terminal and out.color_system is not None


def without_controls(text: str) -> str:
    """``text`` with each control character shown as its escape (``\\x1b``, ``\\u202e``), so none reaches
    the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


def markdown_renderables(text: str, width: int, styled: bool = True, folder: Path = Path(".")) -> list:
    """``text`` (markdown) as rich renderables that fit ``width`` columns without cutting or folding a word.

    ``styled``: render ``**bold**`` cells in bold (on a terminal); otherwise cells keep their markdown as
    written, so the best value of a column stays marked in piped output. An image line becomes its path.
    A ``width`` below ``MIN_WIDTH`` is laid out at ``MIN_WIDTH``, as :func:`console` does. Print the
    renderables with ``crop=False``: a table with a word wider than ``width`` is wider than ``width``.
    """
    width = max(width, MIN_WIDTH)
    out, prose, table = [], [], []

    def flush_prose():
        if any(line.strip() for line in prose):
            out.append(_Unpadded(_Markdown("\n".join(prose), justify="default")))
        prose.clear()

    for line in [*without_controls(text).splitlines(), ""]:
        if line.startswith("|"):
            flush_prose()
            table.append(line)
            continue
        if table and (len(table) == 1 or not _RULE.fullmatch(table[1])):  # no header rule: not a table
            prose += table
            table = []
        if table:
            for part in _tables(table, width, styled):
                out += [Text(), part]  # rich's Markdown ends a paragraph without a blank line
            out.append(Text())
            table = []
        image = re.fullmatch(r"!\[(.*)\]\((.*)\)\s*", line)
        if not image:
            prose.append(line)
            continue
        label, shown = f"Figure: {image[1]}:", without_controls(str(folder / image[2]))
        if cell_len(f"{label} {shown}") <= width:
            prose.append(f"{label} `{shown}`")
            continue
        prose.append(label)
        flush_prose()
        # A line of its own, never broken: rich's paragraph split a long path mid-name, and a path copied from
        # the terminal must open (the terminal wraps it on screen; a copy joins it again).
        out += [_Whole(shown), Text()]
    flush_prose()
    return out


class _LeftHeading(Heading):
    # rich centres a "# title" by padding it with spaces to the full width on both sides (50 MB at
    # COLUMNS=99999999): every heading starts at the left, like the sections under it.
    LEVEL_ALIGN = dict.fromkeys(("h1", "h2", "h3", "h4", "h5", "h6"), "default")


class _Markdown(Markdown):
    elements = {**Markdown.elements, "heading_open": _LeftHeading}


class _Whole:
    """One line of plain text, never folded (printed with ``crop=False``; rich folds even a no_wrap Text)."""

    def __init__(self, text: str):
        self.text = text

    def __rich_console__(self, console: Console, options):
        yield Segment(self.text)
        yield Segment.line()


class _Unpadded:
    """``inner`` rendered ``width`` columns wide (the console's when None), each line without trailing spaces:
    rich pads a paragraph's lines to the full width (2.8 GB of spaces piped at COLUMNS=99999999)."""

    def __init__(self, inner, width: int | None = None):
        self.inner, self.width = inner, width

    def __rich_console__(self, console: Console, options):
        if self.width:
            options = options.update_width(max(self.width, options.max_width))
        for line in console.render_lines(self.inner, options, pad=False):
            while line and not line[-1].control and not line[-1].text.rstrip(" "):
                line.pop()
            if line and not line[-1].control:
                line[-1] = Segment(line[-1].text.rstrip(" "), line[-1].style)
            yield from line
            yield Segment.line()


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _lines(words: list[int], width: int) -> int:
    """Lines a cell of words of these lengths wraps to at ``width``, breaking only at spaces (0 when empty)."""
    lines = used = 0
    for n in words:
        if lines and used + 1 + n <= width:
            used += 1 + n
        else:
            lines, used = lines + 1, n
    return lines


class _Wrapped:
    """Lines each column wraps to at a width, cached, counting the words visited (``WORK`` bounds them)."""

    def __init__(self, words: list[list[list[int]]]):
        self.words, self.cache, self.work = words, {}, 0

    def __call__(self, i: int, width: int) -> int:
        if (i, width) not in self.cache:
            self.cache[i, width] = sum(_lines(cell, width) for cell in self.words[i])
            self.work += sum(map(len, self.words[i]))
        return self.cache[i, width]


def _tables(lines: list[str], width: int, styled: bool) -> list:
    header, rules, rows = _cells(lines[0]), _cells(lines[1]), [_cells(line) for line in lines[2:]]
    n = len(header)
    right = [r.endswith(":") and not r.startswith(":") for r in (rules + [""] * n)[:n]]
    cells = [[_styled(c, styled) for c in col] for col in zip(header, *((r + [""] * n)[:n] for r in rows))]
    words = [[[cell_len(word) for word in c.plain.split()] for c in col] for col in cells]
    longest = [max([1, *(c.cell_len for c in col)]) for col in cells]  # 1: a blank column is still a column
    shortest = [max([1, *(k for cell in col for k in cell)]) for col in words]
    # A wrapped header costs a line, a wrapped cell a line per row: headers wrap first, onto two lines at most.
    whole = [max([c.cell_len for c in col[1:]] + [_two_lines(ws[0], least)])
             for col, ws, least in zip(cells, words, shortest)]
    # Row labels: the leading left-aligned columns (model, dataset) when the numbers are right-aligned.
    keys = 1
    while any(right) and keys < min(2, n - 1) and not right[keys]:
        keys += 1
    labels, wrapped = list(range(keys)), _Wrapped(words)

    def fits(cols, floor, spare=0):  # ``spare``: TABLE_PAD when it must merely fit (no divider after the last)
        return sum(floor[c] + TABLE_PAD for c in cols) <= width + spare

    def layout(floor):  # the fewest tables whose columns fit at ``floor``, then each table's widths
        groups = []  # (labels, columns, whether it takes more columns)
        for i in range(keys, n):
            # A column that cannot sit beside every label even wrapped at each space ("(0.685-0.794)" beside
            # model and dataset at 40 columns) gets a table of its own with fewer labels: rich cut its cells.
            few = next((k for k in range(keys - 1, 0, -1) if fits([*range(k), i], shortest, TABLE_PAD)), keys)
            if few < keys and not fits([*labels, i], shortest, TABLE_PAD):
                groups.append((labels[:few], [i], False))
            elif groups and groups[-1][2] and fits([*labels, *groups[-1][1], i], floor):
                groups[-1][1].append(i)
            else:
                groups.append((labels, [i], True))
        missing = [c for c in labels if all(c not in few for few, _, _ in groups)]
        if groups and missing:  # a label every table left out (A vs B at 30 columns) gets a table of its own
            groups.insert(0, (labels[:1], missing, False))
        if len(groups) > 1 and all(g[2] for g in groups):  # spread the columns evenly, if they still fit
            rest, size = list(range(keys, n)), -(-(n - keys) // len(groups))
            even = [(labels, rest[k:k + size], True) for k in range(0, len(rest), size)]
            if all(fits([*labels, *g], floor) for _, g, _ in even):
                groups = even
        return [_widths([*few, *g], longest, (whole, shortest), width, wrapped)
                for few, g, _ in groups or [(labels, [], True)]]

    # Cells whole in more tables, or wrapped at spaces in fewer: whichever prints fewer lines.
    best = min((layout(whole), layout(shortest)), key=lambda tables: (sum(_height(words, w) for w in tables),
                                                                       len(tables)))
    out = []
    for widths in best:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for i, w in widths.items():
            table.add_column(cells[i][0], justify="right" if right[i] else "left", width=w)
        for r in range(1, len(cells[0])):
            table.add_row(*(cells[i][r] for i in widths))
        # The width it needs: wider than ``width`` only when a word is (the terminal wraps it; rich cut it).
        out.append(_Unpadded(table, sum(widths.values()) + TABLE_PAD * len(widths) - TABLE_PAD))
    return out


def _widths(cols: list[int], longest: list[int], floors: tuple, width: int, wrapped: _Wrapped) -> dict:
    """Column widths for ``cols``: each as wide as its longest cell, then, until the table fits ``width``,
    narrowing the column that wraps the fewest more lines (down to the first floor, then the next). Past
    ``WORK`` words visited, or with one column left to narrow, the rest is taken from the columns in
    proportion to their room above the floor: the same widths for one column, and linear work."""
    widths = {i: longest[i] for i in cols}
    for floor in floors:
        while (over := sum(widths.values()) + TABLE_PAD * len(cols) - width) > 0:
            wrappable = [i for i in cols if widths[i] > floor[i]]
            if not wrappable:
                break
            if len(wrappable) == 1 or wrapped.work > WORK:
                room = {i: widths[i] - floor[i] for i in wrappable}
                for i in wrappable:  # rounded up, so the cuts add up to ``over`` (or every floor)
                    widths[i] -= min(room[i], -(-over * room[i] // sum(room.values())))
                continue
            i = min(wrappable, key=lambda i: (wrapped(i, widths[i] - 1) - wrapped(i, widths[i]), -widths[i]))
            widths[i] -= 1
    return widths


def _height(words: list[list[list[int]]], widths: dict[int, int]) -> int:
    """Lines a table prints: each row as tall as its most wrapped cell, plus the rule under the header."""
    return 1 + sum(max(_lines(words[i][r], w) or 1 for i, w in widths.items()) for r in range(len(words[0])))


def _two_lines(header: list[int], least: int) -> int:
    """The narrowest width, from ``least`` on, that wraps a header (its words' lengths) onto two lines at most.
    A bisection: greedy wrapping never takes more lines at a greater width (stepping up a column at a time
    wrapped a 4000-word header thousands of times)."""
    low, high = least, max(least, sum(header) + len(header) - 1)  # ``high``: all on one line
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if _lines(header, mid) <= 2 else (mid + 1, high)
    return low


def _styled(cell: str, styled: bool) -> Text:
    """A table cell: ``**bold**`` in bold and ``code`` plain on a terminal; as written otherwise."""
    if not styled:
        return Text(cell)
    text = Text()
    for piece in re.split(r"(\*\*.+?\*\*)", re.sub(r"`(.+?)`", r"\1", cell)):
        bold = len(piece) > 4 and piece.startswith("**") and piece.endswith("**")
        text.append(piece[2:-2] if bold else piece, style="bold" if bold else "")
    return text
