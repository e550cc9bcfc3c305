"""`iqabench report --path FILE` on hostile markdown, paths and outputs: found by a sweep, each a traceback, a hang,
an escape sequence reaching the terminal or a cut cell before."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest
from rich.console import Console
from typer.testing import CliRunner

from test_terminal import _results_md
from iqabench import cli, terminal
from iqabench.cli import app


def _report(path, columns: int = 80):
    return CliRunner().invoke(app, ["report", "--path", str(path)], env={"COLUMNS": str(columns)})


def _table_words(text: str) -> set[str]:
    """Every word of every table cell in ``text`` (markdown), as written."""
    return {word for line in text.splitlines() if line.startswith("|") and not set(line) <= set("|-: ")
            for cell in line.strip("|").split("|") for word in cell.split()}


@pytest.mark.parametrize("text", ["| a | |\n|---|---|\n| x | |\n", "|\n|\n", "| | |\n|---|---|\n| | |\n"])
def test_a_table_with_a_blank_column_is_shown_with_the_column_empty(tmp_path, text):
    # "ValueError: invalid width 0 (must be > 0)" from textwrap: a blank column was 0 wide.
    (tmp_path / "r.md").write_text(text)
    shown = _report(tmp_path / "r.md")
    assert shown.exit_code == 0, shown.output
    assert _table_words(text) <= set(shown.output.split())


@pytest.mark.parametrize("columns", [1, 2])
def test_laying_out_a_huge_header_takes_near_linear_work(tmp_path, monkeypatch, columns):
    """A 20 KB .md whose header holds 4000 words kept `report` busy for minutes: the narrowest two-line width
    was found by wrapping the header at every width in turn. Counted in words wrapped, not timed: the work for
    4000 words is not 16 times (quadratic) that for 1000."""
    real, work = terminal._lines, [0]

    def counting(words, width):
        work[0] += len(words) + 1
        return real(words, width)

    monkeypatch.setattr(terminal, "_lines", counting)
    spent = {}
    for n in (1000, 4000):
        header = " | ".join([" ".join(f"w{k}" for k in range(n))] * columns)
        text = f"| {header} |\n|{'---|' * columns}\n|{' 0.5 |' * columns}\n"
        work[0] = 0
        parts = terminal.markdown_renderables(text, 80, styled=False)
        spent[n] = work[0]
        printed = Console(file=io.StringIO(), width=80, color_system=None)
        for part in parts:
            printed.print(part, crop=False)
        assert {f"w{k}" for k in range(n)} <= set(printed.file.getvalue().split())  # every word whole
    assert spent[4000] < 8 * spent[1000] and spent[4000] < terminal.WORK + 200 * 4000, spent


def test_control_characters_in_the_file_never_reach_the_terminal(tmp_path):
    # `\033[2J` cleared the screen and `\033]0;pwned\007` retitled the window: shown as escapes now.
    (tmp_path / "r.md").write_text("# t\x1b[2J\n\nhi \x1b]0;pwned\x07 there \x9b31m \x00 \x7f\n\n"
                                   "| model \x1b[5m | srcc |\n|---|---:|\n| a\x1b[31m | 0.5\x08 |\n\n"
                                   "![f\x1b[1m](x\x1b.png)\n")
    shown = _report(tmp_path / "r.md", columns=1000)  # wide: the figure's long tmp path stays on one line
    assert shown.exit_code == 0, shown.output
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", shown.output), repr(shown.output)
    for escaped in (r"t\x1b[2J", r"\x1b]0;pwned\x07", r"\x9b31m", r"a\x1b[31m", r"0.5\x08", r"x\x1b.png"):
        assert escaped in shown.output, shown.output


@pytest.mark.parametrize("columns", [40, 30, 20])
def test_a_narrow_terminal_gets_every_cell_whole(tmp_path, columns):
    """At 40 columns rich cut "(0.685-0.79…", "contriq…", "synthetic-mix…": the labels (model, dataset) left
    too little room. A column that cannot sit beside both now gets a table with the model alone."""
    path = _results_md(tmp_path)
    shown = _report(path, columns)
    assert shown.exit_code == 0, shown.output
    assert "…" not in shown.output
    assert _table_words(path.read_text()) <= set(shown.output.split())
    lines = shown.output.splitlines()
    figure = str(tmp_path / "cross_srcc.png")  # a path is one word, on a line of its own when long
    if columns == 40:  # every other word fits 40 columns, so every other line does
        assert max(len(line) for line in lines if line != figure) <= columns, shown.output
        # Columns that fit beside both labels keep them; a row is never left without its model.
        assert sum(line.split()[:2] == ["model", "dataset"] for line in lines) >= 2
        assert any(line.split() == ["fr:deepwsd", "0.610", "(0.350-0.650)"] for line in lines), shown.output


def test_a_word_wider_than_the_terminal_overflows_whole_instead_of_being_cut(tmp_path):
    word = "z" * 60
    (tmp_path / "r.md").write_text(f"| name | path |\n|---|---|\n| a | {word} |\n")
    shown = _report(tmp_path / "r.md", 40)
    assert shown.exit_code == 0 and "…" not in shown.output
    assert any(line.split() == ["a", word] for line in shown.output.splitlines()), shown.output


def test_a_width_below_the_minimum_is_laid_out_at_the_minimum(tmp_path):
    text = _results_md(tmp_path).read_text()

    def shown(width):
        out = Console(file=io.StringIO(), width=terminal.MIN_WIDTH, color_system=None)
        for part in terminal.markdown_renderables(text, width, styled=False):
            out.print(part, crop=False)
        return out.file.getvalue()

    assert shown(0) == shown(5) == shown(terminal.MIN_WIDTH)


@pytest.mark.parametrize("kind", ["empty", "long", "loop"])
def test_report_on_a_path_it_cannot_open_says_why_in_one_line(tmp_path, kind):
    """`--path ""` said ". is a folder", a name over 255 bytes was an OSError traceback, a link loop "does not
    exist: run make repro"."""
    if kind == "loop":
        os.symlink(tmp_path / "b.md", tmp_path / "a.md")
        os.symlink(tmp_path / "a.md", tmp_path / "b.md")
    path = {"empty": "", "long": str(tmp_path / ("a" * 300 + ".md")), "loop": str(tmp_path / "a.md")}[kind]
    said = {"empty": "error: --path is empty; give the results file, e.g. --path reports/results.md",
            "long": f"error: {path[:80]}... ({len(path)} bytes) has a name longer than the file system allows",
            "loop": f"error: {path} is a symbolic link loop"}[kind]
    shown = CliRunner().invoke(app, ["report", "--path", path])
    assert shown.exit_code == 1 and "Traceback" not in shown.output
    assert shown.output.startswith(said) and len(shown.output.splitlines()) == 1, shown.output


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_output_is_one_error_line_not_a_traceback(tmp_path):
    # `report > /dev/full` was an OSError traceback (and another when Python flushed at exit).
    path = _results_md(tmp_path)
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-c", "from iqabench.cli import app; app()", "report", "--path",
                               str(path)], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == f"error: cannot write {path} to the output (No space left on device); free space or " \
                          "redirect it elsewhere\n"


