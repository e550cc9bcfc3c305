"""The `iqabench` command: the user's door to the same functions the pipeline runs."""
from __future__ import annotations

import errno
import math
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table
from rich.text import Text

from . import io
from .compare import compare_command
from .datasets.cli import app as datasets_app
from .gate import check_command
from .terminal import can_style, console, markdown_renderables, typed_path, without_controls

app = typer.Typer(help="iqabench: a reproducible benchmark for no-reference image quality assessment.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(datasets_app, name="datasets")
app.command("check", help="CI gate: fail when an SRCC fell below the accepted baseline (reports/baseline.json) "
                          "by more than its tolerance; --accept --reason \"...\" records a new baseline.")(check_command)
app.command("compare", help="Compare MLflow runs of the study in a table.")(compare_command)


@app.callback()
def plain_warnings() -> None:
    """Warnings as one plain line each, ``warning: MESSAGE``, each message once: Python's default format adds
    the file, line and source line of the code that warned (noise to a user), and prints a message again for
    each place that warns of it (an image is read twice by `score`)."""
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        if text not in shown:
            shown.add(text)
            print(f"warning: {text}", file=file or sys.stderr)

    warnings.showwarning = show
    # A file name that is not UTF-8 (a byte like \xff, kept by Python as a surrogate) failed the whole output
    # ("surrogates not allowed"); stdout writes it back as its own bytes, stderr escaped.
    for stream, errors in ((sys.stdout, "surrogateescape"), (sys.stderr, "backslashreplace")):
        if callable(getattr(stream, "reconfigure", None)):
            stream.reconfigure(errors=errors)


RESULTS = Path("reports/results.md")  # written by the `report` stage; relative to the repository


@app.command()
def report(path: Optional[str] = typer.Option(None, metavar="PATH",  # a str: as a Path, "" was "."
                                              help="results written by `dvc repro` (default: the "
                                                   "repository's reports/results.md)")) -> None:
    """Print the latest within- and cross-dataset tables."""
    from .params import outside_repository, repo_root

    problem = None
    if path == "":  # as a Path it was ".", "a folder"
        problem = "--path is empty; give the results file, e.g. --path reports/results.md"
    elif path is None:  # the repository's, from any folder in it (it was looked up from the cwd)
        try:
            path = repo_root() / RESULTS
        except FileNotFoundError:
            reason = outside_repository(f"there is no {RESULTS} to show", "iqabench report", "--path FILE")
            typer.echo(f"error: {reason}", err=True)
            raise typer.Exit(1)
    path = Path(path)
    unreachable = None if problem else io.path_problem(path)  # is_dir() raised on a name too long
    if problem:
        pass
    elif unreachable:  # a link loop was "does not exist: run make repro"
        problem = f"{io.shown_path(path)} {unreachable}; give the results file, e.g. reports/results.md"
    elif not path.exists():
        problem = f"{path} does not exist: run `make repro` (or `dvc repro`) first"
    elif path.is_dir():
        problem = f"{path} is a folder; give the results file, e.g. --path {path / 'results.md'}"
    elif io.is_special(path):  # /dev/null, a pipe: "does not exist" misled
        problem = f"{path} is {io.NOT_REGULAR}; give the results file, e.g. reports/results.md"
    elif path.suffix.lower() not in (".md", ".markdown"):  # a CSV or JSON was printed as one wrapped paragraph
        problem = (f"{path} is not a markdown report; give reports/results.md (or another .md of reports/: "
                   "finetune.md, mixed.md)")
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            problem = (f"{path} is not a UTF-8 markdown file (byte {exc.start}: {exc.reason}); give the results.md "
                       "that `dvc repro` writes")
        except OSError as exc:
            problem = f"{path} cannot be read ({exc.strerror})"
        else:
            if not text.strip():
                problem = f"{path} is empty: rerun `dvc repro -s -f report` (the report stage alone) to write it"
    if problem:  # unwrapped, so the path stays whole; a control character in it is shown, not obeyed
        typer.echo(f"error: {without_controls(problem)}", err=True)
        raise typer.Exit(1)
    out = console()
    try:
        with out.capture() as shown:  # rendered whole first: one that cannot be encoded then writes nothing
            for part in markdown_renderables(text, out.width, styled=can_style(out), folder=path.parent):
                out.print(part, crop=False)  # a word wider than the terminal overflows (the terminal wraps it)
        out.file.write(shown.get())
        out.file.flush()
    except UnicodeEncodeError as exc:  # PYTHONIOENCODING=ascii was a traceback
        problem = (f"cannot show {path}: the output's encoding, {exc.encoding}, has no U+"
                   f"{ord(exc.object[exc.start]):04X} (in the report); set PYTHONIOENCODING=utf-8 (or a UTF-8 "
                   "locale, e.g. LANG=C.UTF-8) and rerun")
    except OSError as exc:  # `> /dev/full` was a traceback; `| head` stopping early needs no word
        if exc.errno != errno.EPIPE:
            problem = f"cannot write {path} to the output ({exc.strerror}); free space or redirect it elsewhere"
        try:  # what stays buffered would fail again when Python flushes at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.file.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
    else:
        return
    if problem:
        typer.echo(f"error: {without_controls(problem)}", err=True)
    raise typer.Exit(1)


@app.command()
def score(images: List[Path] = typer.Argument(..., parser=typed_path, help="image files to rate"),
          model: str = typer.Option("contrique", help="a no-reference row of the study (params.yaml models:), "
                                                      "e.g. contrique, arniqa, brisque, niqe, file:PATH"),
          regressors: Optional[Path] = typer.Option(
              None, parser=typed_path, help="folder of fitted regressors (default: the repository's "
                                            "data/models/regressors); the study's rows read their encoders from "
                                            "the repository that holds it")) -> None:
    """Predict the quality of your own images with a row of the study and its fitted regressor."""
    from .images import ImageError
    from .scoring import score_images

    try:
        frame = score_images(images, model, regressors)
    except (ImageError, FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)  # unwrapped, so the file name stays whole
        raise typer.Exit(1)
    if not console().is_terminal:  # piped or redirected: plain CSV that other tools can read (undefined: empty)
        typer.echo(frame[["image", "width", "height", "quality"]].to_csv(index=False), nl=False)
    else:
        table = Table(title=f"predicted quality by {model} ({frame['scale'].iloc[0]})")
        table.add_column("image", overflow="fold")
        for col in ("width", "height", "quality"):
            table.add_column(col, justify="right")
        for row in frame.itertuples():
            quality = "undefined" if math.isnan(row.quality) else f"{row.quality:.1f}"
            table.add_row(Text(row.image), str(row.width), str(row.height), quality)  # not markup
        console().print(table)
    if frame.attrs.get("not_scored"):
        typer.echo(f"error: {frame.attrs['not_scored']}", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
