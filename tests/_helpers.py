"""Test helpers (no tests here): a tiny random-weight LiteMedSAM-shaped model and
synthetic volumes, so the slice-wise algorithm runs in seconds with no weights and no
``../shared``.

The tiny model is built by the same builder as LiteMedSAM (``build_tinyvit_sam``, small
TinyViT stages) and loaded through the same registry and config (``lite_medsam.yaml``
with the tiny architecture and a temporary checkpoint), so its preprocessing, prompt
mapping and postprocessing are LiteMedSAM's own.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import yaml

TINY_ARGS = {"image_size": 256, "embed_dims": [16, 32, 32, 64], "depths": [1, 1, 1, 1],
             "num_heads": [1, 1, 1, 2], "window_sizes": [7, 7, 14, 7]}


def write_tiny_model(models_dir: Path, name: str = "tiny_lite", seed: int = 0) -> Path:
    """Write ``<name>.pt`` (random weights, ``seed``) + ``<name>.yaml`` into ``models_dir``."""
    from sam_med.models.build import build_tinyvit_sam
    from sam_med.models.registry import find_model_config

    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_tinyvit_sam(**TINY_ARGS).eval()
    w = models_dir / f"{name}.pt"
    torch.save(model.state_dict(), w)
    cfg = yaml.safe_load(Path(find_model_config("lite_medsam")).read_text())
    cfg["name"] = name
    cfg.pop("click_model", None)  # LiteMedSAM's click decoder does not fit the tiny encoder
    cfg["architecture_args"] = dict(TINY_ARGS, image_size="@image_size")
    cfg["checkpoint"] = {"path": str(w), "sha256": None}
    path = models_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


_TINY: dict[tuple[str, int], object] = {}


def load_tiny_model(models_dir: Path, name: str = "tiny_lite", seed: int = 0):
    """The tiny model as a :class:`~sam_med.models.LoadedModel` (CPU), written to
    ``models_dir`` on the first call of the process and shared by the later ones."""
    from sam_med.models import load_model
    from sam_med.models.registry import register_model_config

    if (name, seed) not in _TINY:
        path = write_tiny_model(models_dir, name, seed)
        register_model_config(path, name)
        _TINY[(name, seed)] = load_model(name, device="cpu")
    return _TINY[(name, seed)]


def blob_volume(shape=(48, 40, 12), center=(24, 20, 6), radii=(9, 7, 4), *, modality="CT", seed=0,
                slice_axis: int = 2):
    """A CT-like volume (HU) with a bright ellipsoid (+60 HU soft tissue, noise) and its
    bool mask. Index order (i, j, k); 1 x 1 x 3 mm voxels."""
    from sam_med.volume import Volume

    rng = np.random.default_rng(seed)
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii)) <= 1.0
    arr = np.where(inside, 160.0, 20.0) + rng.normal(0, 8, shape)
    aff = np.diag([1.0, 1.0, 3.0, 1.0])
    vol = Volume(arr.astype(np.float32), aff, modality=modality, intensity="HU", slice_axis=slice_axis)
    return vol, inside


def no_shared_env() -> dict[str, str]:
    """Environment for a subprocess with no shared data and no installed weights."""
    return dict(os.environ, SAM_MED_SHARED="/nonexistent", SAM_MED_CHECKPOINTS="/nonexistent")


def oracle_predictor(reference: np.ndarray, loaded, cache=None, **options):
    """A :class:`SliceWisePredictor` whose decoder is an oracle (everything else is the real
    algorithm: views, encoding through the cache, seeding, clicks, propagation): slice
    ``k`` decoded in a view from a box answers the components of ``reference``'s plane
    that the box touches (from points only: the component under a positive point),
    inside the view's crop, with predicted IoU 0.9 when non-empty, 0.05 when empty.
    ``pred.decoded`` lists the slices decoded, in order."""
    from scipy import ndimage

    from sam_med.predictors.planes import box_mask, component_at
    from sam_med.predictors.slicewise import SliceOut, SliceWisePredictor

    class OraclePredictor(SliceWisePredictor):
        def decode_slice(self, geo, k, view, emb, box2d, points=None, labels=None, mask_input=None,
                         multimask=False):
            assert emb.ndim == 3 and emb.shape[0] == 256  # (256, h, w): an encoded slice
            self.decoded.append(int(k))
            ref = geo.slice_of(self.reference, k).copy()
            if box2d is not None:
                lab, _ = ndimage.label(ref, structure=np.ones((3, 3), bool))
                touched = np.unique(lab[box_mask(np.asarray(box2d).astype(int), geo.hw) & ref])
                out = np.isin(lab, touched[touched > 0])
            else:
                parts = [component_at(ref, int(x), int(y)) for (x, y), lab in zip(points, labels) if lab]
                parts = [c for c in parts if c is not None]
                out = np.logical_or.reduce(parts) if parts else np.zeros(geo.hw, bool)
            if view[0] is not None:
                out &= box_mask(np.asarray(view[0]), geo.hw)
            so = SliceOut(out, torch.zeros(1, 1, 256, 256), None if box2d is None else np.asarray(box2d),
                          0.9 if out.any() else 0.05)
            return [so, SliceOut(out.copy(), so.logits, so.box, 0.5), SliceOut(out.copy(), so.logits, so.box, 0.4)] \
                if multimask else so

    pred = OraclePredictor(loaded=loaded, cache=cache, **options)
    pred.reference = np.asarray(reference, bool)
    pred.decoded = []
    return pred
