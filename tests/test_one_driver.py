"""One driver: the same box + clicks give the same mask, voxel for voxel, through
``Session.set_prompts``, ``Session.stream`` (napari's path; painted from its yields), an
interactive session (a box, then each click) and ``sam-med segment`` (issue 26).

On the tiny random-weight model for every click rule, and on one real case with LiteMedSAM.
"""

from __future__ import annotations

import numpy as np
import pytest

from _helpers import blob_volume
from sam_med import io
from sam_med.cli import main
from sam_med.predictors.slicewise import SliceWisePredictor
from sam_med.predictors.streaming import paint
from sam_med.prompts import KeySliceBox, ObjectPrompts, Point, box_from_mask
from sam_med.session import Session

SHAPE, CENTER, RADII = (48, 40, 20), (24, 20, 10), (9, 7, 4)


def _voxel(m: np.ndarray, near) -> tuple[float, float, float]:
    """The voxel of ``m`` nearest to ``near``."""
    idx = np.argwhere(m)
    i = int(np.argmin(((idx - np.asarray(near)) ** 2).sum(1)))
    return tuple(float(v) for v in idx[i])


def _clicks(mask: np.ndarray, ref: np.ndarray) -> list[Point]:
    """Three corrective clicks on a box result: in what it missed, in what it added, and again."""
    missed, extra = ref & ~mask, mask & ~ref
    assert missed.any() and extra.any(), "the tiny model's box result should be wrong both ways"
    return [Point(_voxel(missed, CENTER), True), Point(_voxel(extra, CENTER), False),
            Point(_voxel(missed, (CENTER[0] + 5, CENTER[1], CENTER[2] - 2)), True)]


def _four_ways(volume, make_predictor, prompts: ObjectPrompts, first: ObjectPrompts) -> dict[str, np.ndarray]:
    """The object's mask from ``prompts`` four ways; ``first``: the prompts without clicks."""
    out = {}
    s = Session(volume, make_predictor())
    o = s.add_object("a")
    s.set_prompts(o.id, prompts)
    out["set_prompts"] = s.mask(o.id)

    s = Session(volume, make_predictor())
    o = s.add_object("b")
    painted = np.zeros(volume.shape, bool)
    for up in s.stream(o.id, prompts):
        paint(painted, up)
    out["stream"], out["stream painted"] = s.mask(o.id), painted

    s = Session(volume, make_predictor())
    o = s.add_object("c")
    s.set_prompts(o.id, first)
    for p in prompts.points:  # one click at a time, as a user would
        s.add_point(o.id, p, run=True)
    out["interactive"] = s.mask(o.id)
    assert s.get(o.id).result.info.mode == "refine"

    s = Session(volume, make_predictor())
    o = s.add_object("d")
    painted = np.zeros(volume.shape, bool)
    for up in s.stream(o.id, first):
        paint(painted, up)
    for i in range(1, len(prompts.points) + 1):  # napari: each click streamed as a refinement
        step = ObjectPrompts(box=first.box, key_box=first.key_box, points=prompts.points[:i])
        for up in s.stream(o.id, step):
            paint(painted, up)
        assert s.get(o.id).result.info.mode == "refine"
    out["stream interactive"], out["stream interactive painted"] = s.mask(o.id), painted
    return out


def _cli_args(prompts: ObjectPrompts) -> list[str]:
    args = []
    if prompts.box is not None:
        args += ["--box", *[f"{v:g}" for v in prompts.box.to_json()]]
    if prompts.key_box is not None:
        kb = prompts.key_box
        args += ["--key-axis", str(kb.axis), "--key-box", str(kb.slice), str(kb.range[0]), str(kb.range[1]),
                 *[f"{v:g}" for v in kb.rect]]
    for p in prompts.points:
        args += ["--point", *[f"{v:g}" for v in p.ijk], "--label", "1" if p.positive else "0"]
    return args


@pytest.mark.parametrize("rule", ["model", "ball", "edit"])
def test_box_and_clicks_agree_everywhere_on_the_tiny_model(tiny, tmp_path, rule):
    blob, ref = blob_volume(SHAPE, CENTER, RADII)
    path = io.save_volume(blob, str(tmp_path / "blob.nii.gz"))
    volume = io.load(path)  # what the CLI reads
    from sam_med.predictors.embedding_cache import EmbeddingCache

    cache = EmbeddingCache()

    def make():
        return SliceWisePredictor(loaded=tiny, cache=cache, click_rule=rule, modality="CT")

    first = ObjectPrompts(box=box_from_mask(ref))
    base = make().predict(volume, first)
    prompts = ObjectPrompts(box=first.box, points=_clicks(base.mask, ref))
    masks = _four_ways(volume, make, prompts, first)
    out = tmp_path / "cli.nii.gz"
    rc = main(["segment", path, *_cli_args(prompts), "--model", tiny.name, "--modality", "CT",
               "--option", f"click_rule={rule}", "--no-progress", "--out", str(out)])
    assert rc == 0
    masks["cli"] = io.load_label(str(out), like=volume).array == 1
    ref_mask = masks["set_prompts"]
    assert not np.array_equal(ref_mask, base.mask)  # the clicks changed something
    for name, m in masks.items():
        assert np.array_equal(m, ref_mask), f"{name}: {int((m ^ ref_mask).sum())} voxels differ"


