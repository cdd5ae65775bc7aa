"""Volumetric predictor geometry: world-space prompts on real, rotated and anisotropic
scans land on the right crop voxel, and masks come back on the source grid."""

from __future__ import annotations

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

from sam_med.errors import PromptError
from sam_med.models.sam3d import Sam3DConfig, build_sam3d
from sam_med.predictors.volumetric import Sam3DState, VolumetricPredictor
from sam_med.prompts import Box, ObjectPrompts, Point, point_from_world
from sam_med.session import PredictionResult, Session
from sam_med.volume import Volume

RADIUS_MM = 20.0


class SphereModel:
    """Test double: returns full-resolution logits of a ball of RADIUS_MM around the first
    point it is given, and records what it saw."""

    def __init__(self, img_size=128, spacing=(1.5, 1.5, 1.5), constant=None):
        self.config = SimpleNamespace(img_size=img_size, spacing=spacing)
        self.calls = []
        self.constant = constant

    def encode(self, x):
        return x

    def decode(self, emb, coords, labels, mask_logits):
        self.calls.append(dict(image=emb[0, 0].clone(), coords=coords[0].clone(), labels=labels[0].clone(),
                               mask=None if mask_logits is None else mask_logits.clone()))
        s = self.config.img_size
        if self.constant is not None:
            return torch.full((1, 1, s, s, s), float(self.constant)), torch.ones(1, 1)
        g = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32)] * 3, indexing="ij"), -1)
        d_mm = ((g - coords[0, 0]) * torch.tensor(self.config.spacing)).norm(dim=-1)
        return ((RADIUS_MM - d_mm) * 2.0)[None, None], torch.ones(1, 1)


def _mr(data_dir) -> Volume:
    img = nib.load(str(data_dir / "totalseg" / "example_mr_sm.nii.gz"))
    return Volume(array=np.asanyarray(img.dataobj), affine=img.affine, modality="MR")


def _rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _rotated_anisotropic(vol: Volume) -> Volume:
    """The same MR voxels on an oblique (rotated 25/-15/35 deg), anisotropic (1.1 x 2.3 x 4.0 mm) grid
    with the LPS-like axis flips of the original."""
    aff = np.eye(4)
    aff[:3, :3] = _rotation(np.radians(25), np.radians(-15), np.radians(35)) @ np.diag([-1, -1, 1]) \
        @ np.diag([1.1, 2.3, 4.0])
    aff[:3, 3] = [40.0, -12.0, 7.5]
    return Volume(array=vol.array, affine=aff, modality="MR")


def _world_grid(vol: Volume) -> np.ndarray:
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in vol.shape], indexing="ij"), -1)
    return vol.voxel_to_world(idx.reshape(-1, 3)).reshape(*vol.shape, 3)


@pytest.fixture(scope="module")
def mr(data_dir):
    return _mr(data_dir)


@pytest.mark.parametrize("kind", ["lps", "rotated_anisotropic"])
def test_world_point_lands_on_crop_voxel_and_mask_returns_in_world(mr, kind):
    vol = mr if kind == "lps" else _rotated_anisotropic(mr)
    assert "".join(vol.axcodes) != "RAS"
    # a bright single-voxel marker at a voxel inside the body; the prompt is its world position
    ijk = np.array([60, 45, 11])
    arr = np.asarray(vol.array, dtype=np.float32).copy()
    arr[tuple(ijk)] = 20000.0
    vol = vol.with_array(arr)
    world = vol.voxel_to_world(ijk)
    model = SphereModel()
    pred = VolumetricPredictor(loaded=model)
    res = pred.predict(vol, ObjectPrompts(points=[point_from_world(world, vol, True)]))

    call = model.calls[0]
    p = call["coords"][0].numpy()
    # the model saw the marker at the crop voxel the point was mapped to (nearest voxel of trilinear resampling)
    peak = np.array(np.unravel_index(int(call["image"].argmax()), call["image"].shape))
    assert np.all(np.abs(peak - p) <= 0.5 + 1e-3), (peak, p)
    assert call["labels"].tolist() == [1]
    assert p.min() > 30 and p.max() < 98  # crop centred on the prompt

    # mask on the source grid, compared with the ball in world space
    assert res.mask.shape == vol.shape and res.mask.dtype == bool
    d = np.linalg.norm(_world_grid(vol) - world, axis=-1)
    tol = 0.5 * np.linalg.norm(vol.spacing) + 1.5  # half a source voxel diagonal + crop resolution
    assert res.mask[d < RADIUS_MM - tol].all()
    assert not res.mask[d > RADIUS_MM + tol].any()
    assert res.mask[tuple(ijk)]
    assert isinstance(res.state, Sam3DState)


