"""Session mechanics (objects, prompts, overlap, undo/redo, save/load) with a
deterministic box predictor; model-backed behaviour is tested with the predictors."""

import numpy as np
import pytest

from sam_med.errors import PromptError, SamMedError
from sam_med.prompts import Box, ObjectPrompts
from sam_med.session import PredictionResult, Session
from sam_med.volume import Volume


class BoxFillPredictor:
    """Fills the box, then adds/removes a 3x3x3 cube at each positive/negative click."""

    model_name = "box-fill"

    def __init__(self):
        self.calls = 0

    def prepare(self, volume, progress=None):
        pass

    def predict(self, volume, prompts, previous=None, progress=None):
        self.calls += 1
        m = np.zeros(volume.shape, bool)
        if prompts.box is not None:
            lo, hi = prompts.box.int_bounds()
            m[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = True
        for p in prompts.points:
            i, j, k = np.rint(p.ijk).astype(int)
            m[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2, max(k - 1, 0):k + 2] = p.positive
        return PredictionResult(mask=m)


@pytest.fixture
def vol():
    aff = np.diag([0.8, 0.8, 2.5, 1.0])
    aff[:3, 3] = [-10, 20, 5]
    return Volume(np.zeros((20, 16, 12), np.int16), aff, modality="CT", intensity="HU")


def test_the_contract_is_what_a_session_calls(vol):
    """The VolumePredictor contract by behaviour: predict returns a volume-shaped bool mask and
    a typed info; a session records the model name and hands the previous result back."""
    from sam_med.predictors.base import PredictionInfo

    pred = BoxFillPredictor()
    r = pred.predict(vol, ObjectPrompts(box=Box((2, 3, 1), (6, 7, 4))))
    assert r.mask.shape == vol.shape and r.mask.dtype == bool and int(r.mask.sum()) == 5 * 5 * 4
    assert isinstance(r.info, PredictionInfo) and pred.model_name
    s = Session(vol, pred)
    o = s.add_object("x")
    s.set_box(o.id, [2, 3, 1, 6, 7, 4])
    assert s.to_json()["model"] == pred.model_name and s.get(o.id).result is not None


def test_objects_overlap_and_labels(vol):
    s = Session(vol, BoxFillPredictor())
    a = s.add_object("liver")
    b = s.add_object("lesion")
    s.set_box(a.id, [0, 0, 0, 9, 9, 9])
    s.set_box(b.id, [5, 5, 5, 12, 12, 11])
    lab = s.label_map()
    assert lab[7, 7, 7] == b.id and lab[2, 2, 2] == a.id and lab[12, 12, 11] == b.id
    s.overlap = "first"
    assert s.label_map()[7, 7, 7] == a.id
    s.overlap = "locked-first"
    s.set_locked(a.id)
    assert s.label_map()[7, 7, 7] == a.id
    with pytest.raises(SamMedError, match="locked"):
        s.add_point(a.id, (1, 1, 1), True)


def test_undo_redo_restores_exact_masks(vol):
    s = Session(vol, BoxFillPredictor())
    o = s.add_object()
    s.set_box(o.id, [2, 2, 2, 8, 8, 8])
    m1 = s.mask(o.id).copy()
    s.add_point(o.id, (5, 5, 5), positive=False)
    m2 = s.mask(o.id).copy()
    assert m2.sum() < m1.sum()
    assert s.undo()
    np.testing.assert_array_equal(s.mask(o.id), m1)
    assert len(s.get(o.id).prompts.points) == 0
    assert s.redo()
    np.testing.assert_array_equal(s.mask(o.id), m2)
    # undo all the way: no objects
    while s.undo():
        pass
    assert s.objects == {}
    assert not s.can_undo


def test_bad_prompts(vol):
    s = Session(vol, BoxFillPredictor())
    o = s.add_object()
    with pytest.raises(PromptError, match="inverted"):
        s.set_box(o.id, [5, 5, 5, 1, 1, 1])
    with pytest.raises(PromptError, match="outside"):
        s.set_box(o.id, [100, 0, 0, 120, 5, 5])
    with pytest.raises(PromptError, match="outside"):
        s.add_point(o.id, (0, 0, 50))
    with pytest.raises(PromptError, match="finite"):
        s.add_point(o.id, (0, float("nan"), 1))
    with pytest.raises(PromptError):
        ObjectPrompts.from_json({"id": 1}, vol)
    assert s.get(o.id).mask is None  # nothing changed


def test_world_prompts_round_trip(vol):
    p = ObjectPrompts.from_json(
        {"box": [*vol.voxel_to_world([1, 2, 3]), *vol.voxel_to_world([6, 7, 8])],
         "points": [[*vol.voxel_to_world([4, 4, 4]), 0]]},
        vol, "world")
    assert p.box.to_json() == pytest.approx([1, 2, 3, 6, 7, 8])
    assert p.points[0].ijk == pytest.approx((4, 4, 4)) and not p.points[0].positive


def test_save_load(tmp_path, vol):
    s = Session(vol, BoxFillPredictor())
    o = s.add_object("kidney", id=3)
    s.set_box(o.id, [1, 1, 1, 4, 5, 6])
    s.add_point(o.id, (2, 2, 2), True)
    f = s.save(tmp_path / "s.npz")
    s2 = Session.load(f, vol)
    assert s2.get(3).name == "kidney"
    np.testing.assert_array_equal(s2.label_map(), s.label_map())
    assert s2.get(3).prompts.to_json() == s.get(3).prompts.to_json()
    assert s2.saved_meta["model"] == "box-fill"
    other = Volume(np.zeros((5, 5, 5)), np.eye(4))
    with pytest.raises(SamMedError, match="different"):
        Session.load(f, other)


def test_key_slice_box_survives_save_and_load(tmp_path):
    """A key-slice box object is saved with its prompt and reloaded as one (no model needed)."""
    import numpy as np

    from sam_med.prompts import KeySliceBox
    from sam_med.session import Session
    from sam_med.volume import Volume

    vol = Volume(np.zeros((12, 10, 6), np.int16), np.eye(4), modality="CT")
    s = Session(vol, None)
    o = s.add_object("x")
    kb = KeySliceBox(axis=2, slice=3, range=(1, 4), rect=(2.0, 2.0, 8.0, 7.0))
    s.set_key_slice_box(o.id, kb, run=False)
    path = s.save(tmp_path / "s.npz")
    back = Session.load(path, vol)
    assert back.get(o.id).prompts.key_box == kb and back.get(o.id).prompts.box is None
