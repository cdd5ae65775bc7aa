"""Shared fixtures. Real scans come from ../shared/data (next to the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SAM_MED_SHARED", ROOT.parent / "shared")).resolve()
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared test data not found at {DATA} (set SAM_MED_SHARED)")
    return DATA


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    ref = SHARED / "reference"
    if not ref.is_dir():
        pytest.skip(f"shared reference facts not found at {ref}")
    return ref


@pytest.fixture(scope="session")
def embedding_cache_dir(request, tmp_path_factory) -> Path:
    """One on-disk embedding store for the whole suite (pytest's cache dir, so a re-run
    skips the encoder); every test that runs LiteMedSAM on a scan should use it."""
    try:
        return Path(request.config.cache.mkdir("sam_med_embeddings"))
    except AttributeError:  # cacheprovider disabled
        return tmp_path_factory.mktemp("sam_med_embeddings")


@pytest.fixture(scope="session")
def lite_medsam():
    from sam_med.errors import CheckpointError
    from sam_med.models import load_model

    try:
        return load_model("lite_medsam")
    except CheckpointError as exc:
        pytest.skip(f"LiteMedSAM weights not installed: {exc}")


@pytest.fixture(scope="session")
def embedding_cache(embedding_cache_dir):
    from sam_med.predictors.embedding_cache import EmbeddingCache

    return EmbeddingCache(cache_dir=embedding_cache_dir)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny random-weight LiteMedSAM-shaped model (tests/_helpers.py), one per session."""
    from _helpers import load_tiny_model

    return load_tiny_model(tmp_path_factory.mktemp("tiny_models"))
