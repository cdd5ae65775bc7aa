"""napari widget, interactive side (issues #15/#16): key-slice rectangles, slices painted
as they stream, encoding on demand around the slider. Same harness as
``test_napari_widget.py`` (its Xvfb start, viewer fixture and helpers are imported from
there); the tiny random encoder + oracle decoder of ``tests/_helpers.py`` where the
point is the plumbing, real LiteMedSAM where it is accuracy.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from sam_med.evaluation.metrics import dice
from test_napari_widget import _open, _widget, wait_until
from test_napari_widget import ct_path, gt_labels, viewer  # noqa: F401 - fixtures

pytestmark = pytest.mark.napari


def _screenshot(viewer, c, vol, k=None):
    """The window on slice ``k`` (default: most labels) → $SAM_MED_SCREENSHOT when set."""
    from pathlib import Path

    c.ui.positive_chk.setChecked(True)
    if k is None:
        k = int(np.argmax((np.asarray(c.labels_layer.data) > 0).sum(axis=(0, 1))))
    viewer.dims.set_point(2, float(vol.voxel_to_world([0, 0, k])[2]))
    viewer.layers.selection.active = c.shapes_layer
    viewer.reset_view()
    wait_until(lambda: True)
    img = viewer.screenshot(canvas_only=False, flash=False)
    assert img.ndim == 3 and img.shape[0] > 300
    assert img[..., :3].std() > 10  # not a blank window
    if os.environ.get("SAM_MED_SCREENSHOT"):
        import imageio.v3 as iio

        out = Path(os.environ["SAM_MED_SCREENSHOT"])
        iio.imwrite(out, img)
        print(f"\nscreenshot {img.shape} -> {out}")


def _open_blob(viewer):
    from _helpers import blob_volume
    from sam_med_napari._layers import image_layer_data

    vol, ref = blob_volume()  # (48, 40, 12), ellipsoid centre (24, 20, 6), radii (9, 7, 4)
    data, kw, _ = image_layer_data(vol, "blob")
    viewer.add_image(data, **kw)
    return vol, ref


def _oracle_factory(ref, tiny, made):
    """The tiny random encoder + the oracle decoder (tests/_helpers.py), whole-slice views
    (``zoom="never"``: a zoom or context crop would need its own encodes, by design)."""
    from _helpers import oracle_predictor
    from sam_med.predictors.embedding_cache import EmbeddingCache

    def factory(*key):
        made.append(oracle_predictor(ref, tiny, EmbeddingCache(), zoom="never"))
        return made[-1]
    return factory


def _blob_widget(viewer, tiny, window: int):
    """The blob volume in the viewer and a widget on the oracle predictor, prefetching
    ``window`` slices around the current one and none ahead: (vol, ref, widget, made)."""
    vol, ref = _open_blob(viewer)
    made = []
    w = _widget(viewer, _oracle_factory(ref, tiny, made))
    w.window_spin.setValue(window)
    w.ahead_spin.setValue(0)
    return vol, ref, w, made


def _draw_rectangle(c, mask, k):
    """Draw the tight rectangle of ``mask``'s slice ``k`` (i, j, k order) in the shapes layer."""
    idx = np.argwhere(mask[:, :, k])
    (i0, j0), (i1, j1) = idx.min(0), idx.max(0)
    c.shapes_layer.add_rectangles(np.array([[i0, j0, k], [i0, j1, k], [i1, j1, k], [i1, j0, k]], float))


def _show_slice(viewer, vol, k):
    viewer.dims.set_point(2, float(vol.voxel_to_world([0, 0, k])[2]))


def _whole_slices(pred):
    ns = pred.embedding_namespace(2)
    return sorted(key[1] for key in pred.cache.keys(ns) if key[0] == "s" and key[2] is None and len(key) == 3)


def test_moving_the_slider_encodes_the_neighbourhood_and_segmenting_there_encodes_nothing(viewer, tiny):
    vol, ref, w, made = _blob_widget(viewer, tiny, window=2)
    c = w.controls
    c.on_prepare()  # loads the model; encodes nothing up front
    wait_until(lambda: not c.busy, 60, "load")
    assert c.last_error is None, c.last_error
    pred = made[-1]
    wait_until(lambda: c.prefetch.runs >= 1 and not c.prefetch.running, 60, "first prefetch")
    k0 = c.current_slice()
    assert _whole_slices(pred) == [k for k in range(k0 - 2, k0 + 3) if 0 <= k < 12]
    runs = c.prefetch.runs
    _show_slice(viewer, vol, 2)  # the user scrolls down
    wait_until(lambda: c.prefetch.runs > runs and not c.prefetch.running, 60, "prefetch at slice 2")
    assert c.current_slice() == 2 and {0, 1, 2, 3, 4} <= set(_whole_slices(pred))
    assert "5 slices near 2 ready" in w.encode_label.text()
    encoded = pred.cache.encoded
    # a rectangle on slice 2 with ± 2: a key-slice box over 0..4, all encoded already
    c.on_add_object("blob")
    w.half_spin.setValue(2)  # a new box covers its slice ± 2
    _draw_rectangle(c, ref, 2)
    c.on_segment()
    wait_until(lambda: not c.busy, 60, "segment")
    assert c.last_error is None, c.last_error
    assert pred.cache.encoded == encoded  # the segmentation encoded nothing new
    got = np.asarray(c.labels_layer.data) == c.current_id
    assert np.array_equal(got[:, :, 0:5], ref[:, :, 0:5]) and not got[:, :, 5:].any()
    print(f"\nprefetch: {pred.cache.encoded} slices encoded, segmentation hits only")


