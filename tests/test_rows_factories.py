"""`py:MODULE:FACTORY` rows that cannot be built say why in one line: a relative module name was importlib's
TypeError traceback, and a factory that exits (`py:sys:exit`) ended `iqabench score` with status 0 and nothing."""
from __future__ import annotations

import sys
import types

import pytest
from PIL import Image
from typer.testing import CliRunner

from iqabench import rows
from iqabench.cli import app


@pytest.mark.parametrize("module", ["..evil", ".rows", "a/b", "a..b", "1abc"])
def test_a_module_that_is_no_absolute_dotted_name_is_refused(module):
    name = f"py:{module}:make"
    with pytest.raises(ValueError) as err:
        rows.get(name)
    assert str(err.value) == (f"{name!r}: {module!r} is not an absolute, dotted module name; write the module's full "
                              "dotted name as `import` takes it, e.g. py:mypkg.rows:my_row")


def test_a_factory_that_exits_is_named(monkeypatch):
    with pytest.raises(ValueError, match=r"^row py:sys:exit failed to build: its factory called exit\(\); a row "
                                         r"factory returns an iqabench.rows.Row"):
        rows.get("py:sys:exit")
    module = types.ModuleType("exiting_rows")
    module.three = lambda: sys.exit(3)

    def build(seed, device):
        raise SystemExit("bye")

    module.builds = lambda: rows.Row("x", rows.NR, build, "exits when built")
    monkeypatch.setitem(sys.modules, "exiting_rows", module)
    with pytest.raises(ValueError, match=r"row py:exiting_rows:three failed to build: its factory called exit\(3\)"):
        rows.get("py:exiting_rows:three")
    with pytest.raises(ValueError, match=r"row py:exiting_rows:builds failed to build: its build function called "
                                         r"exit\('bye'\)"):
        rows.feature_fn("py:exiting_rows:builds")  # what extract calls (its `except ValueError`: one line)


def test_score_with_an_exiting_factory_fails_with_the_line(tmp_path):
    Image.new("RGB", (48, 48), "grey").save(tmp_path / "p.png")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "p.png"), "--model", "py:sys:exit"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "error: row py:sys:exit failed to build: its factory called exit()" in " ".join(result.output.split())


def test_score_with_a_relative_module_fails_with_the_line(tmp_path):
    Image.new("RGB", (48, 48), "grey").save(tmp_path / "p.png")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "p.png"), "--model", "py:..evil:f"])
    assert result.exit_code == 1 and "'..evil' is not an absolute, dotted module name" in result.output
    assert "Traceback" not in result.output and "package" not in result.output
