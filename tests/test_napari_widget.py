"""napari plugin GUI tests (real napari + Qt under Xvfb/Mesa; skipped when either is missing).

Run: ``scripts/setup_napari_ci.sh && xvfb-run -a pytest tests/test_napari_widget.py`` (this
module also starts its own Xvfb when ``DISPLAY`` is unset and ``Xvfb`` is installed).
One module-scoped viewer + session runs the real LiteMedSAM once (embeddings cached on
disk under pytest's cache dir); the responsiveness/cancel tests use a slow fake predictor.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("qtpy")

pytestmark = pytest.mark.napari

_XVFB: subprocess.Popen | None = None


def _ensure_display() -> None:
    """Use $DISPLAY, else start Xvfb; skip when neither is possible."""
    global _XVFB
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        # offscreen has no OpenGL here, napari's canvas cannot draw there
        os.environ.pop("QT_QPA_PLATFORM")
    if os.environ.get("DISPLAY"):
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("no X display and no Xvfb (run scripts/setup_napari_ci.sh, or xvfb-run -a pytest)")
    r, w = os.pipe()
    _XVFB = subprocess.Popen([xvfb, "-displayfd", str(w), "-screen", "0", "1600x1000x24", "-nolisten", "tcp", "-terminate"],
                             pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    num = b""
    t0 = time.time()
    while not num.endswith(b"\n") and time.time() - t0 < 10:
        chunk = os.read(r, 16)
        if not chunk:
            break
        num += chunk
    os.close(r)
    if not num.strip():
        _XVFB.kill()
        pytest.skip("Xvfb did not start")
    os.environ["DISPLAY"] = f":{num.strip().decode()}"


def wait_until(cond, timeout: float = 300.0, what: str = "condition") -> float:
    from qtpy.QtWidgets import QApplication

    t0 = time.perf_counter()
    while not cond():
        QApplication.processEvents()
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{what} not reached in {timeout:.0f} s")
        time.sleep(0.01)
    QApplication.processEvents()
    return time.perf_counter() - t0


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * (a & b).sum() / max(1, a.sum() + b.sum())


@pytest.fixture(scope="module")
def viewer():
    _ensure_display()
    try:
        v = napari.Viewer(show=True)
    except Exception as exc:  # noqa: BLE001 - no GL context / no display → skip, not fail
        pytest.skip(f"cannot start a napari viewer here: {exc}")
    v.window._qt_window.resize(1500, 950)
    yield v
    v.close()
    # our Xvfb (if any) runs with -terminate: it exits when the last client (Qt) disconnects


@pytest.fixture(scope="module")
def ct_path(data_dir):
    return str(data_dir / "totalseg" / "example_ct_sm.nii.gz")


@pytest.fixture(scope="module")
def gt_liver(data_dir):
    import nibabel as nib

    return np.asarray(nib.load(str(data_dir / "totalseg" / "example_seg.nii.gz")).dataobj) == 5


class SlowFakePredictor:
    """Sleeps in prepare (40 × 50 ms) and reports progress: a stand-in for a slow encoder."""

    model_name = "fake"

    def __init__(self, steps=40, dt=0.05):
        self.steps, self.dt, self.done = steps, dt, 0

    def prepare(self, volume, progress=None):
        for n in range(self.steps):
            time.sleep(self.dt)
            self.done = n + 1
            if progress:
                progress(n + 1, self.steps, "encode")

    def predict(self, volume, prompts, previous=None, progress=None):
        from sam_med.session import PredictionResult

        m = np.zeros(volume.shape, bool)
        lo, hi = prompts.box.int_bounds()
        m[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = True
        return PredictionResult(mask=m)


def _open(viewer, path):
    from sam_med_napari._reader import napari_get_reader

    viewer.layers.clear()
    layers = []
    for data, kw, kind in napari_get_reader(path)(path):
        layers.append(getattr(viewer, f"add_{kind}")(data, **kw))
    return layers


def _widget(viewer):
    from sam_med_napari._widget import SamMedWidget

    viewer.window.remove_dock_widget("all")
    w = SamMedWidget(viewer)
    viewer.window.add_dock_widget(w, name="sam-med", area="right")
    return w


def test_prepare_keeps_gui_responsive_and_cancels(viewer, ct_path):
    from qtpy.QtCore import QTimer

    _open(viewer, ct_path)
    w = _widget(viewer)
    fake = SlowFakePredictor()
    w.predictor_factory = lambda *key: fake
    ticks = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    w._on_prepare()
    assert w.busy and not w.prepare_btn.isEnabled() and w.cancel_btn.isEnabled()
    seconds = wait_until(lambda: not w.busy, 30, "prepare")
    timer.stop()
    assert fake.done == fake.steps and w.progress.value() == 100
    # >= 2 s of work: a blocked GUI thread would fire the timer at most once, after the work.
    # Software GL (Mesa llvmpipe) on a loaded machine repaints slowly, hence loose bounds.
    assert seconds >= 1.5 and len(ticks) >= 5, (len(ticks), seconds)
    gaps = np.diff(ticks)
    assert gaps.max() < 0.5 * seconds, f"GUI thread stalled for {gaps.max():.2f} s"
    print(f"\nprepare {seconds:.2f} s: {len(ticks)} timer ticks, longest gap {gaps.max() * 1000:.0f} ms")

    # Cancel: the progress callback raises, the worker ends, controls come back
    fake.done = 0
    w._on_prepare()
    wait_until(lambda: fake.done >= 5, 10, "some progress")
    w._on_cancel()
    wait_until(lambda: not w.busy, 10, "cancel")
    assert fake.done < fake.steps
    assert "cancelled" in w.status.text() and w.prepare_btn.isEnabled()


def test_objects_overlap_undo_redo_and_session_roundtrip(viewer, ct_path, tmp_path):
    _open(viewer, ct_path)
    w = _widget(viewer)
    w.predictor_factory = lambda *key: SlowFakePredictor(steps=1, dt=0)
    a = w._on_add_object("a")
    w.shapes_layer.add_rectangles(np.array([[10, 10, 5], [10, 40, 5], [40, 40, 5], [40, 10, 5]], float))
    w.half_spin.setValue(2)
    w._on_segment()
    wait_until(lambda: not w.busy, 20)
    assert w.session.get(a).prompts.box.to_json() == [10, 10, 3, 40, 40, 7]
    b = w._on_add_object("b")
    w.shapes_layer.add_rectangles(np.array([[30, 30, 6], [30, 60, 6], [60, 60, 6], [60, 30, 6]], float))
    w._on_segment()
    wait_until(lambda: not w.busy, 20)
    lab = np.asarray(w.labels_layer.data)
    assert lab[35, 35, 6] == b  # overlap "last": later object wins
    w.overlap_combo.setCurrentText("first")
    assert np.asarray(w.labels_layer.data)[35, 35, 6] == a
    w._on_rename("kidney")
    w._on_color((1.0, 0.0, 1.0))
    w.lock_chk.setChecked(True)
    assert w.session.get(b).name == "kidney" and w.session.get(b).locked
    assert np.allclose(w.labels_layer.colormap.map(np.array([b]))[0][:3], [1, 0, 1])
    # Ctrl+Z / Ctrl+Shift+Z are bound to the same handlers
    w._on_undo()
    assert not w.session.get(b).locked
    w._on_redo()
    assert w.session.get(b).locked
    path = w._on_save_session(str(tmp_path / "s.npz"))
    before = np.asarray(w.labels_layer.data).copy()
    w._on_delete_object()
    assert b not in w.session.objects
    w._on_load_session(path)
    assert [o.name for o in w.session.objects.values()] == ["a", "kidney"]
    assert np.array_equal(np.asarray(w.labels_layer.data), before)


@pytest.fixture(scope="module")
def liver_run(viewer, ct_path, gt_liver, request):
    """Real LiteMedSAM on the CT: reader → widget → 3D box on the liver → mask."""
    layers = _open(viewer, ct_path)
    w = _widget(viewer)
    w.cache_dir = str(request.config.cache.mkdir("sam_med_embeddings"))
    vol = layers[0].metadata["sam_med_volume"]
    idx = np.argwhere(gt_liver)
    lo, hi = idx.min(0), idx.max(0)
    w._on_prepare()
    t_prep = wait_until(lambda: not w.busy, 600, "prepare")
    assert w.last_error is None, w.last_error
    # the rectangle is drawn on the middle slice, the z-range is marked on two slices (Mark A/B)
    mid = int((lo[2] + hi[2]) // 2)
    viewer.dims.set_point(2, float(vol.voxel_to_world([0, 0, lo[2]])[2]))
    w._on_mark_a()
    viewer.dims.set_point(2, float(vol.voxel_to_world([0, 0, hi[2]])[2]))
    w._on_mark_b()
    viewer.dims.set_point(2, float(vol.voxel_to_world([0, 0, mid])[2]))
    from sam_med_napari._layers import box_to_rectangle

    w.shapes_layer.add_rectangles(box_to_rectangle([*lo, *hi], mid, axis=2))
    assert w.box_from_layers() == [float(c) for c in (*lo, *hi)]
    w._on_segment()
    t_seg = wait_until(lambda: not w.busy, 600, "segment")
    assert w.last_error is None, w.last_error
    return {"widget": w, "volume": vol, "t_prepare": t_prep, "t_segment": t_seg,
            "mask": np.asarray(w.labels_layer.data).copy(), "image": layers[0]}


def test_liver_box_dice(liver_run, gt_liver):
    w, vol = liver_run["widget"], liver_run["volume"]
    lab = w.labels_layer
    # same grid in world space: the Labels layer carries the scan's affine
    assert np.allclose(lab.affine.affine_matrix, vol.affine)
    assert np.allclose(liver_run["image"].affine.affine_matrix, vol.affine)
    d = dice(liver_run["mask"] == w.current_id, gt_liver)
    print(f"\nliver Dice {d:.4f} (prepare {liver_run['t_prepare']:.1f} s, segment {liver_run['t_segment']:.1f} s)")
    assert d >= 0.85


def test_negative_click_lowers_false_positives_and_undo_is_exact(liver_run, gt_liver):
    from scipy import ndimage

    w = liver_run["widget"]
    before = np.asarray(w.labels_layer.data).copy()
    pred = before == w.current_id
    fp = pred & ~gt_liver
    assert fp.any(), "no false positives to correct"
    # the slice with the most false positives; click deep inside its largest FP blob
    k = int(np.argmax(fp.sum(axis=(0, 1))))
    lab2, n = ndimage.label(fp[:, :, k])
    sizes = ndimage.sum(fp[:, :, k], lab2, range(1, n + 1))
    blob = lab2 == (1 + int(np.argmax(sizes)))
    depth = ndimage.distance_transform_edt(blob)
    i, j = np.unravel_index(int(np.argmax(depth)), depth.shape)
    w.positive_chk.setChecked(False)  # the "T" key toggles this box
    w.points_layer.add(np.array([[i, j, k]], float))  # what a click in the layer does
    assert w.busy  # refinement started in a worker from the layer event
    wait_until(lambda: not w.busy, 300, "refine")
    assert w.last_error is None, w.last_error
    after = np.asarray(w.labels_layer.data) == w.current_id
    fp0, fp1 = int(fp.sum()), int((after & ~gt_liver).sum())
    d0, d1 = dice(pred, gt_liver), dice(after, gt_liver)
    print(f"\nnegative click at {(i, j, k)}: FP {fp0} -> {fp1} voxels, Dice {d0:.4f} -> {d1:.4f}")
    assert fp1 < fp0
    assert not w.session.get(w.current_id).prompts.points[-1].positive
    w._on_undo()
    assert np.array_equal(np.asarray(w.labels_layer.data), before)
    assert len(w.points_layer.data) == 0
    w._on_redo()
    assert np.array_equal(np.asarray(w.labels_layer.data) == w.current_id, after)


def test_one_click_object_without_box(liver_run, data_dir):
    """A new object from a single positive click (no box): the predictor searches the box
    on the clicked slice; the spleen comes out whole and the liver object is untouched."""
    import nibabel as nib
    from scipy import ndimage

    w = liver_run["widget"]
    liver_id = w.current_id
    liver_before = np.asarray(w.labels_layer.data) == liver_id
    gt_spleen = np.asarray(nib.load(str(data_dir / "totalseg" / "example_seg.nii.gz")).dataobj) == 1
    k = int(np.argmax(gt_spleen.sum(axis=(0, 1))))
    depth = ndimage.distance_transform_edt(gt_spleen[:, :, k])
    i, j = np.unravel_index(int(np.argmax(depth)), depth.shape)
    sid = w._on_add_object("spleen")
    w.positive_chk.setChecked(True)
    w.points_layer.add(np.array([[i, j, k]], float))
    wait_until(lambda: not w.busy, 300, "one-click segment")
    assert w.last_error is None, w.last_error
    labels = np.asarray(w.labels_layer.data)
    d = dice(labels == sid, gt_spleen)
    print(f"\nspleen from one click at {(i, j, k)}: Dice {d:.4f}")
    assert d >= 0.85  # measured 0.96 (SAM's point decode as the seed: 0.94 here, 0.06 on lesions)
    assert np.array_equal(labels == liver_id, liver_before & ~(labels == sid))
    w._on_undo()
    assert not (np.asarray(w.labels_layer.data) == sid).any()
    w._on_redo()


def test_writer_nifti_back_on_scan_grid(liver_run, tmp_path):
    import nibabel as nib

    w, vol = liver_run["widget"], liver_run["volume"]
    out = w._on_save_labels(str(tmp_path / "liver.nii.gz"))
    img = nib.load(out)
    assert img.shape == vol.shape and np.allclose(img.affine, vol.affine, atol=1e-4)
    assert np.array_equal(np.asarray(img.dataobj), np.asarray(w.labels_layer.data))


def test_screenshot(liver_run, request):
    from pathlib import Path

    w, viewer = liver_run["widget"], liver_run["widget"].viewer
    w.positive_chk.setChecked(True)
    k = int(np.argmax((np.asarray(w.labels_layer.data) > 0).sum(axis=(0, 1))))
    viewer.dims.set_point(2, float(liver_run["volume"].voxel_to_world([0, 0, k])[2]))
    viewer.layers.selection.active = w.points_layer
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