def test_an_output_that_cannot_encode_the_report_is_one_error_line_and_writes_nothing(tmp_path, monkeypatch):
    # PYTHONIOENCODING=ascii: a UnicodeEncodeError traceback part way through the report.
    raw = io.BytesIO()
    monkeypatch.setattr(cli, "console", lambda: Console(file=io.TextIOWrapper(raw, encoding="ascii"), width=80))
    shown = _report(_results_md(tmp_path))
    assert shown.exit_code == 1 and raw.getvalue() == b""
    assert shown.output.startswith("error: cannot show ") and len(shown.output.splitlines()) == 1, shown.output
    assert "ascii, has no U+" in shown.output and "PYTHONIOENCODING=utf-8" in shown.output


@pytest.mark.parametrize("colours", [None, "standard"])
def test_bold_cells_keep_their_markers_on_a_terminal_that_cannot_draw_bold(tmp_path, monkeypatch, colours):
    # TERM=dumb: rich drew no bold and the ** were gone, so the best value of a column looked like any other.
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", lambda: Console(file=out, force_terminal=True, color_system=colours,
                                                        width=80))
    assert _report(_results_md(tmp_path)).exit_code == 0
    assert ("**0.610**" in out.getvalue()) == (colours is None), out.getvalue()
    assert ("\x1b[1m0.610" in out.getvalue()) == (colours is not None)


@pytest.mark.parametrize("columns", [80, 2000])
def test_prose_lines_are_not_padded_to_the_terminal_width(tmp_path, columns):
    # Each prose line was padded with spaces to the full width: 2.8 GB piped at COLUMNS=99999999.
    shown = _report(_results_md(tmp_path), columns)
    assert shown.exit_code == 0
    assert not [line for line in shown.output.splitlines() if line.endswith(" ")], shown.output
    assert len(shown.output) < 10_000


def test_a_figure_path_longer_than_the_terminal_is_printed_on_one_line(tmp_path):
    # rich's paragraph broke it mid-name ("…/x.p" and "ng" on two lines): a copied path did not open.
    folder = tmp_path / ("deep-folder-name-" * 4)
    folder.mkdir()
    (folder / "r.md").write_text("Some text.\n\n![within SRCC](srcc_with_a_long_name.png)\n\nAfter.\n")
    shown = _report(folder / "r.md", columns=40)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert f"{folder / 'srcc_with_a_long_name.png'}" in lines, shown.output
    assert lines[lines.index("Figure: within SRCC:") - 1] == "" and lines[-1] == "After."  # paragraphs kept apart


def test_bidirectional_overrides_are_shown_as_escapes(tmp_path):
    # U+202E printed the rest of a line right to left: a model row "evil\u202e1.0" read as "evil0.1".
    (tmp_path / "r.md").write_text("Best: a\u202ebc\u2066d\u2069.\n\n| model | srcc |\n|---|---:|\n"
                                   "| evil\u202e | 0.5\u200f |\n", encoding="utf-8")
    shown = _report(tmp_path / "r.md")
    assert shown.exit_code == 0, shown.output
    assert not re.search("[\u200e\u200f\u202a-\u202e\u2066-\u2069]", shown.output), repr(shown.output)
    for escaped in (r"a\u202ebc\u2066d\u2069", r"evil\u202e", r"0.5\u200f"):
        assert escaped in shown.output, shown.output


def test_lines_starting_with_a_bar_but_no_delimiter_row_are_prose_not_a_table(tmp_path):
    # The second line was taken as the header rule whatever it held: "| b |" vanished, "| c |" became the header.
    (tmp_path / "r.md").write_text("| a | x |\n| b | y |\n| c | z |\n\nAfter.\n")
    shown = _report(tmp_path / "r.md")
    assert shown.exit_code == 0, shown.output
    assert all(word in shown.output.split() for word in "abcxyz"), shown.output
    assert "─" not in shown.output and "━" not in shown.output  # no box drawn
