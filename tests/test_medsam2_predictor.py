"""The SAM 2 video-style predictor: prompts -> slices, propagation both ways, clicks re-run
from their slice, several objects sharing cached features, a bounded memory bank.

Runs a randomly initialised model at 64^2 input (parameter shapes do not depend on the input
size, so the checkpoint is in the official layout); what is checked are the engine's rules,
not accuracy (no real weights can be had here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from sam_med.errors import PromptError
from sam_med.models.registry import find_model_config
from sam_med.models.sam2 import build_sam2
from sam_med.predictors.base import VolumePredictor
from sam_med.predictors.sam2video import Sam2VideoOptions, Sam2VideoPredictor
from sam_med.prompts import ObjectPrompts, make_box, make_key_slice_box, make_point
from sam_med.volume import Volume


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Many tiny ops at 64^2: one thread avoids the cost of waking a second one per op."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    """medsam2.yaml at 64^2 with a random checkpoint of the official layout."""
    d = tmp_path_factory.mktemp("medsam2_tiny")
    torch.manual_seed(0)
    ck = d / "MedSAM2_latest.pt"
    sd = build_sam2().state_dict()
    sd["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] += 5.0  # the object is seen: logits, not -1024
    torch.save({"model": sd}, ck)
    raw = yaml.safe_load(find_model_config("medsam2").read_text())
    raw.update(name="medsam2_tiny", image_size=64)
    raw["checkpoint"] = {"path": str(ck), "sha256": None}
    p = d / "medsam2_tiny.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def blob(shape=(48, 40, 12), seed=0) -> Volume:
    """A bright ellipsoid in noise, already windowed to 0..255."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    c = [s / 2 for s in shape]
    inside = ((x - c[0]) / (shape[0] / 4)) ** 2 + ((y - c[1]) / (shape[1] / 4)) ** 2 + ((z - c[2]) / (shape[2] / 3)) ** 2 <= 1
    arr = np.clip(60 + 120 * inside + rng.normal(0, 10, shape), 0, 255).astype(np.uint8)
    return Volume(array=arr, affine=np.diag([1.0, 1.0, 2.0, 1.0]), modality="CT", intensity="windowed")


def predictor(cfg, **opts) -> Sam2VideoPredictor:
    return Sam2VideoPredictor(str(cfg), options=Sam2VideoOptions(**opts))


def test_contract_and_source_grid(tiny_config):
    vol = blob()
    p = predictor(tiny_config)
    assert isinstance(p, VolumePredictor) and p.model_name == "medsam2_tiny"
    kb = make_key_slice_box(2, 6, (3, 9), (14, 12, 34, 28))
    r = p.predict(vol, ObjectPrompts(key_box=kb))
    assert r.mask.shape == vol.array.shape and r.mask.dtype == bool
    assert not r.mask[:, :, :3].any() and not r.mask[:, :, 10:].any()  # outside the key box's range
    assert r.info.extra["prompted_slices"] == [6] and r.info.extra["slice_range"] == [3, 9]
    assert r.info.extra["encoded_slices"] == 7  # each slice of the range once: forward, then reverse


def test_prompts_to_slices(tiny_config):
    vol = blob()
    p = predictor(tiny_config)
    p.init_state(vol)
    kb = make_key_slice_box(2, 6, (3, 9), (14, 12, 34, 28))
    pts = [make_point((20, 21, 8), True), make_point((30, 11, 6), False), make_point((22, 20, 8), False)]
    items, limits = p.slice_prompts(vol, ObjectPrompts(key_box=kb, points=pts))
    assert items == [(6, [14.0, 12.0, 34.0, 28.0], [(30.0, 11.0, 0)]), (8, None, [(20.0, 21.0, 1), (22.0, 20.0, 0)])]
    assert limits == (3, 9)
    # a tight 3D box: its middle slice's rectangle, propagation over its extent
    items, limits = p.slice_prompts(vol, ObjectPrompts(box=make_box((10, 8, 2, 30, 28, 8), vol.array.shape)))
    assert items == [(5, [10.0, 8.0, 30.0, 28.0], [])] and limits == (2, 8)
    # points alone: the whole volume
    items, limits = p.slice_prompts(vol, ObjectPrompts(points=[make_point((20, 21, 4), True)]))
    assert items == [(4, None, [(20.0, 21.0, 1)])] and limits == (0, 11)


