"""Reading published score files strictly.

Every parser goes through these helpers so that a score file with a missing or
renamed column, a blank or non-numeric score, or an image listed twice fails
with one message that names the dataset, the file and the (1-based) line,
instead of silently producing a shorter or shifted manifest.
"""
from __future__ import annotations

import csv
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io


class DatasetError(ValueError):
    """A dataset on disk that does not match its published layout or format."""


PUBLISHED_HINT = "use the score file as published by the dataset authors"


def locate(root: Path, relative: str, dataset: str, *, required: bool = True) -> Path | None:
    """Find ``relative`` under ``root`` or one folder down.

    Archives often wrap their content in one top-level folder (``kadid10k/``,
    ``ChallengeDB_release/``), and users point at either level; accepting both
    keeps ``datasets add`` forgiving without guessing deeper.
    """
    root = Path(root)
    direct = root / relative
    if direct.exists():
        return direct
    if root.is_dir():
        for child in sorted(p for p in root.iterdir() if p.is_dir()):
            candidate = child / relative
            if candidate.exists():
                return candidate
    if required:
        raise DatasetError(f"{dataset}: '{relative}' not found under {root} (nor one folder down); "
                           f"point at the folder that holds the dataset as published")
    return None


def read_csv_columns(path: Path, dataset: str, required: list[str], *, optional: list[str] = (),
                     exact: bool = False, remedy: str = PUBLISHED_HINT, **kwargs) -> pd.DataFrame:
    """Read a CSV and insist on its published columns.

    ``exact`` also refuses extra columns: for files whose column order carries
    meaning (KADID's ``dmos.csv``) an extra column means a different file.
    Every column is read as text: pandas would read a score column of ``true``/``false`` as booleans,
    which ``numeric_column`` would then take for the scores 1 and 0. The physical line of each row
    is kept in ``frame.attrs["lines"]`` (see ``line_of``).
    """
    try:
        with warnings.catch_warnings():
            # With index_col=False pandas drops the extra fields of a long row with only a warning.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, **{**kwargs, "dtype": str})
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{dataset}: {path} is empty; it needs a header line with the columns "
                           f"{required} and one line per image") from None
    except UnicodeDecodeError as err:
        raise DatasetError(f"{dataset}: {path} is not UTF-8 text ({err}); save it as UTF-8 (e.g. \"CSV UTF-8\" "
                           "in a spreadsheet) and try again") from None
    except pd.errors.ParserWarning:
        frame = None
    except pd.errors.ParserError as err:  # a long row (without index_col=False), or a quote that never closes
        if not _first_long_line(path):
            _unreadable(path, dataset, err)
        frame = None
    header = list(frame.columns) if frame is not None else _header(path)
    if len(header) == 1 and any(sep in str(header[0]) for sep in ";\t"):
        sep = "';'" if ";" in header[0] else "a tab"
        raise DatasetError(f"{dataset}: {path} has one column {header[0]!r}: its fields are separated by {sep}, and "
                           "iqabench reads comma-separated files; save it with ',' as the separator (and '.' as "
                           "the decimal point)")
    if frame is None:
        raise DatasetError(f"{dataset}: {path} line {_first_long_line(path) or 1} has more fields than its header "
                           f"(line 1: {','.join(header)!r}); quote names that hold a comma, or remove the extra fields")
    frame.columns = [str(c).strip() for c in frame.columns]
    check_columns(frame, path, dataset, required, optional=optional, exact=exact, remedy=remedy)
    lines = _record_lines(path)
    if len(lines) == len(frame):  # else a layout this mapping does not follow: line_of falls back to row + 2
        frame.attrs["lines"] = lines
    return frame


def _unreadable(path: Path, dataset: str, err: pd.errors.ParserError) -> None:
    """A CSV pandas cannot tokenise: its words, and for a quote that never closes, the line it opens on."""
    said = " ".join(str(err).split())
    if "EOF inside string" in said:
        records = _record_lines(path, keep_blank=True)  # the csv module reads an open quote to the end of the file
        line = int(records[-1]) if len(records) else 1
        raise DatasetError(f"{dataset}: {path} line {line}: a quote (\") opens a field that never closes (pandas: "
                           f"{said}); close the quote, or remove it") from None
    raise DatasetError(f"{dataset}: {path} cannot be read as CSV (pandas: {said}); save it as a comma-separated "
                       "file with one header line and one line per image") from None