def test_segmentation_paints_slices_as_they_come_key_slice_first_cancel_restores(viewer, tiny):
    vol, ref, w, made = _blob_widget(viewer, tiny, window=0)
    c = w.controls
    oid = c.on_add_object("blob")
    w.half_spin.setValue(5)
    _draw_rectangle(c, ref, 6)
    seen = []

    def record(p):
        if not isinstance(p, tuple):
            return
        lab = np.asarray(c.labels_layer.data) == oid
        seen.append((p[1], lab.any(axis=(0, 1)).sum()))

    c.on_segment()
    c.worker.yielded.connect(record)  # after the widget's own handler: the layer already shows it
    wait_until(lambda: not c.busy, 60, "segment")
    assert c.last_error is None, c.last_error
    assert seen[0][0] == 6  # the key slice first
    final = c.session.get(oid).mask
    shown = [n for _, n in seen]  # slices with a mask on screen after each yield
    n_final = int(final.any(axis=(0, 1)).sum())
    assert shown[0] == 1 and shown == sorted(shown) and shown[-1] == n_final
    assert sorted(set(shown)) == list(range(1, n_final + 1))  # they came one slice at a time
    assert np.array_equal(np.asarray(c.labels_layer.data) == oid, final) and np.array_equal(final, ref)
    assert c.session.can_undo
    # cancel mid-stream: the Session keeps the previous result, the layer shows it again
    c.on_undo()
    assert c.session.get(oid).mask is None
    pred, decode = made[-1], made[-1].decode_slice
    pred.decode_slice = lambda *a, **k: (time.sleep(0.2), decode(*a, **k))[1]  # a slow decoder
    c.on_segment()
    c.worker.yielded.connect(lambda p: isinstance(p, tuple) and c.on_cancel())
    wait_until(lambda: not c.busy, 60, "cancelled segment")
    from sam_med_napari._workers import Cancelled

    assert isinstance(c.last_error, Cancelled) and c.session.get(oid).mask is None
    assert not np.asarray(c.labels_layer.data).any()


def test_real_model_key_slice_rectangle_on_the_spleen_and_a_click_on_a_missed_slice(viewer, ct_path, gt_labels,
                                                                                    request):
    """Real LiteMedSAM: a rectangle on the spleen's middle slice with ± slices covering it
    (the default key-slice box) → Dice ≥ 0.90; a positive click on a slice the mask missed
    brings that slice in."""
    from scipy import ndimage

    gt = gt_labels == 1
    vol = _open(viewer, ct_path)[0].metadata["sam_med_volume"]
    w = _widget(viewer)
    c = w.controls
    c.cache_dir = str(request.config.cache.mkdir("sam_med_embeddings"))
    w.ahead_spin.setValue(0)
    zs = np.flatnonzero(gt.any(axis=(0, 1)))
    mid = int((zs[0] + zs[-1]) // 2)
    _show_slice(viewer, vol, mid)
    oid = c.on_add_object("spleen")
    w.half_spin.setValue(int(max(mid - zs[0], zs[-1] - mid)))
    _draw_rectangle(c, gt, mid)
    c.on_segment()
    t = wait_until(lambda: not c.busy, 600, "segment")
    assert c.last_error is None, c.last_error
    kb = c.session.get(oid).prompts.key_box
    assert kb is not None and kb.slice == mid and kb.range == (int(zs[0]), int(zs[-1]))
    pred = np.asarray(c.labels_layer.data) == oid
    d = dice(pred, gt)
    print(f"\nspleen key-slice rectangle on slice {mid}, range {kb.range}: Dice {d:.4f} ({t:.1f} s)")
    assert d >= 0.90
    _screenshot(viewer, c, vol, mid)  # docs/napari_widget.png: the key-slice rectangle and its result
    # a slice the mask missed: none with ± slices covering it? shrink the range, then click outside it
    missed = [int(k) for k in zs if not pred[:, :, k].any()]
    if not missed:
        w.half_spin.setValue(3)
        c.confirm = lambda question: True  # "replace the box of a segmented object?" Yes
        _draw_rectangle(c, gt, mid)
        c.on_segment()
        wait_until(lambda: not c.busy, 600, "narrow segment")
        assert c.last_error is None, c.last_error
        pred = np.asarray(c.labels_layer.data) == oid
        missed = [int(k) for k in zs if not pred[:, :, k].any()]
    assert missed
    k = max(missed, key=lambda z: gt[:, :, z].sum())
    depth = ndimage.distance_transform_edt(gt[:, :, k])
    i, j = np.unravel_index(int(np.argmax(depth)), depth.shape)
    before = dice(pred, gt)
    c.ui.positive_chk.setChecked(True)
    c.points_layer.add(np.array([[i, j, k]], float))
    wait_until(lambda: not c.busy, 600, "click")
    assert c.last_error is None, c.last_error
    after = np.asarray(c.labels_layer.data) == oid
    d_k = dice(after[:, :, k], gt[:, :, k])
    print(f"click on missed slice {k}: slice Dice 0 -> {d_k:.4f}, 3D Dice {before:.4f} -> {dice(after, gt):.4f}")
    assert after[:, :, k].any() and d_k >= 0.5
    assert dice(after, gt) > before
