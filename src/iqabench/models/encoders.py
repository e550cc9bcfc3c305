"""Quality encoders: a CNN trunk that maps images to a feature map.

``small_cnn`` is sized for the 2-core CPU default (about 25 MFLOP per 64 px
image); ``resnet18`` ... ``resnet152`` are torchvision's architectures with
avgpool and fc removed, so that CONTRIQUE's published ResNet-50 weights load as
they are. :func:`load` reads an iqabench encoder file, a torchvision ResNet
state dict, or the published ResNet-50 checkpoints of CONTRIQUE, ARNIQA and
Re-IQA (key layouts in :func:`resnet_trunk_state`; files in docs/reproduce.md).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import encoder_files
from .preprocessing import CONTRIQUE, Preprocessing

ARCHS = ("small_cnn", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def _conv_bn(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Sequential):
    """Eight 3x3 conv-BN-ReLU layers in four stages, each halving the resolution."""

    def __init__(self, width: int = 16):
        layers, cin = [], 3
        for stage in range(4):
            cout = width * 2 ** stage
            layers += _conv_bn(cin, cout, 2) + _conv_bn(cout, cout, 1)
            cin = cout
        super().__init__(*layers)
        self.out_dim = cin

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The map at the end of each of the four stages (after its second ReLU), finest first."""
        out = []
        for index, module in enumerate(self):
            x = module(x)
            if index % 6 == 5:  # two conv-BN-ReLU triples per stage
                out.append(x)
        return out


class ResNetTrunk(nn.Module):
    """torchvision ResNet up to layer4; parameter names match torchvision's state dict."""

    def __init__(self, arch: str):
        super().__init__()
        from torchvision import models as tvm  # its import costs seconds; small_cnn runs never need it
        net = getattr(tvm, arch)(weights=None)
        self.out_dim = net.fc.in_features
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stem's ReLU output (half size) and the output of layer1 ... layer4, finest first."""
        out = []
        for name, module in self.named_children():
            x = module(x)
            if name == "relu" or name.startswith("layer"):
                out.append(x)
        return out


class Encoder(nn.Module):
    def __init__(self, arch: str = "small_cnn", width: int = 16):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown encoder architecture {arch!r}; choose from {ARCHS}")
        self.arch, self.width = arch, width
        self.trunk = SmallCNN(width) if arch == "small_cnn" else ResNetTrunk(arch)
        self.out_dim = self.trunk.out_dim

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at every resolution stage of the trunk, finest first; the last is :meth:`feature_map`.

        All are post-ReLU (non-negative), which DeepWSD's feature "histograms" need.
        """
        return self.trunk.stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled feature, B x out_dim."""
        return self.trunk(x).mean(dim=(2, 3))

    def config(self) -> dict:
        return {"arch": self.arch, "width": self.width}


