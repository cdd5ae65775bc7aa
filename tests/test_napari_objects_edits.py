"""napari widget, issue #29 problems 1 and 2, driven as a user would (widget buttons, the
layers' own add / paint calls, under Xvfb):

1. prompts belong to an object: each object keeps its own box; Segment acts on the
   selected object's prompts; drawing over a segmented object asks first;
2. brush / eraser strokes become Session mask edits: undoable, kept by a later click,
   written by "Save labels".

A fast box-filling predictor stands in for the model (the point is the plumbing). With
``SAM_MED_SCREENSHOT_DIR`` set, the window is saved as PNGs there (docs/img/).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from test_napari_widget import _open, _widget, wait_until
from test_napari_widget import ct_path, gt_labels, viewer  # noqa: F401 - fixtures

pytestmark = pytest.mark.napari


class BoxFill:
    """predict(): the box (tight or key-slice, as 3D) filled; a positive click adds a 5x5
    square on its slice, a negative one clears it; reports ``propagate`` per slice."""

    model_name = "boxfill"

    def __init__(self, iou=0.9, dt=0.0):
        self.iou, self.dt, self.calls = iou, dt, 0

    def predict(self, volume, prompts, previous=None, progress=None):
        from sam_med.predictors.base import PredictionInfo
        from sam_med.session import PredictionResult

        self.calls += 1
        m = np.zeros(volume.shape, bool)
        box = prompts.box or (prompts.key_box.to_box3d() if prompts.key_box else None)
        if box is not None:
            lo, hi = box.int_bounds()
            n = int(hi[2] - lo[2] + 1)
            for t, k in enumerate(range(lo[2], hi[2] + 1)):
                m[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, k] = True
                if self.dt:
                    time.sleep(self.dt)
                if progress:
                    progress(t + 1, n, "propagate")
        for p in prompts.points:
            i, j, k = np.rint(p.ijk).astype(int)
            m[max(i - 2, 0):i + 3, max(j - 2, 0):j + 3, k] = p.positive
        return PredictionResult(mask=m, info=PredictionInfo(confidence=self.iou))


def rect(i0, j0, i1, j1, k):
    return np.array([[i0, j0, k], [i0, j1, k], [i1, j1, k], [i1, j0, k]], float)


def shot(viewer, name):
    """Save the window (canvas and widget) when $SAM_MED_SCREENSHOT_DIR is set."""
    viewer.reset_view()
    img = viewer.screenshot(canvas_only=False, flash=False)
    assert img.ndim == 3 and img[..., :3].std() > 10  # not a blank window
    out = os.environ.get("SAM_MED_SCREENSHOT_DIR")
    if out:
        import imageio.v3 as iio

        iio.imwrite(os.path.join(out, name), img)


def show_slice(viewer, vol, k):
    viewer.dims.set_point(2, float(vol.voxel_to_world([0, 0, k])[2]))


@pytest.fixture
def ct(viewer, ct_path):
    layers = _open(viewer, ct_path)
    fake = BoxFill()
    w = _widget(viewer, lambda *key: fake)
    w.half_spin.setValue(3)
    return w, w.controls, layers[0].metadata["sam_med_volume"], fake


def segment(c):
    c.on_segment()
    wait_until(lambda: not c.busy, 60, "segment")
    assert c.last_error is None, c.last_error


def test_each_object_keeps_its_own_box_and_segment_acts_on_the_selected_one(viewer, ct):
    w, c, vol, fake = ct
    a = c.on_add_object("spleen")
    show_slice(viewer, vol, 12)
    assert viewer.layers.selection.active is c.shapes_layer  # a first drag draws a box
    c.shapes_layer.add_rectangles(rect(20, 20, 40, 40, 12))
    segment(c)
    spleen = c.session.get(a).mask.copy()
    b = c.on_add_object("kidney")
    c.shapes_layer.add_rectangles(rect(60, 50, 80, 70, 14))  # kidney's box, object 2 selected
    kb_b = c.session.get(b).prompts.key_box
    assert kb_b.slice == 14 and c.session.get(a).prompts.key_box.slice == 12  # spleen's box untouched
    # the user goes back to the spleen and presses Segment: the spleen's own box is used
    w.objects_list.setCurrentRow(0)
    assert c.current_id == a
    assert len(c.shapes_layer.data) == 1  # only the selected object's box is shown ...
    assert np.allclose(c.shapes_layer.edge_color[0][:3], c.session.get(a).color)  # ... in its colour
    assert len(c.range_layer.data) == 6  # its slice range (12 ± 3) drawn on the other slices
    segment(c)
    assert np.array_equal(c.session.get(a).mask, spleen)  # still the spleen, not the kidney
    assert c.session.get(b).mask is None
    w.objects_list.setCurrentRow(1)
    segment(c)
    lab = np.asarray(c.labels_layer.data)
    assert (lab == a).sum() == spleen.sum() and (lab == b).any()
    shot(viewer, "napari_two_objects.png")


def test_a_rectangle_over_a_segmented_object_asks_before_replacing_its_box(viewer, ct):
    w, c, vol, fake = ct
    a = c.on_add_object("liver")
    c.shapes_layer.add_rectangles(rect(20, 20, 40, 40, 12))
    segment(c)
    old = c.session.get(a).prompts.key_box
    asked = []
    c.confirm = lambda q: asked.append(q) or False  # "No"
    c.shapes_layer.add_rectangles(rect(50, 50, 70, 70, 15))
    assert asked and "liver" in asked[0] and c.session.get(a).prompts.key_box == old
    assert len(c.shapes_layer.data) == 1 and "kept the box" in w.status.text()
    c.confirm = lambda q: True  # "Yes"
    c.shapes_layer.add_rectangles(rect(50, 50, 70, 70, 15))
    assert c.session.get(a).prompts.key_box.slice == 15
    c.on_undo()  # one undo step brings the old box back
    assert c.session.get(a).prompts.key_box == old


def paint_stroke(layer, centre, radius, value):
    """What napari's brush does: Labels.paint at the cursor (one history item → paint event)."""
    from qtpy.QtWidgets import QApplication

    layer.brush_size = 2 * radius + 1
    layer.paint(centre, value, refresh=True)
    QApplication.processEvents()  # the widget reads the stroke on the next event-loop turn


