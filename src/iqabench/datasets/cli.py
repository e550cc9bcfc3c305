"""``iqabench datasets ...``: status, download, add, add-generic (a typer sub-app)."""
from __future__ import annotations

import textwrap
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..manifest import ManifestError
from ..params import outside_repository, repo_root
from ..terminal import console, typed_path
from .archives import rar_extractor
from .download import download, needs_rar
from .local import DATA_ROOT, DEFAULT_REGISTRY, register, register_generic
from .registry import SHARED_SUBSETS, SPECS, closest, get_spec
from .scorefiles import DatasetError
from .status import PREPARED, status_table

app = typer.Typer(help="Real human-rated IQA datasets: status, download, register local copies.",
                  no_args_is_help=False)


err_console = console(stderr=True)


def _fail(err: Exception) -> None:
    # Escaped (a message may hold "[1, 5]") and soft-wrapped, so paths and line numbers stay whole.
    err_console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
    raise typer.Exit(code=1)


def _show_warnings(caught) -> None:
    for w in caught:
        err_console.print(f"[yellow]warning:[/yellow] {escape(str(w.message))}", soft_wrap=True)


# The defaults are the repository's data/ files, found from params.yaml upwards: relative to the working
# folder, a command run in a subfolder wrote a registry there that the pipeline never reads.
DEFAULTS = {"registry": (DEFAULT_REGISTRY, "--registry FILE"), "data_root": (DATA_ROOT, "--data-root DIR")}


def _where(ctx: typer.Context, key: str) -> Path:
    """The path an option names: as given, else its default under the repository root."""
    if ctx.obj[key] is not None:
        return Path(ctx.obj[key])
    default, option = DEFAULTS[key]
    try:
        return repo_root() / default
    except FileNotFoundError:
        _fail(DatasetError(outside_repository(f"there is no repository {default} here", "iqabench datasets", option)))


def _prepared() -> Path:
    """Where `prepare` writes manifests; outside a repository there are none (every built set shows 'not built')."""
    try:
        return repo_root() / PREPARED
    except FileNotFoundError:
        return PREPARED


@app.callback(invoke_without_command=True)
def main(ctx: typer.Context,
         data_root: Path = typer.Option(None, parser=typed_path, help=f"where downloads are extracted (default: "
                                                                 f"{DATA_ROOT} in the repository)"),
         registry: Path = typer.Option(None, parser=typed_path, help=f"registry of local copies (default: "
                                                                f"{DEFAULT_REGISTRY} in the repository)")):
    """Without a subcommand: the status table of every dataset."""
    ctx.obj = {"data_root": data_root, "registry": registry}
    if ctx.invoked_subcommand is not None:
        return
    try:
        registry = _where(ctx, "registry")  # first: the file a user most often means to be the repository's
        rows = status_table(_where(ctx, "data_root"), registry, _prepared())
    except (DatasetError, ManifestError) as err:
        _fail(err)
    if ctx.obj["registry"] is not None and not registry.exists():  # a typo listed every dataset missing, silently
        err_console.print(f"note: {escape(str(registry))} does not exist, so nothing is registered there (it is made "
                          "by `iqabench datasets add`)", soft_wrap=True)
    # One word per cell, so the table fits 80 columns without folding; the details are one command away.
    # A long registered name would squeeze every cell to "register…": the kind column gives way first.
    cells = [(r["name"], r["kind"], "-" if r["images"] is None else str(r["images"]), r["size"], r["state"])
             for r in rows]
    heads = ("name", "kind", "images", "size", "status")
    needed = sum(max(len(c) for c in col) + 3 for col in zip(heads, *cells)) + 1  # padding and the box's rules
    keep = [i for i in range(5) if i != 1 or needed <= console().width]
    table = Table(title="iqabench datasets", title_justify="left")
    for i in keep:
        table.add_column(heads[i], justify="right" if heads[i] in ("images", "size") else "left", no_wrap=True)
    for row in cells:
        colour = "green" if row[4] in ("ready", "registered", "partial") else "yellow"
        table.add_row(*(f"[{colour}]{row[i]}[/{colour}]" if i == 4 else escape(row[i]) for i in keep))
    console().print(table)
    console().print("Scale, path and how to get one: [bold]iqabench datasets show NAME[/bold]")


@app.command("show")
def show_cmd(ctx: typer.Context, name: str):
    """Everything about one dataset: kind, size, score scale, where it is, how to get it."""
    try:
        registry = _where(ctx, "registry")
        rows = {row["name"]: row for row in status_table(_where(ctx, "data_root"), registry, _prepared())}
    except (DatasetError, ManifestError) as err:
        _fail(err)
    if name not in rows:
        close = closest(name, rows)
        _fail(DatasetError(f"unknown dataset {name!r}{f' (did you mean {close!r}?)' if close else ''}; known: "
                           f"{', '.join(rows)}"))
    row = rows[name]
    for key in ("name", "kind", "images", "score", "content", "size", "state", "path", "action"):
        value = row.get(key)
        if value not in (None, ""):
            # Wrapped at spaces only: a path longer than the terminal stays whole (and copyable), not folded.
            lines = textwrap.wrap(str(value), max(20, console().width - 9), break_long_words=False,
                                  break_on_hyphens=False)
            console().print(f"[bold]{key + ':':8}[/bold] " + escape("\n         ".join(lines)), soft_wrap=True)
    if name in SPECS and needs_rar(SPECS[name]):
        try:  # its archive is a .rar: said here, not only when a download starts
            rar_extractor()
        except DatasetError as err:
            console().print(f"[bold]{'needs:':8}[/bold] " + escape(str(err)), soft_wrap=True)


