"""Real human-rated IQA datasets: specs, parsers into the manifest, downloads, registration.

The embedded default dataset lives in :mod:`iqabench.datasets.embedded` (owned
by the pipeline); everything here is about published research datasets.
"""
from .build import build_from_spec, build_manifest, list_images
from .registry import SPECS, DatasetSpec, Remote, UnknownDatasetError, get_spec
from .scorefiles import DatasetError

__all__ = ["SPECS", "DatasetSpec", "Remote", "DatasetError", "UnknownDatasetError", "get_spec",
           "build_manifest", "build_from_spec", "list_images"]
