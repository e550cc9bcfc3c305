"""provenance.stamp(): the commit, dirty flag, machine and command every benchmark report carries."""
from __future__ import annotations

import os
import subprocess

from iqabench import provenance


def _repo(tmp_path):
    (tmp_path / "benchmarks").mkdir(parents=True)
    script = tmp_path / "benchmarks" / "speed.py"
    script.write_text("print(1)\n")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, check=True, capture_output=True,
                         text=True).stdout.strip()
    return script, sha


def test_stamp_names_the_scripts_commit_and_the_command_as_typed(tmp_path, monkeypatch):
    script, sha = _repo(tmp_path)
    monkeypatch.chdir(tmp_path)
    prov = provenance.stamp([str(script), "--reps", "2", "--out", "a b"])
    assert prov["commit"] == sha and prov["dirty"] is False
    assert prov["command"] == "python benchmarks/speed.py --reps 2 --out 'a b'"
    assert prov["machine"].endswith(f"{os.cpu_count()} cores") and prov["torch_threads"] >= 1
    line = provenance.stamp_line(prov)
    assert line.startswith(f"Measured at commit `{sha[:10]}` on ") and "(+dirty)" not in line
    assert "command `python benchmarks/speed.py --reps 2 --out 'a b'`" in line


def test_an_edited_script_is_dirty_wherever_it_runs_from(tmp_path, monkeypatch):
    script, sha = _repo(tmp_path / "repo")  # run from outside: the script's repository counts, not the cwd's
    (tmp_path / "repo" / "README").write_text("edited after the commit\n")
    subprocess.run(["git", "add", "README"], cwd=tmp_path / "repo", check=True)
    monkeypatch.chdir(tmp_path)
    prov = provenance.stamp([str(script)])
    assert prov["commit"] == sha and prov["dirty"] is True
    assert f"`{sha[:10]}` (+dirty)" in provenance.stamp_line(prov)


def test_outside_git_the_commit_is_unknown(tmp_path, monkeypatch):
    script = tmp_path / "speed.py"
    script.write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    prov = provenance.stamp([str(script)])
    assert (prov["commit"], prov["dirty"]) == ("unknown", False)