def _record_lines(path: Path, keep_blank: bool = False) -> np.ndarray:
    """The physical (1-based) line on which each data row of a CSV starts, as pandas counts rows.

    A row's index + 2 is its line only without blank lines (pandas skips them, as it does lines of
    spaces or tabs) or names holding a quoted line break. An empty field alone (``""``) is a row."""
    starts, line = [], 0
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        rows = csv.reader(fh)
        try:
            for row in rows:
                blank = not row or (len(row) == 1 and row[0] != "" and not row[0].strip(" \t"))
                if keep_blank or not blank:
                    starts.append(line + 1)
                line = rows.line_num
        except csv.Error:  # a field past the csv module's size limit (an open quote swallowing the file)
            starts.append(line + 1)  # the row it started on; for a successful read, a count that cannot match
    return np.asarray(starts[1:] if not keep_blank else starts, dtype=np.int64)  # [1:]: the header


def line_of(frame: pd.DataFrame, row: int, first_line: int = 2) -> int:
    """The line of the file that holds ``frame``'s row ``row`` (0-based): the physical line that
    ``read_csv_columns`` recorded, else (a spreadsheet, a built frame) ``row + first_line``."""
    lines = frame.attrs.get("lines")
    if lines is not None and len(lines) == len(frame):
        return int(lines[row])
    return row + first_line


def read_text_lines(path: Path, dataset: str) -> list[str]:
    """The lines of a plain-text score list (TID2013, SCID, PIPAL), whatever the line endings.

    The published lists are ASCII; copies re-saved on Windows gain a UTF-8 byte order mark,
    which would otherwise glue itself to the first MOS or name (``'\\ufeff5.51429'`` is not a
    number) and fail line 1. UTF-8 is tried first, then Latin-1 (every byte decodes), so the
    locale never decides how a file is read; UTF-16 ("Unicode" in Notepad) is named, not misread.
    """
    data = Path(path).read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DatasetError(f"{dataset}: {path} is UTF-16 text; save it as ASCII or UTF-8 (as the dataset "
                           "publishes it) and try again")
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.splitlines()


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return next(csv.reader(fh), [])