def test_box_becomes_crop_centre_point_and_restricts_mask(mr):
    model = SphereModel()
    pred = VolumetricPredictor(loaded=model)
    box = Box((50.0, 35.0, 6.0), (70.0, 55.0, 14.0))
    res = pred.predict(mr, ObjectPrompts(box=box))
    call = model.calls[0]
    # one positive point: the box centre, in crop voxels
    centre_world = mr.voxel_to_world((np.array(box.lo) + np.array(box.hi)) / 2)
    assert call["labels"].tolist() == [1]
    # every mask voxel is inside the box, and the ball around the box centre is found
    idx = np.argwhere(res.mask)
    assert idx.size and idx.min(0).tolist() >= [50, 35, 6] and idx.max(0).tolist() <= [70, 55, 14]
    d = np.linalg.norm(_world_grid(mr) - centre_world, axis=-1)
    inside_box = np.zeros(mr.shape, bool)
    inside_box[50:71, 35:56, 6:15] = True
    assert res.mask[(d < RADIUS_MM - 4) & inside_box].all()


def test_large_box_is_tiled_and_merged(data_dir):
    img = nib.load(str(data_dir / "totalseg" / "example_ct_sm.nii.gz"))  # 366 x 303 x 90 mm
    vol = Volume(array=np.asanyarray(img.dataobj), affine=img.affine, modality="CT", intensity="HU")
    model = SphereModel(constant=10.0)  # "everything is foreground": tiles must cover the box exactly
    pred = VolumetricPredictor(loaded=model)
    box = Box((2.0, 3.0, 1.0), (118.0, 97.0, 28.0))
    res = pred.predict(vol, ObjectPrompts(box=box))
    assert res.info.extra["crops"] >= 4
    expected = np.zeros(vol.shape, bool)
    expected[2:119, 3:98, 1:29] = True
    np.testing.assert_array_equal(res.mask, expected)


def test_refinement_feeds_previous_logits_and_keeps_crop(mr):
    model = SphereModel()
    pred = VolumetricPredictor(loaded=model)
    pts = [Point((60.0, 45.0, 11.0), True)]
    r1 = pred.predict(mr, ObjectPrompts(points=pts))
    assert float(model.calls[0]["mask"].abs().max()) == 0.0  # zeros on the first click (official loop)
    r2 = pred.predict(mr, ObjectPrompts(points=pts + [Point((64.0, 47.0, 12.0), False)]), previous=r1)
    second = model.calls[1]
    assert second["labels"].tolist() == [1, 0]
    assert r2.state.centers == r1.state.centers
    torch.testing.assert_close(second["mask"], next(iter(r1.state.low_res.values())))
    # a click far outside the kept crop re-plans the crop (no stale mask prompt)
    far = Point((5.0, 5.0, 2.0), True)
    pred.predict(mr, ObjectPrompts(points=[far]), previous=r2)
    assert float(model.calls[2]["mask"].abs().max()) == 0.0


def test_errors_and_protocol(mr):
    pred = VolumetricPredictor(loaded=SphereModel())
    assert pred.model_name and callable(pred.prepare) and pred.prepare(mr) is None
    with pytest.raises(PromptError):
        pred.predict(mr, ObjectPrompts(points=[Point((60.0, 45.0, 11.0), False)]))
    with pytest.raises(PromptError):
        pred.predict(mr, ObjectPrompts())


def test_real_small_model_through_session(data_dir):
    img = nib.load(str(data_dir / "totalseg" / "example_ct_sm.nii.gz"))
    vol = Volume(array=np.asanyarray(img.dataobj), affine=img.affine, modality="CT", intensity="HU")
    torch.manual_seed(0)
    model = build_sam3d(Sam3DConfig.small())
    pred = VolumetricPredictor(loaded=model)
    session = Session(vol, pred)
    obj = session.add_object("liver")
    session.add_point(obj.id, (40, 50, 15), True)
    session.add_point(obj.id, (45, 52, 15), False)
    m = session.mask(obj.id)
    assert m.shape == vol.shape and m.dtype == bool
    low = next(iter(session.get(obj.id).result.state.low_res.values()))
    assert tuple(low.shape) == (1, 1, 32, 32, 32)