@pytest.mark.slow
def test_key_slice_box_and_clicks_agree_on_a_real_scan(lite_medsam, embedding_cache, embedding_cache_dir, tmp_path):
    """The sample CT's spleen from a key-slice rectangle, then three clicks (LiteMedSAM)."""
    path = "sam_med/data/example_ct_sm.nii.gz"
    volume = io.load(path)
    labels = io.load_label("sam_med/data/example_seg.nii.gz", like=volume).array
    ref = labels == 1  # spleen
    ks = np.nonzero(ref.any(axis=(0, 1)))[0]
    k = int((ks[0] + ks[-1]) // 2)
    lo, hi = box_from_mask(ref[:, :, k:k + 1]).int_bounds()
    kb = KeySliceBox(axis=2, slice=k, range=(int(ks[0]), int(ks[-1])), rect=(lo[0], lo[1], hi[0], hi[1]))
    first = ObjectPrompts(key_box=kb)

    def make():
        return SliceWisePredictor(loaded=lite_medsam, cache=embedding_cache)

    base = make().predict(volume, first)
    missed, extra = ref & ~base.mask, base.mask & ~ref
    pts = []
    if missed.any():
        pts.append(Point(_voxel(missed, np.argwhere(missed).mean(0)), True))
    if extra.any():
        pts.append(Point(_voxel(extra, np.argwhere(extra).mean(0)), False))
    pts.append(Point(_voxel(ref & base.mask, np.argwhere(ref).mean(0)), False))  # a cut in the organ
    prompts = ObjectPrompts(key_box=kb, points=pts)
    masks = _four_ways(volume, make, prompts, first)
    out = tmp_path / "cli.nii.gz"
    rc = main(["segment", path, *_cli_args(prompts), "--cache-dir", str(embedding_cache_dir), "--no-progress",
               "--out", str(out)])
    assert rc == 0
    masks["cli"] = io.load_label(str(out), like=volume).array == 1
    want = masks["set_prompts"]
    for name, m in masks.items():
        assert np.array_equal(m, want), f"{name}: {int((m ^ want).sum())} voxels differ"


def test_propagate_yields_every_slice_a_click_changed(tiny):
    """Under the default ball rule a click changes several slices: add_prompts returns the
    clicked slice and propagate yields every changed slice (each the final plane)."""
    vol, ref = blob_volume(SHAPE, CENTER, RADII)
    pred = SliceWisePredictor(loaded=tiny)
    state = pred.init_state(vol)
    pred.add_prompts(state, box=box_from_mask(ref))
    before = {k: m.copy() for k, m in pred.propagate(state)}
    assert set(before) == set(state.slices)
    mask0 = pred.volume_mask(state)
    click = Point(_voxel(ref & mask0, CENTER), False)
    k, plane = pred.add_prompts(state, [click])
    seen = list(pred.propagate(state))
    mask1 = pred.volume_mask(state)
    changed = set(np.nonzero((mask0 ^ mask1).any(axis=(0, 1)))[0])
    assert k == int(click.ijk[2]) and seen[0][0] == k and changed <= {z for z, _ in seen}
    for z, m in seen:
        assert np.array_equal(m, mask1[:, :, z])


def test_a_hand_edit_is_the_start_of_the_next_refinement(tiny):
    """Session.set_mask (a brush stroke): the predictor adopts the edited mask, so the next click
    refines it (mode "refine") and the painted voxels away from the click stay; undo steps back."""
    vol, ref = blob_volume(SHAPE, CENTER, RADII)
    s = Session(vol, SliceWisePredictor(loaded=tiny))
    o = s.add_object("blob")
    s.set_box(o.id, box_from_mask(ref))
    boxed = s.mask(o.id)
    edited = boxed.copy()
    edited[20:23, 18:21, 8] = True  # painted
    edited[:, :, 12] = False  # erased
    s.set_mask(o.id, edited)
    assert s.get(o.id).result is not None and np.array_equal(s.mask(o.id), edited)
    inside = _voxel(edited[:, :, 10] & ref[:, :, 10], CENTER[:2]) + (10.0,)
    s.add_point(o.id, Point((inside[0], inside[1], 10.0), False))
    after = s.mask(o.id)
    assert s.get(o.id).result.info.mode == "refine" and not after[int(inside[0]), int(inside[1]), 10]
    assert after[20:23, 18:21, 8].all() and not after[:, :, 12].any()  # the hand edit is kept
    s.undo()
    assert np.array_equal(s.mask(o.id), edited)
    s.undo()
    assert np.array_equal(s.mask(o.id), boxed)
