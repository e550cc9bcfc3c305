"""How long `dvc status` takes on a dataset-sized tracked folder, by output layout.

The `download` stage tracks each dataset as ONE directory output
(``outs: data/raw/NAME``). The alternative is one output per file. This builds a
throw-away git+DVC repository per case, fills ``data/raw/NAME`` with N tiny files
(10,000 like KonIQ-10k, 140,000 like KADIS-700k's pristine set), records the
stage with ``dvc commit`` and times:

* ``commit``: hashing N files and filling the cache (what follows a download);
* ``cold``: the first ``dvc status`` with DVC's hash database (site cache dir) wiped,
  as on a machine that did not produce the files; the OS page cache stays warm;
* ``warm``: the same ``dvc status`` again (hashes reused from the database);
* ``changed``: ``dvc status`` after rewriting one file (it must report the change).

The per-file layout is measured at ``--file-sizes`` (default 1,000 and 4,000: its
``dvc commit`` ran past 150 s at 10,000 files on the 2-core development machine),
each beside a directory output of the same count. Every command is timed from the shell,
so DVC's own start-up (``baseline``: status of an empty repository) is included.
Writes reports/benchmarks/dvc_status.json and .md.

    python benchmarks/dvc_status_speed.py [--sizes 10000 140000] [--file-sizes 1000 4000] [--timeout 150]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.progress import Progress

from iqabench import io
from iqabench.provenance import stamp, stamp_line

DVC = Path(sys.executable).parent / "dvc"
FILE_BYTES = 200
STEPS = ("commit", "cold", "warm", "changed")


def sh(args, cwd: Path, env: dict, timeout: float) -> tuple[float | None, str]:
    """Run a command; return (seconds, output), seconds None when it ran past ``timeout``."""
    start = time.perf_counter()
    try:
        result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed in {cwd} (exit {result.returncode}):\n"
                           f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return seconds, result.stdout + result.stderr


def write_files(folder: Path, n_files: int, label: str) -> None:
    folder.mkdir(parents=True)
    payload = os.urandom(FILE_BYTES - 16)
    with Progress(transient=True) as bar:
        task = bar.add_task(f"writing {label}", total=n_files)
        for i in range(n_files):
            # Distinct bytes per file, so DVC stores n_files objects, not one.
            (folder / f"{i:06d}.jpg").write_bytes(i.to_bytes(16, "little") + payload)
            if i % 1000 == 0:
                bar.update(task, completed=i)


def stage_yaml(name: str, n_files: int, layout: str) -> str:
    head = (f"stages:\n  download:\n    cmd: python download.py {name}\n    deps:\n      - download.py\n"
            f"    outs:\n")
    if layout == "directory":
        return head + f"      - data/raw/{name}\n"
    return head + "".join(f"      - data/raw/{name}/{i:06d}.jpg\n" for i in range(n_files))


def measure_case(root: Path, n_files: int, layout: str, timeout: float) -> dict:
    name = f"set{n_files}"
    repo = root / f"{layout}-{n_files}"
    repo.mkdir()
    env = dict(os.environ, DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(root / f"site-{layout}-{n_files}"),
               GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.invalid",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.invalid")
    sh(["git", "init", "-q"], repo, env, 60)
    sh([DVC, "init", "-q"], repo, env, 60)
    # Hard links: the cache shares the workspace's inodes, so disk use is not doubled.
    sh([DVC, "config", "cache.type", "hardlink"], repo, env, 60)
    (repo / "download.py").write_text("# stands in for stages/download.py\n")
    write_files(repo / "data/raw" / name, n_files, f"{n_files} files ({layout})")
    (repo / "dvc.yaml").write_text(stage_yaml(name, n_files, layout))

    row = {"files": n_files, "layout": layout}
    row["commit"], out = sh([DVC, "commit", "-f", "-q", "download"], repo, env, timeout)
    if row["commit"] is None:
        return {**row, "cold": None, "warm": None, "changed": None, "note": f"dvc commit {out}"}
    shutil.rmtree(env["DVC_SITE_CACHE_DIR"], ignore_errors=True)
    for step in ("cold", "warm"):
        row[step], out = sh([DVC, "status"], repo, env, timeout)
        if row[step] is not None and "up to date" not in out:
            raise RuntimeError(f"{layout}/{n_files}: expected a clean status after commit, got:\n{out[-2000:]}")
    changed = repo / "data/raw" / name / "000000.jpg"
    changed.unlink()  # a hard link into the cache: replace it, never write through it
    changed.write_bytes(b"changed" * 10)
    row["changed"], out = sh([DVC, "status"], repo, env, timeout)
    if row["changed"] is not None and "modified" not in out:
        raise RuntimeError(f"{layout}/{n_files}: dvc status missed a modified file:\n{out[-2000:]}")
    return row


def baseline(root: Path, timeout: float) -> float:
    repo = root / "empty"
    repo.mkdir()
    env = dict(os.environ, DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(root / "site-empty"))
    sh(["git", "init", "-q"], repo, env, 60)
    sh([DVC, "init", "-q"], repo, env, 60)
    sh([DVC, "status"], repo, env, timeout)  # first call pays for byte-compiling and disk reads
    return min(sh([DVC, "status"], repo, env, timeout)[0] for _ in range(2))


def fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}"


def render(result: dict) -> str:
    lines = ["# `dvc status` speed by output layout", "", stamp_line(result["provenance"]), "",
             f"DVC {result['dvc_version']}; {result['file_bytes']}-byte files, flat folder, "
             f"cache.type=hardlink. Times in seconds, wall clock, each one run of the `dvc` command (start-up "
             f"included: an empty repository's `dvc status` takes {result['baseline_s']:.1f} s). The machine is "
             f"shared, so expect +-20 % noise.", "",
             "| files | layout | dvc commit | status, cold | status, warm | status, 1 file changed |",
             "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['files']:,} | {row['layout']} | {fmt(row['commit'])} | {fmt(row['cold'])} | "
                     f"{fmt(row['warm'])} | {fmt(row['changed'])} |")
    lines += ["", "cold: DVC's hash database wiped (as on another machine), warm: repeated, changed: one file "
              f"rewritten. `-`: ran past the {result['timeout_s']:.0f} s limit per command."]
    lines += [f"{row['files']:,} files, {row['layout']}: {row['note']}." for row in result["rows"] if row.get("note")]
    lines += ["", "## Recommendation", "", result["recommendation"], ""]
    return "\n".join(lines)


def recommend(rows: list[dict]) -> str:
    by = {(r["layout"], r["files"]): r for r in rows}
    both = sorted(n for (layout, n) in by if layout == "files" and (("directory", n) in by))
    parts = []
    for n in both:
        d, f = by[("directory", n)], by[("files", n)]
        if d["warm"] and f["warm"]:
            parts.append(f"at {n:,} files a warm `dvc status` takes {d['warm']:.1f} s with one directory output "
                         f"and {f['warm']:.1f} s with one output per file ({f['warm'] / d['warm']:.1f}x), "
                         f"`dvc commit` {fmt(d['commit'])} s vs {fmt(f['commit'])} s")
        elif d["warm"]:
            parts.append(f"at {n:,} files one output per file ran past the time limit, one directory output "
                         f"took {d['warm']:.1f} s warm")
    largest = max((r for r in rows if r["layout"] == "directory" and r["warm"]), key=lambda r: r["files"],
                  default=None)
    text = "Measured: " + "; ".join(parts) + "." if parts else "No layout pair was measured."
    if largest:
        text += (f" With one directory output, {largest['files']:,} files cost {largest['warm']:.1f} s warm and "
                 f"{fmt(largest['cold'])} s cold.")
    # Judge at the largest count measured in both layouts: small counts are within start-up noise.
    if both:
        d, f = by[("directory", both[-1])], by[("files", both[-1])]
        directory_wins = d["warm"] is not None and (f["warm"] is None or d["warm"] <= f["warm"])
    text += (" Keep one directory output per dataset (`outs: data/raw/NAME`), as the `download` stage does."
             if both and directory_wins else
             " The per-file layout was not slower here; re-check on a quiet machine before changing the stage.")
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 140000],
                        help="file counts measured with one directory output")
    parser.add_argument("--file-sizes", type=int, nargs="*", default=[1000, 4000],
                        help="file counts measured with one output per file (and as a directory, to compare)")
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds allowed per dvc command")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temporary repositories")
    args = parser.parse_args(argv)
    prov = stamp(None if argv is None else [__file__, *argv])

    version = subprocess.run([str(DVC), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dvc-status-", dir=args.workdir) as tmp:
        root = Path(tmp)
        base = baseline(root, args.timeout)
        cases = [(n, "directory") for n in set(args.sizes) | set(args.file_sizes)]
        cases += [(n, "files") for n in set(args.file_sizes)]
        for n_files, layout in sorted(cases):
            row = measure_case(root, n_files, layout, args.timeout)
            print(f"{layout:9s} {n_files:7d} files: " + ", ".join(f"{s} {fmt(row[s])} s" for s in STEPS),
                  flush=True)
            rows.append(row)
            shutil.rmtree(root / f"{layout}-{n_files}", ignore_errors=True)
    result = {"provenance": prov, "dvc_version": version, "file_bytes": FILE_BYTES, "baseline_s": base, "rows": rows,
              "timeout_s": args.timeout, "total_s": time.perf_counter() - started}
    result["recommendation"] = recommend(rows)
    io.write_json(args.out / "dvc_status.json", result)
    io.write_text(args.out / "dvc_status.md", render(result))
    print(result["recommendation"])
    print(f"wrote {args.out / 'dvc_status.md'} ({result['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
