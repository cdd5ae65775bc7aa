"""napari "Accept" (issue 19): the objects' masks, prompts and clicks go to the
accepted-results folder through ``Session.accept`` in a worker; the status line names the
entry. Same harness as ``test_napari_widget.py`` (Xvfb, viewer, helpers); the tiny random
encoder + oracle decoder of ``tests/_helpers.py`` (the plumbing is the point)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from test_napari_interactive import _screenshot
from test_napari_widget import _open, _widget, wait_until
from test_napari_widget import viewer  # noqa: F401 - fixture

pytestmark = pytest.mark.napari


@pytest.fixture()
def ct_copy(tmp_path, data_dir):
    from sam_med import io

    src = tmp_path / "example_ct_sm.nii.gz"
    shutil.copy(data_dir / "totalseg" / "example_ct_sm.nii.gz", src)
    ref = io.load_label(data_dir / "totalseg" / "example_seg.nii.gz", like=io.load(src)).array
    return src, ref


def _segment(viewer, c, box, k):
    from sam_med_napari._layers import box_to_rectangle

    viewer.dims.set_point(2, float(c.volume.voxel_to_world([0, 0, k])[2]))
    c.shapes_layer.add_rectangles(box_to_rectangle(box, k, axis=2))
    c.on_segment()
    wait_until(lambda: not c.busy, 120, "segment")
    assert c.last_error is None, c.last_error


def test_accept_stores_masks_prompts_and_clicks(viewer, ct_copy, tiny, tmp_path, monkeypatch):
    from _helpers import oracle_predictor
    from sam_med.dataengine import AcceptedDataset
    from sam_med.predictors.embedding_cache import EmbeddingCache
    from sam_med.prompts import box_from_mask

    src, ref = ct_copy
    monkeypatch.setenv("SAM_MED_DATASET", str(tmp_path / "accepted"))  # the folder's default
    _open(viewer, str(src))
    w = _widget(viewer, lambda *key: oracle_predictor(np.isin(ref, [1, 5]), tiny, EmbeddingCache(),
                                                      zoom="never"))
    c = w.controls
    assert w.files.dataset_dir == str(tmp_path / "accepted") and str(tmp_path / "accepted") in w.dataset_label.text()
    w.window_spin.setValue(0)
    w.ahead_spin.setValue(0)
    w.half_spin.setValue(3)
    boxes = {}
    for lab, name in ((5, "liver"), (1, "spleen")):
        oid = c.on_add_object(name)
        b = box_from_mask(ref == lab).to_json()
        k = int(round((b[2] + b[5]) / 2))
        _segment(viewer, c, b, k)
        boxes[oid] = k
    liver = 1
    c.on_object_selected(0)
    assert c.current_id == liver
    k = boxes[liver]
    click = np.argwhere(ref[:, :, k] == 5)[0]
    c.points_layer.add(np.array([[click[0], click[1], k]], float))
    wait_until(lambda: not c.busy, 120, "refine")
    assert c.last_error is None, c.last_error
    assert len(c.session.get(liver).prompts.points) == 1
    w.accept_btn.click()  # the button the user presses: Session.accept in a worker
    assert c.busy or w.files.last_entry is not None
    wait_until(lambda: not c.busy, 60, "accept")
    assert c.last_error is None, c.last_error
    entry = w.files.last_entry
    assert str(entry.dir) in w.status.text() and "liver" in w.status.text()
    [got] = AcceptedDataset(tmp_path / "accepted").entries()
    assert got.id == entry.id and got.scan_path == str(src)
    assert [(o["id"], o["name"]) for o in got.objects] == [(1, "liver"), (2, "spleen")]
    clicks = got.objects[0]["clicks"]
    assert clicks == [{"ijk": [float(click[0]), float(click[1]), float(k)], "positive": True}]
    assert got.objects[0]["prompts"]["key_slice_box"]["slice"] == k
    mask = got.load_mask(like=got.load_scan()).array
    assert np.array_equal(mask, c.session.label_map()) and np.array_equal(mask, np.asarray(c.labels_layer.data))
    _screenshot(viewer, c, c.volume, k)  # the window after Accept ($SAM_MED_SCREENSHOT saves it)


def test_accept_errors_are_one_status_line(viewer, tmp_path, monkeypatch):
    from _helpers import blob_volume
    from sam_med_napari._layers import image_layer_data

    bad = tmp_path / "notes"
    bad.mkdir()
    (bad / "x.txt").write_text("x")
    monkeypatch.setenv("SAM_MED_DATASET", str(bad))
    vol, ref = blob_volume()
    data, kw, _ = image_layer_data(vol, "blob")  # built in memory: no scan file to reference
    viewer.add_image(data, **kw)
    w = _widget(viewer)
    c = w.controls
    assert w.files.dataset_dir is None and "dataset folder refused" in w.status.text()
    c.on_add_object("blob")
    c.session.set_mask(c.current_id, ref)
    assert w.files.on_choose_dataset(str(tmp_path / "acc")) == str(tmp_path / "acc")
    w.files.on_accept()
    wait_until(lambda: not c.busy, 60, "accept")
    assert "Accept failed:" in w.status.text() and "no file on disk" in w.status.text()
    assert "\n" not in w.status.text() and not (tmp_path / "acc" / "entries").exists()