def _registered(name: str, entry: dict) -> None:
    console().print(f"[green]{name}[/green] registered: {entry['images']} images at {escape(str(entry['path']))}. To use it, "
                    f"list {name} under `datasets:` in params.yaml and run `dvc repro`")


def _published(name: str, nothing: str) -> None:
    """``name`` is a published dataset (else get_spec's did-you-mean); one `dvc repro` makes itself is said so."""
    if name in SPECS:
        return
    from .embedded import SETS  # torch and the distortion engine: imported only for a name that is not published
    if name in SETS:
        raise DatasetError(f"{name!r} is one of iqabench's embedded datasets: the prepare stage of `dvc repro` builds "
                           f"it from scikit-image's photographs, so {nothing}; list it under `datasets:` in "
                           "params.yaml to use it")
    if name in SHARED_SUBSETS:
        raise DatasetError(f"{name!r} is the real subset in ../shared/datasets/{name}, which `dvc repro` reads where "
                           f"it is, so {nothing}; list it under `datasets:` in params.yaml to use it")
    get_spec(name)


@app.command("download")
def download_cmd(ctx: typer.Context, name: str,
                 dest: Path = typer.Option(None, parser=typed_path, help="target folder (default: DATA_ROOT/NAME)"),
                 keep_archives: bool = typer.Option(False, help="keep the downloaded archives"),
                 retries: int = typer.Option(4, min=0, help="retries per file on transient errors"),
                 partial: bool = typer.Option(False, "--partial", help="accept fewer images than published")):
    """Download, verify and extract NAME (resumes an interrupted download)."""
    try:
        _published(name, "there is nothing to download")
        target = dest or _where(ctx, "data_root") / name
        # lock_path=None: the same per-dataset lock file the `download` stage keeps.
        download(name, target, keep_archives=keep_archives, retries=retries, lock_path=None, allow_partial=partial)
    except (DatasetError, ManifestError) as err:
        _fail(err)
    console().print(f"[green]{name}[/green] is ready in {escape(str(target))}")


@app.command("add")
def add_cmd(ctx: typer.Context, name: str,
            source: Path = typer.Option(..., "--from", parser=typed_path, help="folder holding the dataset as published"),
            partial: bool = typer.Option(False, "--partial", help="accept a subset of the images"),
            skip_pixels: bool = typer.Option(False, help="do not decode every image")):
    """Validate a local copy of NAME and register it without copying."""
    try:
        _published(name, "there is nothing to register")
        registry = _where(ctx, "registry")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            entry = register(name, source, registry_path=registry, allow_partial=partial,
                             check_pixels=not skip_pixels)
        _show_warnings(caught)
    except (DatasetError, ManifestError) as err:
        _fail(err)
    _registered(name, entry)


@app.command("add-generic")
def add_generic_cmd(ctx: typer.Context, name: str,
                    folder: Path = typer.Option(..., parser=typed_path, help="folder the image names are relative to"),
                    csv: Path = typer.Option(..., parser=typed_path, help="CSV with one row per image"),
                    image_col: str = typer.Option("image", help="column with image file names"),
                    score_col: str = typer.Option("MOS", help="column with the scores"),
                    lo: float = typer.Option(..., help="lowest possible score"),
                    hi: float = typer.Option(..., help="highest possible score"),
                    # Not given: higher is better, except for a DMOS (usually lower), which must say which.
                    higher_is_better: Optional[bool] = typer.Option(None, "--higher-is-better/--lower-is-better",
                                                                    help="score direction (default: higher is "
                                                                         "better; required for a DMOS)"),
                    score_type: str = typer.Option("MOS", help="MOS, DMOS, ..."),
                    content_col: str = typer.Option(None, help="column naming the scene or reference image each "
                                                                "image shows (splits keep a scene on one side); "
                                                                "default: every image is its own scene")):
    """Register any other dataset from an image folder and a CSV of scores."""
    # Checked here, not in register_generic: the embedded module pulls torch and the distortion engine into
    # every stage that reads the registry. prepare builds an embedded set and would never read this entry.
    from .embedded import SETS
    if name in SETS:
        _fail(DatasetError(f"{name!r} is one of iqabench's own datasets; register yours under another name"))
    registry = _where(ctx, "registry")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            entry = register_generic(name, folder, csv, image_col, score_col, lo, hi, higher_is_better,
                                     score_type=score_type, content_col=content_col, registry_path=registry)
        _show_warnings(caught)
    except (DatasetError, ManifestError) as err:
        _fail(err)
    _registered(name, entry)
