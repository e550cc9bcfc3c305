"""The pretraining corpus: distorted crops labelled by distortion class.

Written in shards (uint8 tensors) so that an interrupted ``synthesize`` resumes:
a shard whose stored config matches is kept, others are (re)generated. Each
shard has its own generator seeded from (seed, shard index), so a resumed run
produces exactly the bytes an uninterrupted one would.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import sys
from pathlib import Path

import pandas as pd
import torch
from rich.progress import track

from .. import images, io
from ..distortions import DISTORTION_TYPES, NUM_CLASSES, class_name, distort

# Labels are iqabench.distortions.class_index values (0 = pristine); this older name stays for the
# modules and tests that import it from here.
N_CLASSES = NUM_CLASSES
# What torch.load raises on a truncated or damaged file: its zip reader's RuntimeError ("failed finding central
# directory"), EOFError, a broken pickle, an I/O error. Caught around the load alone.
UNREADABLE = (RuntimeError, EOFError, pickle.UnpicklingError, OSError)


class CorpusError(io.TableError):
    """A corpus shard that cannot be read; the message names it and how to get it back (a TableError: the stages
    print it as one line)."""


def _why(err: BaseException) -> str:
    """The first sentence of the reason (torch's zip reader adds a paragraph of advice about checkpoints)."""
    text = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip()
    return text.splitlines()[0].split(". ")[0][:200] if text else type(err).__name__


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _shard(photos: dict[str, torch.Tensor], n: int, crop: int, gen: torch.Generator):
    names = list(photos)
    src = torch.randint(len(names), (n,), generator=gen).tolist()
    crops = []
    for i in src:
        img = photos[names[i]]
        top = int(torch.randint(img.shape[1] - crop + 1, (1,), generator=gen))
        left = int(torch.randint(img.shape[2] - crop + 1, (1,), generator=gen))
        crops.append(img[:, top:top + crop, left:left + crop])
    batch = torch.stack(crops)
    labels = torch.randint(NUM_CLASSES, (n,), generator=gen)
    named = [class_name(label) for label in labels.tolist()]
    for dist in DISTORTION_TYPES:  # in type order: the order the generator's draws are made in
        rows = torch.tensor([name == dist for name, _ in named])
        if rows.any():
            levels = torch.tensor([level for name, level in named if name == dist])
            batch[rows] = distort(batch[rows], dist, levels, generator=gen)
    return images.quantize(batch), labels, [names[i] for i in src]


def build(out_dir: str | Path, *, photos: list[str], crop: int, n_images: int, shard_size: int, seed: int) -> pd.DataFrame:
    from ..datasets.embedded import PHOTOS  # imports the metrics stack; training runs never need it
    unknown = [p for p in photos if p not in PHOTOS]
    if unknown:
        raise ValueError(f"unknown source photo(s) {unknown}; embedded photos are {sorted(PHOTOS)}")
    config = {"photos": photos, "crop": crop, "n_images": n_images, "shard_size": shard_size, "seed": seed,
              "types": list(DISTORTION_TYPES), "code": code_fingerprint()}
    digest, out_dir = config_hash(config), Path(out_dir)
    io.remove_orphans(out_dir)  # a persist: true output: a killed write's temp file would be cached with it
    # float64: distorted on another CPU, float32 would round some 8-bit pixels the other way.
    loaded = {p: images.from_uint8(PHOTOS[p]()).double() for p in photos}
    rows = []
    n_shards = -(-n_images // shard_size)
    for s in track(range(n_shards), description="synthesizing corpus"):
        path = out_dir / f"shard-{s:05d}.pt"
        blob = _existing(path)
        if not isinstance(blob, dict) or blob.get("config_hash") != digest:
            n = min(shard_size, n_images - s * shard_size)
            gen = torch.Generator().manual_seed(seed * 100_003 + s)
            imgs, labels, sources = _shard(loaded, n, crop, gen)
            blob = {"images": imgs, "labels": labels, "sources": sources, "config_hash": digest}
            io.write_torch(path, blob)
        for k, (label, source) in enumerate(zip(blob["labels"].tolist(), blob["sources"])):
            dist, level = class_name(label)
            rows.append({"shard": s, "index": k, "source": source, "class": label,
                         "distortion": "" if label == 0 else dist, "level": level})
    for stale in sorted(out_dir.glob("shard-*.pt"))[n_shards:]:
        stale.unlink()
    io.write_json(out_dir / "config.json", {**config, "config_hash": digest})
    return pd.DataFrame(rows)


def _existing(path: Path):
    """The shard at ``path``, or None: none there, or one that cannot be read (cut short, damaged), which is
    generated again (shards are deterministic) after a one-line warning naming it."""
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True)
    except UNREADABLE as err:
        print(f"warning: corpus shard {path} cannot be read ({_why(err)}); generating it again", file=sys.stderr)
        return None


def code_fingerprint() -> str:
    """The distortion engine and this module: a shard made by other code is not reused."""
    here = Path(__file__).resolve().parent
    return io.source_fingerprint(here.parent / "distortions", here / "corpus.py")


def fingerprint(corpus_dir: str | Path) -> str:
    """What a pretraining checkpoint records about its corpus (written by :func:`build`)."""
    path = Path(corpus_dir) / "config.json"
    return json.loads(path.read_text())["config_hash"] if path.is_file() else "unknown"


def load(corpus_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """All shards concatenated: uint8 images N x 3 x H x W and int64 class labels."""
    paths = sorted(Path(corpus_dir).glob("shard-*.pt"))
    if not paths:
        raise FileNotFoundError(f"no corpus shards in {corpus_dir}; run `dvc repro synthesize` first")
    blobs = [_read(p, corpus_dir) for p in paths]
    return torch.cat([b["images"] for b in blobs]), torch.cat([b["labels"] for b in blobs])


def _read(path: Path, corpus_dir: str | Path) -> dict:
    try:
        return torch.load(path, weights_only=True)
    except UNREADABLE as err:
        # The stage prints a ValueError naming "pretrain." as one line (stages/pretrain.py): pretrain.source is what
        # reads the corpus, named with the entry there.
        raise CorpusError(f"corpus shard {path} cannot be read ({_why(err)}): it is cut short or damaged, and "
                          f"pretrain.source 'corpus' reads it; restore it with `dvc checkout {corpus_dir}`, or "
                          "regenerate the corpus with `dvc repro -f synthesize`") from None
