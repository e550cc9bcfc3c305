"""A stage that meets input the user can fix stops with one line, not a traceback.

The input errors' messages already name the file, the field or value, and what to do (a manifest cell that is
not a number, a truncated features file), as do a full disk's or a read-only folder's (io.OutputWriteError:
the output, the cause, what to do); a traceback above them only hides that line. `stages/run.sh` then
says how to get the last good outputs back. Anything else (a bug) keeps its traceback.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from .features import FeaturesFileError
from .io import OutputWriteError, TableError
from .manifest import ManifestError

INPUT_ERRORS = (ManifestError, FeaturesFileError, TableError, OutputWriteError)


@contextlib.contextmanager
def one_line(stage: str, *more: type[Exception]) -> Iterator[None]:
    """Around a stage's work: an input error (or one of ``more``) ends the stage as ``error: STAGE: message``
    on stderr with exit status 1, as ``raise SystemExit(message)`` does."""
    try:
        yield
    except (*INPUT_ERRORS, *more) as err:
        message = str(err)
        named = message.startswith(f"{stage}: ")  # e.g. MixedInputError's "mixed: dataset ...": not twice
        raise SystemExit(f"error: {message if named else f'{stage}: {message}'}") from None
