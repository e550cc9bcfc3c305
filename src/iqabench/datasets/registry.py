"""The real IQA datasets iqabench knows, one ``DatasetSpec`` each.

What each entry was checked against (and what was not) is in docs/datasets.md.

Scales are the published ones; ``build_manifest`` maps them to [0, 1], higher is
better. ``Remote.sha256`` is None where the authors publish no checksum: the
hash seen on first download is then pinned in the lock file and enforced after.
Where no direct URL exists (request forms, cloud drives) ``remotes`` is empty
and ``access`` says how to obtain the files; the user then runs
``iqabench datasets add NAME --from PATH``.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

from ..manifest import scale_label
from . import parsers_authentic as auth
from . import parsers_synthetic as synth
from .scorefiles import DatasetError


@dataclass(frozen=True)
class Remote:
    url: str
    filename: str
    size: int | None = None      # bytes, where published
    sha256: str | None = None    # where published; else pinned in the lock file
    extract: bool = True         # archives are unpacked; plain files are placed as they are


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    kind: str                      # synthetic, authentic, ai-generated, screen-content or pristine-unlabelled
    homepage: str
    citation: str
    licence: str
    remotes: tuple[Remote, ...]
    access: str                    # how to get it when remotes is empty or as a note
    images_dir: str                # folder holding the rated images (where the parser looks: see each parser)
    score_file: str                # published score file (or label folder)
    parser: Callable | None        # None: unlabelled
    score_type: str                # "MOS", "DMOS", "Elo" or "" for unlabelled
    lo: float
    hi: float
    higher_is_better: bool
    n_images: int                  # rated images after the documented drops
    score_source: str
    official_split: str = ""       # what the published split is, "" when none
    content_ids: str = "image"     # what the parser's content_id is: "image", "reference" or "prompt"
    image_suffixes: tuple[str, ...] = field(default=(".jpg", ".jpeg", ".png", ".bmp"))

    @property
    def content(self) -> str:
        """What a split keeps on one side (the manifest's content_id)."""
        return {"image": "each image is its own content",
                "reference": "one per reference image: a reference's distorted versions stay on one side of a split",
                "prompt": "one per text prompt: a prompt's generated images stay on one side of a split"
                }[self.content_ids]

    @property
    def scale(self) -> str:
        """The manifest's ``raw_scale`` of this dataset, or "unlabelled"."""
        if not self.score_type:
            return "unlabelled"
        return scale_label(self.score_type, self.lo, self.hi, self.higher_is_better)


MMSP = "https://datasets.vqa.mmsp-kn.de/archives"
KONIQ_META = "https://raw.githubusercontent.com/subpic/koniq/master/metadata/koniq10k_distributions_sets.csv"
KONIQ_CITE = ("V. Hosu, H. Lin, T. Sziranyi, D. Saupe. KonIQ-10k: An ecologically valid database for deep "
              "learning of blind image quality assessment. IEEE TIP 29, 2020.")
KONIQ_COMMON = dict(
    kind="authentic", homepage="https://database.mmsp-kn.de/koniq-10k-database.html", citation=KONIQ_CITE,
    licence="research use; images from YFCC100M under Creative Commons licences", access="direct download",
    score_file="koniq10k_distributions_sets.csv", parser=auth.parse_koniq, score_type="MOS", lo=0, hi=100,
    higher_is_better=True, n_images=10073, score_source="human MOS (KonIQ-10k crowd ratings)",
    official_split="train/val/test 7058/1000/2015 from koniq10k_distributions_sets.csv")

_SPECS = [
    DatasetSpec(name="koniq10k", title="KonIQ-10k (512x384)", images_dir="512x384",
                remotes=(Remote(f"{MMSP}/koniq10k_512x384.zip", "koniq10k_512x384.zip"),
                         Remote(KONIQ_META, "koniq10k_distributions_sets.csv", extract=False)),
                **KONIQ_COMMON),
    DatasetSpec(name="koniq10k-1024", title="KonIQ-10k (1024x768)", images_dir="1024x768",
                remotes=(Remote(f"{MMSP}/koniq10k_1024x768.zip", "koniq10k_1024x768.zip"),
                         Remote(KONIQ_META, "koniq10k_distributions_sets.csv", extract=False)),
                **KONIQ_COMMON),
    DatasetSpec(
        name="spaq", title="SPAQ", kind="authentic", homepage="https://github.com/h4nwei/SPAQ",
        citation="Y. Fang, H. Zhu, Y. Zeng, K. Ma, Z. Wang. Perceptual quality assessment of smartphone "
                 "photography. CVPR 2020.",
        licence="research use only", remotes=(),
        access="cloud-drive links on https://github.com/h4nwei/SPAQ (no direct URL)",
        images_dir="TestImage", score_file="Annotations/MOS and Image attribute scores.xlsx",
        parser=auth.parse_spaq, score_type="MOS", lo=0, hi=100, higher_is_better=True, n_images=11125,
        score_source="human MOS (SPAQ laboratory ratings)"),
    DatasetSpec(
        name="clive", title="LIVE In the Wild Image Quality Challenge", kind="authentic",
        homepage="https://live.ece.utexas.edu/research/ChallengeDB/index.html",
        citation="D. Ghadiyaram, A. C. Bovik. Massive online crowdsourced study of subjective and objective "
                 "picture quality. IEEE TIP 25(1), 2016.",
        licence="research use; copyright notice of the University of Texas at Austin must be kept",
        remotes=(), access="request form at https://live.ece.utexas.edu/research/ChallengeDB/index.html",
        images_dir="Images", score_file="Data/AllMOS_release.mat", parser=auth.parse_clive, score_type="MOS",
        lo=0, hi=100, higher_is_better=True, n_images=1162,
        score_source="human MOS (LIVE In the Wild crowd ratings)"),
    DatasetSpec(
        name="flive", title="FLIVE (PaQ-2-PiQ) images", kind="authentic",
        homepage="https://github.com/niu-haoran/FLIVE_Database",
        citation="Z. Ying, H. Niu, P. Gupta, D. Mahajan, D. Ghadiyaram, A. Bovik. From patches to pictures "
                 "(PaQ-2-PiQ): mapping the perceptual space of picture quality. CVPR 2020.",
        licence="research use; images from public collections (AVA, VOC, EMOTIC, CERTH, ...)", remotes=(),
        access="labels from https://github.com/niu-haoran/FLIVE_Database, images by its download script; the "
               "official split files (labels640.csv, labels=640_padded.csv) from https://github.com/baidut/PaQ-2-PiQ "
               "database/",
        images_dir="", score_file="database/labels_image.csv", parser=auth.parse_flive, score_type="MOS",
        lo=0, hi=100, higher_is_better=True, n_images=39810,
        score_source="human MOS (FLIVE crowd ratings)",
        official_split="train/val/test from labels=640_padded.csv (is_valid) and labels640.csv"),
    DatasetSpec(
        name="agiqa3k", title="AGIQA-3K", kind="ai-generated",
        homepage="https://github.com/lcysyzxdxc/AGIQA-3k-Database",
        citation="C. Li et al. AGIQA-3K: An open database for AI-generated image quality assessment. "
                 "IEEE TCSVT 2023.",
        licence="MIT (the LICENSE file of lcysyzxdxc/AGIQA-3k-Database)", remotes=(),
        access="cloud-drive links on https://github.com/lcysyzxdxc/AGIQA-3k-Database",
        images_dir="AGIQA-3K", score_file="data.csv", parser=auth.parse_agiqa3k, score_type="MOS",
        lo=0, hi=5, higher_is_better=True, n_images=2982, content_ids="prompt",
        score_source="human MOS (AGIQA-3K perceptual quality)"),
    DatasetSpec(
        name="bid", title="BID (Blurred Image Database)", kind="authentic",
        homepage="https://www.lps.ufrj.br/profs/eduardo/ImageDatabase.htm",
        citation="A. Ciancio et al. No-reference blur assessment of digital pictures based on multifeature "
                 "classifiers. IEEE TIP 20(1), 2011.",
        licence="research use", remotes=(), access=f"download page https://www.lps.ufrj.br/profs/eduardo/ImageDatabase.htm",
        images_dir="ImageDatabase", score_file="DatabaseGrades.xlsx", parser=auth.parse_bid, score_type="MOS",
        lo=0, hi=5, higher_is_better=True, n_images=586, score_source="human MOS (BID laboratory ratings)"),
    DatasetSpec(
        name="live", title="LIVE IQA release 2", kind="synthetic",
        homepage="https://live.ece.utexas.edu/research/quality/subjective.htm",
        citation="H. R. Sheikh, M. F. Sabir, A. C. Bovik. A statistical evaluation of recent full reference "
                 "image quality assessment algorithms. IEEE TIP 15(11), 2006.",
        licence="research use; copyright notice of the University of Texas at Austin must be kept",
        remotes=(), access="request form at https://live.ece.utexas.edu/research/quality/subjective.htm for "
                           f"databaserelease2.zip, plus {synth.LIVE_REALIGNED_URL}",
        # The realigned DMOS of the 779 distorted images spans -2.64..111.77 (not 0..100): the declared scale
        # covers it, so a real copy builds without an out-of-range warning and scores stay in [0, 1].
        images_dir="", score_file="dmos_realigned.mat", parser=synth.parse_live, score_type="DMOS",
        lo=-3, hi=112, higher_is_better=False, n_images=779, content_ids="reference",
        score_source="human DMOS (LIVE IQA, realigned)"),
    DatasetSpec(
        name="csiq", title="CSIQ", kind="synthetic", homepage="https://s2.smu.edu/~eclarson/csiq.html",
        citation="E. C. Larson, D. M. Chandler. Most apparent distortion: full-reference image quality "
                 "assessment and the role of strategy. J. Electronic Imaging 19(1), 2010.",
        licence="research use",
        remotes=(Remote(synth.CSIQ_SHEET_URL, "csiq.DMOS.xlsx", extract=False),
                 Remote("https://s2.smu.edu/~eclarson/csiq/dst_imgs.zip", "dst_imgs.zip"),
                 Remote("https://s2.smu.edu/~eclarson/csiq/src_imgs.zip", "src_imgs.zip")),
        access="direct download", images_dir="dst_imgs", score_file="csiq.DMOS.xlsx", parser=synth.parse_csiq,
        score_type="DMOS", lo=0, hi=1, higher_is_better=False, n_images=866, content_ids="reference",
        score_source="human DMOS (CSIQ laboratory ratings)"),
    DatasetSpec(
        name="tid2013", title="TID2013", kind="synthetic", homepage="https://www.ponomarenko.info/tid2013.htm",
        citation="N. Ponomarenko et al. Image database TID2013: peculiarities, results and perspectives. "
                 "Signal Processing: Image Communication 30, 2015.",
        licence="research use", remotes=(Remote("https://www.ponomarenko.info/tid2013/tid2013.rar", "tid2013.rar"),),
        access="direct download (RAR: needs libarchive-c, or unrar, 7z, 7zz or bsdtar)", images_dir="distorted_images",
        score_file="mos_with_names.txt", parser=synth.parse_tid2013, score_type="MOS", lo=0, hi=9,
        higher_is_better=True, n_images=3000, content_ids="reference",
        score_source="human MOS (TID2013 pairwise comparisons)"),
    DatasetSpec(
        name="kadid10k", title="KADID-10k", kind="synthetic",
        homepage="https://database.mmsp-kn.de/kadid-10k-database.html",
        citation="H. Lin, V. Hosu, D. Saupe. KADID-10k: A large-scale artificially distorted IQA database. "
                 "QoMEX 2019.",
        licence="research use; images under Pixabay licence",
        remotes=(Remote(f"{MMSP}/kadid10k.zip", "kadid10k.zip"),), access="direct download",
        images_dir="images", score_file="dmos.csv", parser=synth.parse_kadid, score_type="MOS", lo=1, hi=5,
        higher_is_better=True, n_images=10125, content_ids="reference",
        score_source="human MOS (KADID-10k crowd ratings; published in a column named dmos)"),
    DatasetSpec(
        name="pipal", title="PIPAL (public training part)", kind="synthetic",
        homepage="https://www.jasongt.com/projectpages/pipal.html",
        citation="J. Gu et al. PIPAL: a large-scale image quality assessment dataset for perceptual image "
                 "restoration. ECCV 2020.",
        licence="research use", remotes=(), access="registration on the PIPAL / NTIRE challenge pages",
        # Elo has no published bounds and public loaders use it raw; [800, 1900] brackets the
        # 23,200 labels of pyiqa's meta_info_PIPALDataset.csv (916.71 to 1835.99; docs/datasets.md).
        # Out-of-range values are warned about, never clipped.
        images_dir="", score_file="Train_Label", parser=synth.parse_pipal, score_type="Elo",
        lo=800, hi=1900, higher_is_better=True, n_images=23200, content_ids="reference",
        score_source="human Elo (PIPAL pairwise preferences)"),
    DatasetSpec(
        name="siqad", title="SIQAD", kind="screen-content",
        homepage="https://sites.google.com/site/subjectiveqa/",
        citation="H. Yang, Y. Fang, W. Lin. Perceptual quality assessment of screen content images. "
                 "IEEE TIP 24(11), 2015.",
        licence="research use", remotes=(), access="download links on https://sites.google.com/site/subjectiveqa/",
        images_dir="DistortedImages", score_file="DMOS_SIQAD.mat", parser=synth.parse_siqad,
        score_type="DMOS", lo=0, hi=100, higher_is_better=False, n_images=980, content_ids="reference",
        score_source="human DMOS (SIQAD laboratory ratings)"),
    DatasetSpec(
        name="scid", title="SCID", kind="screen-content", homepage="https://eezkni.github.io/publications/ESIM.html",
        citation="Z. Ni, L. Ma, H. Zeng, J. Chen, C. Cai, K.-K. Ma. ESIM: Edge similarity for screen content "
                 "image quality assessment. IEEE TIP 26(10), 2017.",
        licence="research use", remotes=(), access="OneDrive link on https://eezkni.github.io/publications/ESIM.html",
        images_dir="DistortedSCIs", score_file="MOS_SCID.txt", parser=synth.parse_scid, score_type="MOS",
        lo=0, hi=100, higher_is_better=True, n_images=1800, content_ids="reference",
        score_source="human MOS (SCID laboratory ratings)"),
    DatasetSpec(
        name="kadis700k", title="KADIS-700k pristine images", kind="pristine-unlabelled",
        homepage="https://database.mmsp-kn.de/kadid-10k-database.html",
        citation="H. Lin, V. Hosu, D. Saupe. DeepFL-IQA: weak supervision for deep IQA feature learning. "
                 "arXiv 2001.08113, 2020.",
        licence="research use; images under Pixabay licence",
        remotes=(Remote(f"{MMSP}/kadis700k.zip", "kadis700k.zip"),), access="direct download",
        images_dir="ref_imgs", score_file="", parser=None, score_type="", lo=0, hi=1,
        higher_is_better=True, n_images=140000, score_source="", image_suffixes=(".png",)),
]

SPECS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}

# Real human-rated subsets in ../shared/datasets/<name> (when that folder exists) -> the
# spec whose parser reads them: they keep their dataset's published layout.
SHARED_SUBSETS: dict[str, str] = {"koniq10k-subset": "koniq10k", "spaq-subset": "spaq"}


class UnknownDatasetError(DatasetError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def closest(name: str, names) -> str | None:
    """The known name ``name`` most likely means, case ignored (``KADID10K`` is ``kadid10k``); None if none is close."""
    by_lower = {str(n).lower(): n for n in names}
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def get_spec(name: str) -> DatasetSpec:
    try:
        return SPECS[name]
    except KeyError:
        close = closest(name, SPECS)
        raise UnknownDatasetError(f"unknown dataset {name!r}{f' (did you mean {close!r}?)' if close else ''}; "
                                  f"known datasets: {', '.join(sorted(SPECS))} (for any other, use "
                                  "`iqabench datasets add-generic`)") from None