class ProjectionHead(nn.Module):
    """CONTRIQUE's head: linear, BN, ReLU, linear, BN. CONTRIQUE's linears both have no bias; the second one's
    here is cancelled by the BN after it in training (and the head is dropped for features)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                                 nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim), nn.BatchNorm1d(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def grid_patches(feature_map: torch.Tensor, grid: int = 2) -> torch.Tensor:
    """Pool a B x C x h x w map into a grid x grid of patch vectors: (B * grid^2) x C, L2-normalised."""
    pooled = F.adaptive_avg_pool2d(feature_map, grid)
    return F.normalize(pooled.flatten(2).transpose(1, 2).reshape(-1, feature_map.shape[1]), dim=1)


# The encoders this project trains: stage pretrain@NAME (one per key of params.yaml `pretrain:`) writes
# data/encoders/NAME.pt and its loss history beside it. A folder of their own, not data/models: `evaluate`
# writes data/models/regressors, and `extract` depends on this whole folder.
TRAINED = Path("data/encoders")
TRAINED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # a file name and a DVC stage key (no dots: params paths)


def trained_path(name: str) -> Path:
    """The file the ``pretrain@NAME`` stage writes: ``data/encoders/NAME.pt``."""
    if not isinstance(name, str) or not TRAINED_NAME.fullmatch(name):
        raise ValueError(f"encoder name {name!r}: use letters, digits, '_' and '-' (it names a file and a stage)")
    return TRAINED / f"{name}.pt"


def history_path(encoder: str | Path) -> Path:
    """The loss history written beside an encoder file: ``NAME.pt`` -> ``NAME_history.csv``."""
    encoder = Path(encoder)
    return encoder.with_name(f"{encoder.stem}_history.csv")


def save(encoder: Encoder, path, **extra) -> None:
    from .. import io
    io.write_torch(path, {"config": encoder.config(), "state_dict": encoder.state_dict(), **extra})


def published_origin(blob) -> str | None:
    """Whose released file ``blob`` is, where its authors read images otherwise than CONTRIQUE does:
    ARNIQA.pth (``model.<i>.*`` + ``projector.*``, ImageNet-normalised 5 crops) or a Re-IQA encoder (PyContrast's
    ``{'model': ..., 'contrast': ...}``, no L2, the content encoder ImageNet-normalised); None otherwise."""
    if not isinstance(blob, dict):
        return None
    keys = [key for key in blob if isinstance(key, str)]
    if any(k.startswith("model.") for k in keys) and any(k.startswith("projector.") for k in keys):
        return "ARNIQA"
    if isinstance(blob.get("model"), dict) and "contrast" in blob:
        return "Re-IQA"
    return None


# The row that reads each such file as its authors do (rows.py); a `file:` row would read it as CONTRIQUE does.
PUBLISHED_ROW = {"ARNIQA": "arniqa-published (weights/ARNIQA.pth)",
                 "Re-IQA": "reiqa-published (weights/quality_aware_r50.pth + content_aware_r50.pth)"}


def load(path, map_location="cpu", read_as: Preprocessing | None = None) -> Encoder:
    """An encoder from an iqabench encoder file, a torchvision ResNet state dict or a published checkpoint.

    ``read_as``: the preprocessing its images will get. CONTRIQUE's on an ARNIQA or Re-IQA file (a ``file:``
    row, fine-tuning) is refused: the features would be silently unlike the authors'.
    """
    blob = encoder_files.read(path, map_location, restore=_restore(path),
                              made_by=f"dvc repro pretrain@{Path(path).stem}" if _trained_here(path) else None)
    origin = published_origin(blob)
    if origin and read_as is not None and read_as.on_floats() == CONTRIQUE:
        raise ValueError(f"{path} is {origin}'s published checkpoint, whose authors read images otherwise than "
                         f"CONTRIQUE's preprocessing ({CONTRIQUE.describe()}), which a file: row and fine-tuning "
                         f"use. Use the row {PUBLISHED_ROW[origin]}, which reads it as its authors do, or declare "
                         "your own row with its preprocessing (README, 'Add your own model').")
    if isinstance(blob, dict) and "config" in blob and "state_dict" in blob:
        # Checked before building: an edited config (an unknown key, a list, width 2**40) was a TypeError or an
        # attempt to allocate terabytes; tensors of another shape were load_state_dict's page of "size mismatch".
        config = encoder_files.check_config(blob["config"], path, ARCHS, fix=_refit(path))
        encoder = Encoder(**config)
        what = f"its config ({encoder.arch}" + (f", width {encoder.width})" if encoder.arch == "small_cnn" else ")")
        encoder_files.load_weights(encoder, blob["state_dict"], path, what, fix=_refit(path))
        return encoder.eval()
    arch, trunk_state = resnet_trunk_state(blob, where=str(path))
    encoder = Encoder(arch)
    encoder_files.load_weights(encoder.trunk, trunk_state, path, f"torchvision's {arch}", strict=False,
                               fix=f"Its tensors are not a torchvision {arch}'s (edited, or another network with the "
                                   f"same blocks per stage): give that network's own state dict; {_restore(path)}")
    return encoder.eval()


def _trained_here(path) -> bool:
    """An encoder a pretrain@NAME stage writes: data/encoders/NAME.pt (not its NAME_history.csv beside it)."""
    return Path(path).resolve().parent == TRAINED.resolve() and Path(path).suffix == ".pt"


def _restore(path) -> str:
    """How to get a damaged encoder file back: a pretrain@NAME output from DVC, any other file from its source."""
    if _trained_here(path):
        return f"restore it with `dvc checkout {path}` (or `dvc repro -f pretrain@{Path(path).stem}`)"
    return "download or copy it again (a file `dvc repro` made: `dvc checkout PATH`)"


def _refit(path) -> str:
    """What to do when an iqabench encoder file's config and tensors disagree: it was edited or spliced."""
    return (f"The file was changed after iqabench saved it (config and tensors must come from one "
            f"encoders.save); {_restore(path)}")


# CONTRIQUE_model keeps ``nn.Sequential(*list(resnet.children())[:-2])`` as ``encoder`` and ARNIQA's
# ResNet ``nn.Sequential(*list(resnet.children())[:-1])`` as ``model``, so torchvision's modules appear
# under their position in ResNet.children() (pavancm/CONTRIQUE modules/CONTRIQUE_model.py:11; miccunifi/ARNIQA
# models/resnet.py:30, ARNIQA.pth being that module's state dict, hubconf.py:52-53). Re-IQA's trainer saves
# {'model': DDP state dict, 'model_ema': ..., 'contrast', 'optimizer', 'epoch'} (avinabsaha/ReIQA
# learning/contrast_trainer.py:113-120) and its demos load 'model' (demo_quality_aware_feats.py:43), whose
# ``module.encoder.*`` is a torchvision-named ResNet without fc (networks/build_backbone.py:16).
CHILD_INDEX = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")
MOCO_QUERY_PREFIXES = ("encoder_q.", "base_encoder.")  # facebookresearch/moco (v1, v2) and moco-v3
# Blocks per stage (and bottleneck or not) identify torchvision's ResNets.
RESNET_DEPTHS = {((2, 2, 2, 2), False): "resnet18", ((3, 4, 6, 3), False): "resnet34",
                 ((3, 4, 6, 3), True): "resnet50", ((3, 4, 23, 3), True): "resnet101",
                 ((3, 8, 36, 3), True): "resnet152"}


