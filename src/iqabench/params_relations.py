"""Constraints between keys of ``params.yaml``, checked by :func:`iqabench.params.validate` once each key
is in range on its own: sums of fractions, rows a stage reads, sizes one stage makes and another cuts.

They only refuse; none fills in a value, so what a stage writes cannot depend on this file (no stage lists
it in dvc.yaml).
"""
from __future__ import annotations

from pathlib import Path

from .params_schema import ParamsError


def check(where: str, params: dict) -> None:
    """Constraints between keys: checked after each key is in range on its own."""
    evaluate = params.get("evaluate")
    if evaluate:
        total = evaluate["test_frac"] + evaluate["val_frac"]
        if total >= 1:
            raise ParamsError(f"{where}: evaluate.test_frac + evaluate.val_frac = {total:g} leaves nothing to "
                              "train on; their sum must be below 1")
        if len(evaluate["alphas"]) > 1 and evaluate["val_frac"] == 0:
            raise ParamsError(f"{where}: evaluate.alphas lists {len(evaluate['alphas'])} values but "
                              "evaluate.val_frac is 0, so there is no validation part to choose among them; "
                              "set val_frac > 0 or give one alpha")
        split_files = evaluate.get("arniqa_splits")
        if split_files:
            from .evaluation.arniqa_splits import missing_files

            if not Path(split_files).is_dir():
                raise ParamsError(f"{where}: evaluate.arniqa_splits = {split_files!r} is not a folder; name one laid "
                                  "out as ARNIQA's data_base_path (LIVE/splits/, ...; docs/reproduce.md) or ''")
            lacking = missing_files(split_files, params.get("datasets") or [])
            if lacking:
                raise ParamsError(f"{where}: evaluate.arniqa_splits: {lacking[0]} does not exist ({len(lacking)} "
                                  "file(s) missing); ARNIQA's layout holds NAME/splits/{train,val,test}.npy per set, "
                                  "and LIVE/LIVE.txt, CSIQ/CSIQ.txt (docs/reproduce.md)")
        datasets = params.get("datasets") or []
        chosen = evaluate.get("regressor_dataset")
        if chosen is not None and datasets and chosen not in datasets:
            raise ParamsError(f"{where}: evaluate.regressor_dataset = {chosen!r} is not in datasets: {datasets}; "
                              "name one of them (or remove the key: the first listed is the default)")
    from .regressor import path_for

    # macOS and Windows file systems ignore case: one data/prepared/NAME for both names of a pair.
    pair = _sharing(params.get("datasets") or [], str.casefold)
    if pair:
        raise ParamsError(f"{where}: datasets: {pair[0]!r} and {pair[1]!r} differ only in case, so their files "
                          f"(data/prepared/{pair[1]}, ...) are one on macOS and Windows; list only one")
    # evaluate would write one regressor over the other, and `score` read the wrong one (file:A.pt and file:a.pt
    # too, on macOS)
    pair = _sharing(params.get("models") or [], lambda name: path_for(name).name.casefold())
    if pair:
        raise ParamsError(f"{where}: models: {pair[0]!r} and {pair[1]!r} map to one regressor file "
                          f"({path_for(pair[1])}, where case is ignored); rename one of their files, or list "
                          "only one")
    mixed = params.get("mixed")
    if mixed and "model" in mixed and params.get("models") and mixed["model"] not in params["models"]:
        raise ParamsError(f"{where}: mixed.model = {mixed['model']!r} is not in models: {params['models']}; "
                          "the mixed stage reads that row's extracted features")
    finetune = params.get("finetune")
    if finetune and "model" in finetune:
        # A row that exists and is one encoder file read as CONTRIQUE reads images: checked here, not when the
        # stage runs (DVC has removed reports/finetune.* by then).
        from . import rows

        try:
            rows.encoder_path(finetune["model"])
        except ValueError as err:  # an unknown row, or one that is not one encoder file
            raise ParamsError(f"{where}: finetune.model: {err}") from None
    if finetune and finetune.get("seed") is not None:  # stages/finetune.py replaced it with evaluate's, silently
        raise ParamsError(f"{where}: finetune.seed = {finetune['seed']!r} is not read: fine-tuning runs on the "
                          "protocol's splits, drawn with evaluate.seed (null: the top-level seed); set that one, or "
                          "remove finetune.seed")
    if evaluate and finetune is not None:
        from .training.finetune import FinetuneConfig

        n_finetune = finetune.get("n_splits", FinetuneConfig.n_splits)
        if n_finetune > evaluate["n_splits"]:
            raise ParamsError(f"{where}: finetune.n_splits = {n_finetune} is above evaluate.n_splits = "
                              f"{evaluate['n_splits']}: reports/finetune.md compares the fine-tuned median with "
                              f"evaluate's frozen ridge over the same splits, and evaluate draws only splits "
                              f"0..{evaluate['n_splits'] - 1}; lower finetune.n_splits or raise evaluate.n_splits")
    n_corpus, corpus_crop = ((params.get("synthesize") or {}).get(k) for k in ("n_images", "crop"))
    for entry, settings in (params.get("pretrain") or {}).items():
        # The corpus is synthesize.n_images crops of synthesize.crop px; a global batch above the one, or views
        # above the other, failed only in pretrain@NAME, after prepare and synthesize ran. (A profile may change
        # the source: its run checks its pool itself.)
        from .training.pretrain import PretrainConfig

        cfg = PretrainConfig(**{k: v for k, v in settings.items() if k in PretrainConfig.__dataclass_fields__})
        nproc = settings.get("nproc", 1)
        if settings.get("profile") or cfg.source != "corpus" or cfg.objective != "contrique":
            continue
        if n_corpus and cfg.batch_size * nproc > n_corpus:
            raise ParamsError(f"{where}: pretrain.{entry}.batch_size = {cfg.batch_size}"
                              f"{f' x nproc {nproc}' if nproc > 1 else ''} is more than the corpus it reads "
                              f"(synthesize.n_images = {n_corpus}); lower the batch or raise synthesize.n_images")
        if corpus_crop and cfg.crop > corpus_crop:
            raise ParamsError(f"{where}: pretrain.{entry}.crop = {cfg.crop} is larger than synthesize.crop = "
                              f"{corpus_crop}, the corpus images its views are cut from; lower it (or raise "
                              "synthesize.crop)")
    prepare = params.get("prepare")
    niqe_side = (params.get("niqe") or {}).get("patch_size", 96)
    if prepare and "niqe" in (params.get("models") or []) and prepare["patch_size"] < niqe_side:
        raise ParamsError(f"{where}: prepare.patch_size = {prepare['patch_size']} is below niqe.patch_size = "
                          f"{niqe_side}, the smallest image the niqe row can score; raise it or drop niqe from models:")
    cap = (params.get("extract") or {}).get("max_short_side")
    if cap and "niqe" in (params.get("models") or []) and cap < niqe_side:
        raise ParamsError(f"{where}: extract.max_short_side = {cap} is below niqe.patch_size = {niqe_side}, the "
                          "smallest image the niqe row can score; raise it (0: no downscaling) or drop niqe from models:")
    if prepare and "deepwsd" in prepare.get("label_metrics", []) and not prepare.get("deepwsd_weights"):
        raise ParamsError(f"{where}: prepare.label_metrics names deepwsd but prepare.deepwsd_weights is empty; "
                          "give a local torchvision vgg16 state dict, or drop deepwsd from label_metrics")


def _sharing(names: list[str], key) -> tuple[str, str] | None:
    """The first two of ``names`` that ``key`` maps to one file name, or None."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(key(name), name)
        if other != name:
            return other, name
    return None
