"""Volume geometry helpers: properties over random affines/orientations (hypothesis)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from sam_med.errors import GeometryError
from sam_med.volume import (
    Volume, affine_from_geometry, apply_affine, axcodes, lps_to_ras, ras_to_lps, split_affine,
)

finite = st.floats(-500, 500, allow_nan=False, allow_infinity=False)
spacing_st = st.tuples(*[st.floats(0.05, 10.0)] * 3)
quat_st = st.tuples(*[st.floats(-1, 1)] * 4).filter(lambda q: np.linalg.norm(q) > 0.1)
flip_st = st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3)
perm_st = st.permutations([0, 1, 2])


def _affine(spacing, quat, flips, origin):
    rot = Rotation.from_quat(np.array(quat) / np.linalg.norm(quat)).as_matrix() * np.array(flips)[None, :]
    return affine_from_geometry(spacing, rot, origin)


@settings(max_examples=150, deadline=None)
@given(spacing_st, quat_st, flip_st, st.tuples(finite, finite, finite),
       st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=8))
def test_voxel_world_round_trip(spacing, quat, flips, origin, points):
    aff = _affine(spacing, quat, flips, origin)
    vol = Volume(np.zeros((2, 3, 4), np.uint8), aff)
    pts = np.array(points)
    back = vol.world_to_voxel(vol.voxel_to_world(pts))
    np.testing.assert_allclose(back, pts, atol=1e-6 * (1 + np.abs(pts).max()) / min(spacing))
    # the voxel origin maps to the affine translation; unit steps have length = spacing
    np.testing.assert_allclose(vol.voxel_to_world([0, 0, 0]), origin, atol=1e-9)
    for ax in range(3):
        e = np.zeros(3)
        e[ax] = 1
        step = vol.voxel_to_world(e) - vol.voxel_to_world(np.zeros(3))
        assert np.linalg.norm(step) == pytest.approx(spacing[ax], rel=1e-9)


@settings(max_examples=150, deadline=None)
@given(spacing_st, quat_st, flip_st, st.tuples(finite, finite, finite))
def test_split_and_compose_are_inverse(spacing, quat, flips, origin):
    aff = _affine(spacing, quat, flips, origin)
    sp, d, o = split_affine(aff)
    np.testing.assert_allclose(sp, spacing, rtol=1e-9)
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(affine_from_geometry(sp, d, o), aff, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(spacing_st, perm_st, flip_st, st.tuples(finite, finite, finite))
def test_axcodes_and_lps_flip_agree_with_nibabel(spacing, perm, flips, origin):
    rot = np.eye(3)[:, list(perm)] * np.array(flips)[None, :]
    aff = affine_from_geometry(spacing, rot, origin)
    assert axcodes(aff) == tuple(nib.aff2axcodes(aff))
    # LPS<->RAS flips the first two world axes only and is its own inverse
    lps = ras_to_lps(aff)
    np.testing.assert_allclose(lps_to_ras(lps), aff)
    flip = {"L": "R", "R": "L", "P": "A", "A": "P", "S": "S", "I": "I"}
    assert tuple(nib.aff2axcodes(lps)) == tuple(flip[c] if c in "LRPA" else c for c in axcodes(aff))


@settings(max_examples=60, deadline=None)
@given(spacing_st, quat_st, flip_st, st.tuples(finite, finite, finite))
def test_world_to_voxel_matches_nibabel(spacing, quat, flips, origin):
    aff = _affine(spacing, quat, flips, origin)
    vol = Volume(np.zeros((4, 4, 4), np.int16), aff)
    pts = np.array([[1.5, -2.0, 3.25], [0, 0, 0], [10, 20, 30]])
    np.testing.assert_allclose(vol.world_to_voxel(pts),
                               nib.affines.apply_affine(np.linalg.inv(aff), pts), atol=1e-6)
    np.testing.assert_allclose(apply_affine(aff, pts), nib.affines.apply_affine(aff, pts), atol=1e-9)


def test_validation_refuses_bad_geometry():
    with pytest.raises(GeometryError, match="3D"):
        Volume(np.zeros((2, 2)), np.eye(4))
    with pytest.raises(GeometryError, match="NaN"):
        Volume(np.zeros((2, 2, 2)), np.full((4, 4), np.nan))
    shear = np.eye(4)
    shear[0, 1] = 0.3
    with pytest.raises(GeometryError, match="orthonormal"):
        Volume(np.zeros((2, 2, 2)), shear)
    zero = np.diag([1.0, 0.0, 1.0, 1.0])
    with pytest.raises(GeometryError, match="positive"):
        Volume(np.zeros((2, 2, 2)), zero)