def test_brush_and_eraser_become_session_edits_kept_by_a_click_and_saved(viewer, ct, tmp_path):
    import nibabel as nib

    w, c, vol, fake = ct
    a = c.on_add_object("liver")
    show_slice(viewer, vol, 12)
    c.shapes_layer.add_rectangles(rect(20, 20, 40, 40, 12))
    segment(c)
    before = c.session.get(a).mask.copy()
    viewer.layers.selection.active = c.labels_layer
    assert c.labels_layer.selected_label == a  # the brush paints the selected object
    c.labels_layer.n_edit_dimensions = 2
    paint_stroke(c.labels_layer, (50, 30, 12), 3, a)  # brush outside the box: more liver
    paint_stroke(c.labels_layer, (30, 30, 12), 2, 0)  # eraser inside it
    m = c.session.get(a).mask
    assert m[50, 30, 12] and not m[30, 30, 12] and not before[50, 30, 12] and before[30, 30, 12]
    assert "kept in the session" in w.status.text()
    painted = m.copy()
    c.on_undo()  # the eraser stroke is one undo step
    assert c.session.get(a).mask[30, 30, 12] and c.session.get(a).mask[50, 30, 12]
    c.on_redo()
    assert np.array_equal(c.session.get(a).mask, painted)
    # a positive click elsewhere re-predicts the object: the hand edits stay
    c.ui.positive_chk.setChecked(True)
    c.points_layer.add(np.array([[25, 60, 12]], float))
    wait_until(lambda: not c.busy, 60, "click")
    assert c.last_error is None, c.last_error
    m = c.session.get(a).mask
    assert m[25, 60, 12] and m[50, 30, 12] and not m[30, 30, 12]
    shot(viewer, "napari_brush_kept.png")
    out = w.files.on_save_labels(str(tmp_path / "labels.nii.gz"))
    saved = np.asarray(nib.load(out).dataobj)
    assert saved[50, 30, 12] == a and saved[30, 30, 12] == 0 and saved[25, 60, 12] == a
    assert np.array_equal(saved == a, m)


def test_painting_a_locked_object_or_an_unknown_label_is_undone_with_one_line(viewer, ct):
    w, c, vol, fake = ct
    a = c.on_add_object("liver")
    c.shapes_layer.add_rectangles(rect(20, 20, 40, 40, 12))
    segment(c)
    w.lock_chk.setChecked(True)
    c.labels_layer.n_edit_dimensions = 2
    paint_stroke(c.labels_layer, (30, 30, 12), 2, 0)
    assert w.status.text() == "paint undone: 'liver' is locked: unlock it to paint"
    assert np.asarray(c.labels_layer.data)[30, 30, 12] == a and c.session.get(a).mask[30, 30, 12]
    paint_stroke(c.labels_layer, (60, 60, 12), 2, 7)
    assert w.status.text().startswith("paint undone: label 7 is no object")
    assert not np.asarray(c.labels_layer.data)[60, 60, 12]