def _first_long_line(path: Path) -> int | None:
    """The 1-based line of the first row with more fields than the header; None when there is none."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        rows = csv.reader(fh)
        width = len(next(rows, []))
        return next((rows.line_num for row in rows if len(row) > width), None)


def read_excel_columns(path: Path, dataset: str, required: list[str], *, sheet=0,
                       header_search: bool = False) -> pd.DataFrame:
    """Read a spreadsheet sheet; with ``header_search`` the header row is located.

    CSIQ's ``csiq.DMOS.xlsx`` (sheet ``all_by_image``) starts its table at row 4,
    column D, so the header is the first row that contains every required column name.
    """
    _require_openpyxl(path, dataset)
    try:
        raw = pd.read_excel(path, sheet_name=sheet, header=None if header_search else 0)
    except ValueError as err:
        raise DatasetError(f"{dataset}: cannot read sheet {sheet!r} of {path}: {err}") from err
    if header_search:
        wanted = set(required)
        header_row = None
        for i, row in raw.iterrows():
            names = {str(v).strip() for v in row if pd.notna(v)}
            if wanted <= names:
                header_row = i
                break
        if header_row is None:
            raise DatasetError(f"{dataset}: no header row with columns {required} in sheet {sheet!r} of {path}")
        header = [str(v).strip() if pd.notna(v) else f"_blank{j}" for j, v in enumerate(raw.loc[header_row])]
        frame = raw.loc[header_row + 1:].copy()
        frame.columns = header
        frame = frame.dropna(how="all").reset_index(drop=True)
        frame.attrs["first_line"] = int(header_row) + 2
        check_columns(frame, path, dataset, required)
        return frame
    raw.columns = [str(c).strip() for c in raw.columns]
    check_columns(raw, path, dataset, required)
    return raw


def read_excel_positional(path: Path, dataset: str, *, columns: int, sheet=0) -> pd.DataFrame:
    """The first ``columns`` columns of a sheet whose row 1 is a header, by position.

    For spreadsheets whose header wording is not part of the published contract
    (BID), only the column order is relied on; a sheet with fewer columns, or a
    numeric first row (data where the header should be), is refused.
    """
    _require_openpyxl(path, dataset)
    try:
        raw = pd.read_excel(path, sheet_name=sheet, header=None)
    except ValueError as err:
        raise DatasetError(f"{dataset}: cannot read sheet {sheet!r} of {path}: {err}") from err
    if raw.shape[1] < columns or raw.shape[0] < 2:
        raise DatasetError(f"{dataset}: sheet {sheet!r} of {path} has {raw.shape[1]} column(s) and "
                           f"{raw.shape[0]} row(s); expected a header row and {columns} columns")
    first = pd.to_numeric(raw.iloc[0, :columns], errors="coerce")
    if first.notna().all():
        raise DatasetError(f"{dataset}: {path} row 1 holds numbers {raw.iloc[0, :columns].tolist()}, "
                           f"where the published file has a header; use the file as published")
    return raw.iloc[1:, :columns].reset_index(drop=True)


def _require_openpyxl(path: Path, dataset: str) -> None:
    """The reader pandas needs for this workbook: openpyxl for .xlsx, xlrd for legacy .xls
    (BID's grades circulate as both); said before any reading, with the one-line fix."""
    legacy = Path(path).suffix.lower() == ".xls"
    package = "xlrd" if legacy else "openpyxl"
    try:
        __import__(package)
    except ImportError as err:
        also = f", or save it as {Path(path).stem}.xlsx" if legacy else ""
        raise DatasetError(f"{dataset}: reading {path.name} needs the '{package}' package; "
                           f"install it with `pip install {package}`{also}") from err


def check_columns(frame: pd.DataFrame, path: Path, dataset: str, required: list[str], *,
                  optional: list[str] = (), exact: bool = False, remedy: str = PUBLISHED_HINT) -> None:
    # pandas renames a repeated column 'MOS' 'MOS.1'; 'MOS' and 'MOS ' stay apart until the caller strips them;
    # a header found in a sheet's rows keeps both (selecting it then gave a frame, and a TypeError traceback).
    twice = [c for c in required if f"{c}.1" in frame.columns or list(frame.columns).count(c) > 1]
    if twice:
        raise DatasetError(f"{dataset}: {path} has the column {twice[0]!r} more than once; keep one, so that it is "
                           "clear which holds the values")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DatasetError(f"{dataset}: {path} lacks column(s) {missing}; it has {list(frame.columns)}; {remedy}")
    if exact:
        extra = [c for c in frame.columns if c not in required and c not in optional]
        if extra:
            raise DatasetError(f"{dataset}: {path} has unexpected column(s) {extra}; "
                               f"the published file has exactly {list(required) + list(optional)}")


def numeric_column(frame: pd.DataFrame, column: str, path: Path, dataset: str,
                   first_line: int = 2) -> np.ndarray:
    """The column as float64; a blank or non-numeric cell names its line.

    A boolean (a spreadsheet's TRUE) is not a number here, though pandas would make it 1 or 0."""
    cells = frame[column].astype(object)
    boolean = cells.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
    values = pd.to_numeric(cells.mask(boolean, None), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        cell = cells.iloc[row]
        shown = "blank" if not isinstance(cell, (bool, np.bool_)) and pd.isna(cell) else _shown(str(cell))
        raise DatasetError(f"{dataset}: {path} line {line_of(frame, row, first_line)}: '{column}' is "
                           f"{shown}, {_not_a_number(values[row])} ({int(bad.sum())} such row(s))")
    return values


def _shown(text: str) -> str:
    """A cell for a one-line message: a 400-digit "score" is its first 30 characters and its length."""
    return repr(text) if len(text) <= 40 else f"{text[:30]!r}... ({len(text)} characters)"


def _not_a_number(value: float) -> str:
    # 1e999 or 400 digits parse as inf: a number, but none a float holds (and no rating scale reaches).
    return "not a finite number" if np.isinf(value) else "not a number"


def parse_score(text: str, where: str, what: str) -> float:
    """One score read from a text file; NaN, inf or anything else is refused, naming ``where`` (file and line)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise DatasetError(f"{where}: {what} {_shown(text)} is {_not_a_number(value)}")
    return value


def bad_line(frame: pd.DataFrame, row: int, path: Path, dataset: str, said: str, first_line: int = 2,
             remedy: str | None = None) -> DatasetError:
    """The one wording of a bad row: ``<dataset>: <file> line <N>: <said>[; <remedy>]``."""
    return DatasetError(f"{dataset}: {path} line {line_of(frame, row, first_line)}: {said}"
                        + (f"; {remedy}" if remedy else ""))


def text_column(frame: pd.DataFrame, column: str, path: Path, dataset: str, first_line: int = 2) -> pd.Series:
    """The column as stripped text; a blank cell names its file, line and column.

    ``astype(str)`` alone keeps a blank cell as NaN (pandas 3) or turns it into ``'nan'`` (pandas 2), which
    then joined a path (a TypeError traceback) or read as a value nobody wrote (``unknown set nan``)."""
    text = frame[column].astype(object).map(lambda v: "" if pd.isna(v) else str(v).strip())
    blank = (text == "").to_numpy(dtype=bool)
    if blank.any():
        row = int(np.flatnonzero(blank)[0])
        raise bad_line(frame, row, path, dataset, f"'{column}' is blank ({int(blank.sum())} such row(s))",
                       first_line)
    return text


def name_column(frame: pd.DataFrame, column: str, path: Path, dataset: str,
                first_line: int = 2) -> list[str]:
    """Image names, stripped; blank or duplicated names, or a NUL byte (no file name can hold one, and
    the OS calls would raise on it), are errors with their line."""
    names = text_column(frame, column, path, dataset, first_line)
    nul = names.str.contains("\0", regex=False)
    if nul.any():
        row = int(np.flatnonzero(nul.to_numpy())[0])
        raise bad_line(frame, row, path, dataset, f"'{column}' {names.iloc[row]!r} holds a NUL byte (\\x00), which "
                       "no file name can", first_line, "write the file's name there")
    dup = names.duplicated(keep="first")
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        first = int(np.flatnonzero((names == names.iloc[row]).to_numpy())[0])
        raise bad_line(frame, row, path, dataset, f"image {names.iloc[row]!r} is listed again (first on line "
                       f"{line_of(frame, first, first_line)})", first_line, "remove the duplicate")
    return names.tolist()


# What scipy's MATLAB reader raises on a damaged file: its own MatReadError for a short or zeroed header, and
# whatever its byte-level parsing hits further in (seen on every truncation of a small file: OSError "could not
# read bytes", IndexError, TypeError, ValueError); struct, EOF and zlib errors come from the layers below it.
MAT_ERRORS = (scipy.io.matlab.MatReadError, ValueError, OSError, IndexError, TypeError, EOFError, struct.error,
              zlib.error)


def load_mat(path: Path, dataset: str, variables: list[str]) -> dict:
    try:
        content = scipy.io.loadmat(path)
    except NotImplementedError as err:  # a MATLAB v7.3 (HDF5) file, which the datasets do not publish
        raise DatasetError(f"{dataset}: cannot read MATLAB file {path}: it is a v7.3 (HDF5) file ({err}), not the "
                           "format the dataset publishes; use the release's own file (extract it again), or "
                           "re-save it in MATLAB with save(..., '-v7')") from err
    except MAT_ERRORS as err:
        raise DatasetError(f"{dataset}: cannot read MATLAB file {path} ({err or type(err).__name__}): it is "
                           "damaged or truncated; replace it with the file as published (download or extract the "
                           "dataset again)") from None
    missing = [v for v in variables if v not in content]
    if missing:
        present = [k for k in content if not k.startswith("__")]
        raise DatasetError(f"{dataset}: {path} lacks variable(s) {missing}; it has {present}")
    return content


def mat_vector(content: dict, variable: str, path: Path, dataset: str) -> np.ndarray:
    """A .mat variable as a float64 vector: a string, cell or struct, or a matrix (whose flattening would
    interleave its rows), is refused naming the file and the variable."""
    value = np.asarray(content[variable])
    if value.dtype.kind not in "biuf" or sum(n > 1 for n in value.shape) > 1:
        raise DatasetError(f"{dataset}: {path}: '{variable}' is a {value.dtype} array of shape {value.shape}, not the "
                           "published vector of numbers; replace the file with the release's own")
    return value.astype(np.float64).ravel()


def mat_strings(array) -> list[str]:
    """Flatten a MATLAB cell array of char arrays to Python strings."""
    out = []
    for item in np.asarray(array, dtype=object).ravel():
        while isinstance(item, np.ndarray):
            item = item.ravel()[0] if item.size else ""
        out.append(str(item).strip())
    return out


def case_insensitive_index(folder: Path) -> dict[str, Path]:
    """Map lower-cased file names in ``folder`` to their real paths.

    TID2013 ships names whose case differs from its score file (``I25`` vs
    ``i25``); on a case-sensitive file system only a lookup by lower-cased
    name finds them.
    """
    if not folder.is_dir():
        return {}
    return {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
