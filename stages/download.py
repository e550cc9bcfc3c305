"""DVC stage: download, verify and extract one real dataset into data/raw/NAME/.

Usage, as dvc.yaml's download@NAME runs it:

    python stages/download.py NAME --data-root data/raw --lock data/checksums/NAME.lock.json

Datasets without a public URL cannot be fetched by a pipeline; for those the
stage fails with the instructions to register a local copy instead
(``iqabench datasets add NAME --from PATH``), and ``prepare`` reads the registry.
The checksum lock is a plain JSON per dataset that the download writes; commit it
so every later download, on any machine, must produce identical bytes. One file per
dataset, because DVC forbids two stages (``download@a``, ``download@b``) sharing an
output.
"""
from __future__ import annotations

import argparse
import sys

from iqabench import stage_paths
from iqabench.datasets import DatasetError, get_spec
from iqabench.datasets.download import download


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="dataset name from the registry, e.g. kadid10k")
    stage_paths.option(parser, "--data-root", "DIR", "parent folder; the dataset lands in DIR/NAME")
    stage_paths.option(parser, "--lock", "FILE", "JSON file pinning the SHA-256 of each downloaded file")
    parser.add_argument("--retries", type=int, default=4, help="retries per file on transient errors")
    parser.add_argument("--keep-archives", action="store_true", help="keep the archives after extraction")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        spec = get_spec(args.name)
        target = args.data_root / spec.name
        download(spec.name, target, lock_path=args.lock, retries=args.retries,
                 keep_archives=args.keep_archives, progress=sys.stderr.isatty())
    except DatasetError as err:
        print(f"download {args.name}: {err}", file=sys.stderr)
        return 1
    print(f"{spec.name}: ready in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