def unwrap_state_dict(blob, where: str, expected: str) -> dict[str, torch.Tensor]:
    """The tensors of a state dict saved bare or under ``state_dict`` / ``model``, keys without the
    wrapper prefixes of DDP / DataParallel (``module.``), torch.compile (``_orig_mod.``) and ``model.``.

    Anything else raises ``ValueError("{where}: {expected}")``.
    """
    if isinstance(blob, dict):
        for key in ("state_dict", "model"):
            if isinstance(blob.get(key), dict):
                blob = blob[key]
    if not isinstance(blob, dict) or not blob or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise ValueError(f"{where}: {expected}")
    state = {}
    for key, value in blob.items():
        while key.startswith(WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        state[key] = value
    return state


def resnet_trunk_state(blob, where: str = "checkpoint") -> tuple[str, dict[str, torch.Tensor]]:
    """(arch, torchvision-named trunk weights) from a raw ResNet state dict or a published checkpoint.

    Accepts the dict itself or one under ``state_dict`` / ``model``; strips
    ``module.`` (DDP / DataParallel), ``_orig_mod.`` (torch.compile) and
    ``model.`` prefixes. Layouts: torchvision's (``conv1.weight``, ...);
    CONTRIQUE's ``encoder.<i>.*`` and ARNIQA.pth's ``model.<i>.*`` (position in
    ``resnet.children()``; ARNIQA's own training, ``encoder.model.<i>.*``); Re-IQA's
    PyContrast MoCo checkpoints, ``{'model':
    {'module.encoder.conv1.weight', ...}}``; facebookresearch/moco's, ``{'state_dict':
    {'module.encoder_q.conv1.weight', ..., 'module.encoder_k...', 'module.queue'}}``
    (MoCo v3: ``base_encoder.`` / ``momentum_encoder.``), whose query encoder is read
    (the other is its moving average). Heads are dropped: ``fc.*``, CONTRIQUE's and
    ARNIQA's ``projector.*``, Re-IQA's ``head.*``.
    """
    blob = unwrap_state_dict(blob, where, "not an iqabench encoder file nor a state dict of tensors "
                             "(expected keys 'config' + 'state_dict', or 'conv1.weight', 'layer1.0...' "
                             "as torchvision's ResNet, or CONTRIQUE's 'encoder.0.weight', ARNIQA's 'model.0.weight', "
                             "Re-IQA's {'model': {'module.encoder.conv1.weight', ...}})")
    for query in MOCO_QUERY_PREFIXES:  # the key/momentum encoder, queue and predictor are not read
        if any(key.startswith(query) for key in blob):
            blob = {key[len(query):]: value for key, value in blob.items() if key.startswith(query)}
            break
    state = {}
    for key, value in blob.items():
        if key.startswith("encoder."):
            # CONTRIQUE (then an index), Re-IQA (then torchvision's names) or ARNIQA's SimCLR (then ResNet's
            # `model.` and an index, or `projector.`), as train.py saves it (models/simclr.py)
            key = key[len("encoder."):]
            while key.startswith(WRAPPER_PREFIXES):
                key = key.split(".", 1)[1]
        if key.startswith(("fc.", "projector.", "head.")):
            continue
        index, _, rest = key.partition(".")
        if index.isdigit():
            if index not in CHILD_INDEX:
                raise ValueError(f"{where}: unexpected key {key!r}; expected <0,1,4-7>.* after CONTRIQUE's "
                                 "'encoder.' or ARNIQA's 'model.' (positions of torchvision's ResNet children)")
            key = f"{CHILD_INDEX[index]}.{rest}"
        state[key] = value
    if "conv1.weight" not in state:
        raise ValueError(f"{where}: no 'conv1.weight' (nor CONTRIQUE's 'encoder.0.weight'); keys start with "
                         f"{sorted(blob)[:5]}. Give a torchvision ResNet or CONTRIQUE checkpoint.")
    depths = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    bottleneck = "layer1.0.conv3.weight" in state
    if (depths, bottleneck) not in RESNET_DEPTHS:
        raise ValueError(f"{where}: a ResNet with {depths} blocks per stage ({'bottleneck' if bottleneck else 'basic'}"
                         f" blocks) is not one of torchvision's {sorted(set(RESNET_DEPTHS.values()))}")
    return RESNET_DEPTHS[(depths, bottleneck)], state