def test_click_reruns_from_its_slice_without_encoding_again(tiny_config):
    vol = blob()
    p = predictor(tiny_config)
    kb = make_key_slice_box(2, 6, (0, 11), (14, 12, 34, 28))
    r1 = p.predict(vol, ObjectPrompts(key_box=kb))
    st = p.init_state(vol)
    track = st.objects[r1.state.obj_id]
    before = {z: t.clone() for z, t in track.logits.items()}
    encoded = st.cache.encoded
    r2 = p.predict(vol, ObjectPrompts(key_box=kb, points=[make_point((24, 20, 9), False)]), previous=r1)
    assert r2.state.obj_id == r1.state.obj_id and r2.info.extra["prompted_slices"] == [6, 9]
    assert st.cache.encoded == encoded  # features cached: a click costs no encoder run
    assert not torch.equal(before[9], track.logits[9])  # the clicked slice was decoded again
    changed = [z for z in before if not torch.equal(before[z], track.logits[z])]
    assert set(changed) <= set(range(12)) and 10 in changed  # and the propagation re-ran from it
    # removing the click (undo) starts the object again from its prompts
    r3 = p.predict(vol, ObjectPrompts(key_box=kb), previous=r2)
    assert r3.state.obj_id != r2.state.obj_id and r3.info.extra["prompted_slices"] == [6]
    assert np.array_equal(r3.mask, r1.mask)  # same prompts, same result


def test_several_objects_share_the_features(tiny_config):
    vol = blob()
    p = predictor(tiny_config, largest_component=False)
    a = p.predict(vol, ObjectPrompts(key_box=make_key_slice_box(2, 6, (0, 11), (14, 12, 34, 28))))
    n = p.init_state(vol).cache.encoded
    b = p.predict(vol, ObjectPrompts(points=[make_point((10, 10, 3), True)]))
    assert p.init_state(vol).cache.encoded == n and a.state.obj_id != b.state.obj_id
    assert set(p.init_state(vol).objects) == {a.state.obj_id, b.state.obj_id}


def test_memory_bank_bounded_over_200_slices(tiny_config):
    """num_maskmem 7: the prompted slice + the 6 last tracked slices keep spatial memory, the
    15 last their object pointers; it does not grow with the volume."""
    vol = blob(shape=(32, 32, 200))
    p = predictor(tiny_config)
    st = p.init_state(vol)
    eng = p.engine
    eng.add_prompts(st, 100, 1, box=[8, 8, 24, 24])
    eng.add_prompts(st, 150, 1, points=[[16, 16]], labels=[1])
    track = st.objects[1]
    sizes, seen = [], []
    for reverse in (False, True):
        for z, logits in eng.propagate(st, 1, start=100, reverse=reverse):
            assert logits.shape == (32, 32)
            sizes.append(track.bank_size())
            seen.append(z)
    assert sorted(set(seen)) == list(range(200))
    assert max(s["memories"] for s in sizes) == 6 + 2  # 2 prompted slices
    assert max(s["pointers"] for s in sizes) == 15 + 2
    assert len(track.recent) <= 15
    assert st.cache.encoded == 200  # every slice encoded once over both passes
    assert eng.volume_mask(st, 1).shape == (200, 32, 32)


def test_bad_prompts_are_clear_errors(tiny_config):
    vol = blob()
    p = predictor(tiny_config)
    st = p.init_state(vol)
    with pytest.raises(PromptError, match="outside the volume"):
        p.engine.add_prompts(st, 40, 1, box=[1, 1, 5, 5])
    with pytest.raises(PromptError, match="no prompts"):
        list(p.engine.propagate(st, 7))
    with pytest.raises(PromptError, match="no prompts"):
        p.predict(vol, ObjectPrompts())


def test_axis_option_and_hu_input(tiny_config):
    vol = blob(shape=(10, 40, 36))
    hu = Volume(array=vol.array.astype(np.int16) * 4 - 600, affine=vol.affine, modality="CT", intensity="HU")
    p = predictor(tiny_config, axis=0, window=(40.0, 400.0))
    frames = p.frames_of(hu)
    assert frames.shape == (10, 36, 40) and frames.dtype == np.uint8  # slices along axis 0, (rows=z, cols=y)
    r = p.predict(hu, ObjectPrompts(points=[make_point((5, 20, 18), True)]))
    assert r.mask.shape == hu.array.shape


def test_session_click_undo_click(tiny_config):
    """Through the Session: undo hands back an older result; the next click must not build on
    the undone one (same mask as segmenting those prompts afresh)."""
    from sam_med.session import Session

    vol = blob()
    s = Session(vol, predictor(tiny_config))
    s.add_object("blob", id=1)
    s.set_key_slice_box(1, make_key_slice_box(2, 6, (0, 11), (14, 12, 34, 28)))
    s.add_point(1, (24, 20, 9), positive=False)
    assert s.undo()
    s.add_point(1, (20, 18, 4), positive=True)
    fresh = predictor(tiny_config).predict(vol, ObjectPrompts(
        key_box=make_key_slice_box(2, 6, (0, 11), (14, 12, 34, 28)), points=[make_point((20, 18, 4), True)]))
    assert s.get(1).result.info.extra["prompted_slices"] == [4, 6]
    assert np.array_equal(s.mask(1), fresh.mask)
