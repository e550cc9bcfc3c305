"""Published weights (CONTRIQUE_checkpoint25.tar, torchvision ResNets) evaluate through `file:PATH`."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm

from PIL import Image
from torchvision.transforms import functional as TF

from iqabench import rows
from iqabench.models import encoders, preprocessing


def _randomise_bn_statistics(model: nn.Module, seed: int) -> None:
    # Fresh BN layers have mean 0 / var 1, which would hide a mis-mapped running-stats key.
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def _pixels(*shape: int) -> torch.Tensor:
    # An 8-bit image, as every file the pipeline reads decodes to.
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(sum(shape))).float() / 255


def _pil_half(batch: torch.Tensor) -> torch.Tensor:
    """The authors' copy: PIL's ``img.resize((w // 2, h // 2))`` of the 8-bit image (CONTRIQUE demo_feat.py:21,
    ARNIQA utils/utils_data.py:177, Re-IQA demo_quality_aware_feats.py:52), then ToTensor."""
    out = []
    for x in batch:
        pil = Image.fromarray((x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
        half = np.array(pil.resize((pil.width // 2, pil.height // 2)))
        out.append(TF.to_tensor(half))
    return torch.stack(out)


class ContriqueLayout(nn.Module):
    """The key layout of CONTRIQUE's CONTRIQUE_model: ``encoder`` = ResNet children[:-2], then ``projector``."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.encoder = nn.Sequential(*list(resnet.children())[:-2])
        self.projector = nn.Sequential(nn.Linear(2048, 2048, bias=False), nn.BatchNorm1d(2048), nn.ReLU(),
                                       nn.Linear(2048, 128, bias=False), nn.BatchNorm1d(128))

    def features(self, x):
        """demo_feat.py's model_feat: avg-pooled encoder output, L2-normalised (normalize=True)."""
        return F.normalize(self.encoder(x).mean(dim=(2, 3)), dim=1)


def test_contrique_checkpoint_layout_loads_and_gives_the_source_features(tmp_path):
    torch.manual_seed(0)
    source = ContriqueLayout(tvm.resnet50(weights=None)).eval()
    _randomise_bn_statistics(source, 1)
    path = tmp_path / "CONTRIQUE_checkpoint25.tar"
    torch.save(source.state_dict(), path)  # what CONTRIQUE's model_io.save_model writes
    assert next(iter(source.state_dict())) == "encoder.0.weight"

    encoder = encoders.load(path)
    assert encoder.arch == "resnet50"
    # The release was saved by torch 1.7.1 (the repository's requirements.txt), whose default is the zip
    # format; a copy in the pre-1.6 format reads to the same weights.
    torch.save(source.state_dict(), tmp_path / "legacy.tar", _use_new_zipfile_serialization=False)
    for key, value in encoders.load(tmp_path / "legacy.tar").state_dict().items():
        assert torch.equal(value, encoder.state_dict()[key]), key
    # Odd sides: demo_feat.py:21 resizes to (w // 2, h // 2), which a scale factor of 0.5 does not reproduce.
    image = _pixels(2, 3, 67, 93)
    half = _pil_half(image)
    assert half.shape[-2:] == (33, 46)
    expected = torch.cat([source.features(image), source.features(half)], dim=1)
    with torch.no_grad():
        got = rows.feature_fn(f"file:{path}")(image)
        (tmp_path / "weights").mkdir()
        (tmp_path / "weights" / path.name).write_bytes(path.read_bytes())
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(tmp_path)
            published = rows.feature_fn("contrique-published")(image)
    assert got.shape == published.shape == (2, 4096)
    # The published row is the authors' copy; `file:` (this project's rows) resamples on floats, within ~7/255.
    torch.testing.assert_close(published, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[:, :2048], expected[:, :2048], rtol=1e-4, atol=1e-5)
    assert 0 < (got[:, 2048:] - expected[:, 2048:]).abs().max() < 0.05


def test_torchvision_state_dict_with_fc_and_ddp_prefix_loads(tmp_path):
    torch.manual_seed(2)
    source = tvm.resnet18(weights=None).eval()
    _randomise_bn_statistics(source, 3)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    encoder = encoders.load(path)
    assert encoder.arch == "resnet18"
    source.fc = nn.Identity()
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(encoder(image), source(image), rtol=1e-4, atol=1e-5)


def test_iqabench_encoder_files_still_round_trip(tmp_path):
    torch.manual_seed(4)
    enc = encoders.Encoder("small_cnn", 4).eval()
    encoders.save(enc, tmp_path / "enc.pt")
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(encoders.load(tmp_path / "enc.pt")(image), enc(image))


def test_files_that_are_no_resnet_say_what_is_expected(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt.*conv1\.weight"):
        encoders.load(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"text\.pt.*torchvision ResNet"):
        encoders.load(tmp_path / "text.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        rows.feature_fn(f"file:{tmp_path / 'missing.pt'}")
    truncated = {k: v for k, v in tvm.resnet18(weights=None).state_dict().items() if not k.startswith("layer4.1.")}
    torch.save(truncated, tmp_path / "cut.pt")
    with pytest.raises(ValueError, match=r"cut\.pt.*not one of torchvision"):
        encoders.load(tmp_path / "cut.pt")


IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


class ArniqaLayout(nn.Module):
    """ARNIQA's models/resnet.py ResNet: ``model`` = ResNet children[:-1] (avgpool kept), then ``projector``.

    ARNIQA.pth is this module's state dict (hubconf.py loads it into ``ARNIQA.encoder``).
    """

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.model = nn.Sequential(*list(resnet.children())[:-1])
        self.projector = nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 128))

    def features(self, x):
        """ARNIQA's forward with use_norm=True: the flattened pooled feature, L2-normalised."""
        return F.normalize(self.model(x).flatten(1), dim=1)


def test_checkpoints_of_arniqas_own_training_load(tmp_path):
    """ARNIQA's train.py saves SimCLR's state dict (``encoder`` = models/resnet.py's ResNet) as best_*.pth; its
    last_*.pth also holds ``config``, a DotMap of the run's arguments (train.py:174-186): a pickled object, refused."""
    import argparse

    torch.manual_seed(11)
    source = ArniqaLayout(tvm.resnet50(weights=None)).eval()
    _randomise_bn_statistics(source, 12)
    simclr = {f"encoder.{k}": v for k, v in source.state_dict().items()}
    torch.save(simclr, tmp_path / "best_epoch_9.pth")
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(encoders.load(tmp_path / "best_epoch_9.pth")(image), source.model(image).flatten(1),
                                   rtol=1e-4, atol=1e-5)
    torch.save({"model_state_dict": simclr, "epoch": 9, "config": argparse.Namespace(lr=1e-3)},
               tmp_path / "last_epoch_9.pth")
    with pytest.raises(ValueError, match=r"last_epoch_9\.pth.*save its state dict alone"):
        encoders.load(tmp_path / "last_epoch_9.pth")


class ReiqaLayout(nn.Module):
    """Re-IQA's RGBSingleHead: ``encoder`` = a ResNet with torchvision's names and no fc, ``head`` = the MLP."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        resnet.fc = nn.Identity()
        self.encoder = resnet
        self.head = nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(inplace=True), nn.Linear(2048, 128))


def _reiqa_checkpoint(source: nn.Module, path, ema: nn.Module) -> None:
    """What Re-IQA's ContrastTrainer.save writes (learning/contrast_trainer.py:113-120): ``model`` is the
    DDP-wrapped query network (``module.`` prefix, which its demos load through DataParallel), ``model_ema``
    the momentum copy, never wrapped (wrap_up, :40-67), so unprefixed and not read; ``contrast`` the MoCo queue
    (RGBMoCo's one buffer ``memory``, memory/mem_moco.py:57); ``optimizer`` LARS's state (moco/optimizer.py)."""
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()},
                "contrast": {"memory": torch.randn(16, 128)},
                "optimizer": {"state": {0: {"mu": torch.zeros(64, 3, 7, 7)}},
                              "param_groups": [{"lr": 12.0, "weight_decay": 1e-6, "momentum": 0.9,
                                                "trust_coefficient": 0.001, "params": [0, 1]}]},
                "epoch": 25, "model_ema": ema.state_dict()}, path)


def test_arniqa_pth_layout_gives_arniqa_features_with_its_preprocessing(tmp_path, monkeypatch):
    torch.manual_seed(5)
    source = ArniqaLayout(tvm.resnet50(weights=None)).eval()
    _randomise_bn_statistics(source, 6)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    torch.save(source.state_dict(), tmp_path / "weights" / "ARNIQA.pth")
    assert next(iter(source.state_dict())) == "model.0.weight"
    image = _pixels(1, 3, 241, 287)
    # test.py's dataset classes: PIL's default (bicubic) resize to (w // 2, h // 2) (utils/utils_data.py:177);
    # center_corners_crop(224) of both (the half-size one, 120 x 143, padded black by PIL's crop); ToTensor and
    # Normalize each crop (data/dataset_base_iqa.py:61-72); the 5 averaged.
    half = _pil_half(image)

    def five_crops(x):
        h, w = x.shape[-2:]
        return [TF.crop(x, h // 2 - 112, w // 2 - 112, 224, 224), TF.crop(x, 0, 0, 224, 224),
                TF.crop(x, h - 224, 0, 224, 224), TF.crop(x, 0, w - 224, 224, 224),
                TF.crop(x, h - 224, w - 224, 224, 224)]

    with torch.no_grad():
        expected = torch.cat([torch.stack([source.features(TF.normalize(c, *IMAGENET)) for c in five_crops(x)]).mean(0)
                              for x in (image, half)], dim=1)
        got = rows.feature_fn("arniqa-published")(image)
    assert got.shape == (1, 4096)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # The same file as `file:` (read as CONTRIQUE: no mean/std, no crops) or fine-tuned would give features unlike
    # the authors' without a word: refused, naming the row that reads it right.
    with pytest.raises(ValueError, match=r"ARNIQA\.pth is ARNIQA's published checkpoint.*row arniqa-published"):
        rows.feature_fn("file:weights/ARNIQA.pth")
    with pytest.raises(ValueError, match="row arniqa-published"):
        encoders.load("weights/ARNIQA.pth", read_as=preprocessing.CONTRIQUE)


def test_reiqa_checkpoints_give_the_concatenated_quality_and_content_features(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    sources = []
    for seed, name in ((7, "quality_aware_r50.pth"), (8, "content_aware_r50.pth")):
        torch.manual_seed(seed)
        source = ReiqaLayout(tvm.resnet50(weights=None)).eval()
        _randomise_bn_statistics(source, seed)
        _reiqa_checkpoint(source, tmp_path / "weights" / name, ema=ReiqaLayout(tvm.resnet50(weights=None)))
        sources.append(source.encoder)
    quality, content = sources
    image = _pixels(1, 3, 67, 93)
    # The demos (demo_quality_aware_feats.py:52-62, demo_content_aware_feats.py:53-68): PIL's default resize
    # (bicubic) to (w // 2, h // 2); the content encoder alone reads ImageNet-normalised input; full then half.
    half = _pil_half(image)
    with torch.no_grad():
        expected = torch.cat([quality(image), quality(half), content(TF.normalize(image, *IMAGENET)),
                              content(TF.normalize(half, *IMAGENET))], dim=1)
        got = rows.feature_fn("reiqa-published")(image)
    assert got.shape == (1, 8192)
    # Unnormalised features: float noise of channels_last convolutions scales with their size.
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    assert not torch.allclose(got[:, 4096:], torch.cat([content(image), content(half)], dim=1), rtol=1e-2)
    with pytest.raises(ValueError, match=r"content_aware_r50\.pth is Re-IQA's published checkpoint.*reiqa-published"):
        rows.feature_fn("file:weights/content_aware_r50.pth")


@pytest.mark.parametrize("query_prefix,key_prefix,extra", [
    ("encoder_q.", "encoder_k.", {"queue": torch.randn(128, 32), "queue_ptr": torch.zeros(1, dtype=torch.long)}),
    ("base_encoder.", "momentum_encoder.", {"predictor.0.weight": torch.randn(64, 128)}),  # moco-v3
])
def test_a_facebookresearch_moco_checkpoint_gives_its_query_encoder(tmp_path, query_prefix, key_prefix, extra):
    """main_moco.py's save_checkpoint: {'epoch', 'arch', 'state_dict', 'optimizer'}, the state dict of the
    DDP-wrapped MoCo module: encoder_q (its fc the MLP head of MoCo v2), encoder_k, queue, queue_ptr."""
    torch.manual_seed(9)
    query, key = tvm.resnet18(weights=None).eval(), tvm.resnet18(weights=None).eval()
    _randomise_bn_statistics(query, 10)
    for encoder in (query, key):
        encoder.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128))
    state = {f"module.{query_prefix}{k}": v for k, v in query.state_dict().items()}
    state |= {f"module.{key_prefix}{k}": v for k, v in key.state_dict().items()}
    state |= {f"module.{k}": v for k, v in extra.items()}
    torch.save({"epoch": 200, "arch": "resnet18", "state_dict": state, "optimizer": {"state": {},
                "param_groups": [{"lr": 0.03, "params": [0]}]}}, tmp_path / "moco_v2.pth.tar")
    encoder = encoders.load(tmp_path / "moco_v2.pth.tar")
    query.fc = nn.Identity()
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(encoder(image), query(image), rtol=1e-4, atol=1e-5)


def test_a_full_pickle_is_refused_naming_the_safe_alternative(tmp_path):
    import argparse

    state = tvm.resnet18(weights=None).state_dict()
    torch.save({"model": state, "opt": argparse.Namespace(lr=0.1)}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match=r"pickled\.pth.*Full pickles are not loaded.*save its state dict alone"):
        encoders.load(tmp_path / "pickled.pth")


def test_published_rows_declare_their_files_and_preprocessing():
    arniqa, reiqa = rows.get("arniqa-published"), rows.get("reiqa-published")
    assert arniqa.artifacts == (rows.PUBLISHED / "ARNIQA.pth",) and arniqa.stage is None
    assert arniqa.preprocessing.normalise == preprocessing.IMAGENET_MEAN_STD and arniqa.preprocessing.l2
    assert [p.name for p in reiqa.artifacts] == ["quality_aware_r50.pth", "content_aware_r50.pth"]
    contrique = rows.get("contrique-published").preprocessing
    assert contrique.resample_8bit and contrique.on_floats() == preprocessing.CONTRIQUE
    assert arniqa.preprocessing.resample_8bit and reiqa.preprocessing.resample_8bit
    # Fine-tuning makes the half-size copy on floats; the published CONTRIQUE encoder can still be fine-tuned.
    assert rows.encoder_path("contrique-published") == rows.PUBLISHED / "CONTRIQUE_checkpoint25.tar"
    with pytest.raises(ValueError, match="arniqa-published.*reads its images as"):
        rows.encoder_path("arniqa-published")


def test_half_size_copy_is_pils_resize_also_on_odd_sides():
    """The three feature scripts' img.resize((w // 2, h // 2)) (PIL's bicubic default), within 8-bit rounding."""
    import numpy as np
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    for h, w in ((225, 301), (97, 130), (128, 128)):
        # Smoothed noise: a photograph's spectrum, where a half-pixel shift shows as a large error.
        pixels = gaussian_filter(rng.random((h, w, 3)) * 255, (2, 2, 0)).round().astype(np.uint8)
        pil = np.asarray(Image.fromarray(pixels).resize((w // 2, h // 2)), dtype=np.float64) / 255
        ours = preprocessing.half_size(torch.from_numpy(pixels).permute(2, 0, 1)[None].double() / 255)
        ours = ours[0].permute(1, 2, 0).numpy()
        assert ours.shape == pil.shape
        assert np.abs(ours - pil).max() <= 1.5 / 255, (h, w)  # a scale factor of 0.5: 15/255 on 225 x 301


def test_half_size_equals_the_scale_factor_copy_on_even_sides():
    # Why the embedded default's features (128 px patches) and dvc.lock did not move with the odd-side fix.
    image = torch.rand(2, 3, 128, 96)
    torch.testing.assert_close(preprocessing.half_size(image), F.interpolate(
        image, scale_factor=0.5, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1), rtol=0, atol=0)


def test_the_published_rows_half_size_copy_is_pils_own_bit_for_bit():
    image = _pixels(2, 3, 97, 131)
    torch.testing.assert_close(preprocessing.half_size(image, resample_8bit=True), _pil_half(image), rtol=0, atol=0)
    on_floats = preprocessing.half_size(image)  # PIL rounds between its two passes; floats do not
    assert 0 < (on_floats - _pil_half(image)).abs().max() < 10 / 255


@pytest.mark.parametrize("width,height,expected", [(4000, 3000, (512, 682)), (3000, 4000, (682, 512)),
                                                   (1000, 999, (512, 512)), (700, 700, (512, 512))])
def test_the_short_side_cap_is_arniqas_spaq_resize(width, height, expected):
    """data/dataset_spaq.py:52-61: the short side to 512, the long one truncated by int(), PIL's bicubic."""
    from iqabench import images

    image = _pixels(3, height, width)
    capped = images.resize_short_side(image, 512)
    assert capped.shape[1:] == expected
    pil = Image.fromarray((image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    reference = TF.to_tensor(np.array(pil.resize(expected[::-1], Image.BICUBIC)))
    torch.testing.assert_close(capped, reference, rtol=0, atol=0)


def test_a_declared_preprocessing_out_of_range_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"half_scale must be None .* \['bicubic', 'bilinear'\], not 'area'"):
        preprocessing.Preprocessing(half_scale="area")
    with pytest.raises(ValueError, match="crops must be 1 .* or 5"):
        preprocessing.Preprocessing(crops=3)
    nan = float("nan")
    for wrong in (((0.5, 0.5), (0.2, 0.2)), ((0.5,) * 3, (0.2, 0.0, 0.2)), "imagenet", ((0.5,) * 3, (nan,) * 3)):
        with pytest.raises(ValueError, match=r"normalise must be \(\(3 means\), \(3 stds > 0\)\)"):
            preprocessing.Preprocessing(normalise=wrong)
    assert preprocessing.Preprocessing(normalise=[[0.5] * 3, [0.25] * 3]).normalise  # lists, as from YAML
