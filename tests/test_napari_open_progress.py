"""napari widget, issue #29 problems 3-7, driven as a user would (File > Open Folder...,
the widget's buttons and combo, closing the window), under Xvfb:

3. a DICOM folder opens with the sam-med reader (napari's reader dialog has it checked
   first; once the widget ran, napari picks it without asking), in the axial view; the
   reader refuses FIFOs and folders without DICOM; a layer without geometry is refused;
4. switching the scan keeps each scan's session; closing the viewer while a worker runs
   cancels and waits for it; Delete says how to undo it;
5. progress: slices done / total and the time left while segmenting;
6. volumes in mL, the model's confidence with a warning when low, show / hide per object.
"""

from __future__ import annotations

import os
import re
import threading

import numpy as np
import pytest

from test_napari_objects_edits import BoxFill, rect, segment, shot, show_slice
from test_napari_widget import SlowFakePredictor, _open, _widget, wait_until
from test_napari_widget import ct_path, viewer  # noqa: F401 - fixtures

pytestmark = pytest.mark.napari


@pytest.fixture
def dicom_dir(data_dir):
    return str(data_dir / "totalseg" / "example_ct_dicom")


def _open_folder_menu(viewer, monkeypatch, folder):
    """File > Open Folder... with the folder chosen in the file dialog; returns the reader
    choices the reader dialog offered (its checked one first), [] when it did not appear."""
    from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog  # the dialog napari shows
    from qtpy.QtWidgets import QFileDialog

    offered = []

    def accept_default(dialog):
        buttons = dialog.reader_btn_group.buttons()
        offered.extend([dialog.reader_btn_group.checkedButton().text()] + [b.text() for b in buttons])
        return 1  # the user presses OK on what is checked

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: folder)
    monkeypatch.setattr(QtReaderDialog, "exec_", accept_default)
    action = next(a for a in viewer.window.file_menu.actions() if a.text().startswith("Open Folder"))
    action.trigger()
    return offered


def test_dicom_folder_opens_with_sam_med_in_the_axial_view(viewer, dicom_dir, monkeypatch):
    from napari.settings import get_settings
    from sam_med.volume import Volume

    get_settings().plugins.extension2reader = {}  # a fresh napari: no reader preference yet
    offered = _open_folder_menu(viewer, monkeypatch, dicom_dir)
    assert offered[0] == "SAM-med for CT and MR scans", offered  # checked first in napari's dialog
    layer = viewer.layers[-1]
    vol = layer.metadata["sam_med_volume"]
    assert isinstance(vol, Volume) and vol.dicom is not None and vol.shape[2] == 20
    assert not np.allclose(layer.affine.affine_matrix, np.eye(4))  # real geometry, not a stack
    viewer.layers.clear()
    w = _widget(viewer, lambda *key: BoxFill())  # the widget records napari's reader preference
    assert get_settings().plugins.extension2reader.get("*/") == "sam-med"
    offered = _open_folder_menu(viewer, monkeypatch, dicom_dir)
    assert offered == []  # no dialog this time: napari picks sam-med
    layer = next(la for la in viewer.layers if "sam_med_volume" in la.metadata and la.ndim == 3)
    vol = layer.metadata["sam_med_volume"]
    assert viewer.dims.order == (2, 1, 0) and viewer.dims.ndisplay == 2  # axial at once (slider on S)
    assert w.image_combo.currentText() == layer.name
    viewer.open(dicom_dir, plugin=None)  # the scripted path: sam-med too
    assert "sam_med_volume" in viewer.layers[-1].metadata
    viewer.layers.remove(viewer.layers[-1])
    show_slice(viewer, vol, 10)
    viewer.reset_view()
    shot(viewer, "napari_dicom_open_folder.png")


def test_reader_claims_only_what_it_reads_and_never_blocks_on_a_fifo(tmp_path, dicom_dir):
    from sam_med_napari._reader import napari_get_reader

    fifo = tmp_path / "scan.nii.gz"
    os.mkfifo(fifo)
    (tmp_path / "pngs").mkdir()
    (tmp_path / "pngs" / "a.png").write_bytes(b"\x89PNG\r\n")
    os.mkfifo(tmp_path / "pngs" / "b.dcm")
    got = {}
    t = threading.Thread(target=lambda: got.update(
        fifo=napari_get_reader(str(fifo)), pngs=napari_get_reader(str(tmp_path / "pngs")),
        dicom=napari_get_reader(dicom_dir), dev=napari_get_reader("/dev/zero")), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the reader blocked"
    assert got["fifo"] is None and got["pngs"] is None and got["dev"] is None
    assert callable(got["dicom"])


def test_a_layer_without_geometry_is_refused_with_one_line(viewer):
    viewer.add_image(np.zeros((6, 16, 16), np.float32), name="stack")
    w = _widget(viewer, lambda *key: BoxFill())
    w.controls.on_segment()
    assert w.status.text() == ("'stack' has no scan geometry (spacing, orientation): open the scan with "
                               "sam-med (File > Open Folder... or Open File(s)..., reader 'sam-med')")
    assert w.controls.session is None and "sam-med labels" not in viewer.layers


def _two_blobs(viewer):
    from _helpers import blob_volume
    from sam_med_napari._layers import image_layer_data

    for name, seed in (("scan A", 0), ("scan B", 1)):
        data, kw, _ = image_layer_data(blob_volume(seed=seed)[0], name)
        viewer.add_image(data, **kw)


def test_switching_the_scan_keeps_each_session_and_delete_is_undoable(viewer):
    _two_blobs(viewer)
    w = _widget(viewer, lambda *key: BoxFill())
    c = w.controls
    w.image_combo.setCurrentText("scan A")
    a = c.on_add_object("A's organ")
    w.half_spin.setValue(2)
    c.shapes_layer.add_rectangles(rect(10, 10, 30, 30, 6))
    segment(c)
    session_a, mask_a = c.session, c.session.get(a).mask
    w.image_combo.setCurrentText("scan B")  # the user switches: nothing is asked, nothing lost
    assert c.session is not session_a and not c.session.objects
    assert not np.asarray(c.labels_layer.data).any()
    c.on_add_object("B's organ")
    w.image_combo.setCurrentText("scan A")
    assert c.session is session_a and c.current_id == a and c.session.get(a).mask is mask_a
    assert np.array_equal(np.asarray(c.labels_layer.data) == a, mask_a) and len(c.shapes_layer.data) == 1
    c.on_delete_object()
    assert a not in c.session.objects
    assert w.status.text().startswith("deleted \"A's organ\"") and "Undo (Ctrl+Z) brings it back" in w.status.text()
    c.on_undo()
    assert c.session.get(a).mask is mask_a


def test_closing_the_viewer_while_encoding_cancels_and_joins_the_worker(make_napari_viewer, ct_path):
    from qtpy.QtCore import QThreadPool

    v = make_napari_viewer(show=True)
    _open(v, ct_path)
    fake = SlowFakePredictor(steps=400, dt=0.05)
    w = _widget(v, lambda *key: fake)
    w.controls.on_prepare_all()
    wait_until(lambda: fake.done >= 3, 20, "encoding started")
    v.close()  # the user closes the window mid-encoding
    assert w.controls.closed and w.controls.token.cancelled
    assert QThreadPool.globalInstance().activeThreadCount() == 0  # nothing outlives the window
    assert fake.done < fake.steps


def test_progress_shows_slices_done_of_total_and_the_time_left(viewer, ct_path):
    layers = _open(viewer, ct_path)
    vol = layers[0].metadata["sam_med_volume"]
    fake = BoxFill(dt=0.08)
    w = _widget(viewer, lambda *key: fake)
    c = w.controls
    w.half_spin.setValue(14)
    c.on_add_object("long organ")
    show_slice(viewer, vol, 15)
    c.shapes_layer.add_rectangles(rect(20, 20, 60, 60, 15))
    seen, shots = [], []

    def record(_):
        seen.append(w.progress_label.text())
        m = re.match(r"segmenting slices (\d+)/(\d+)", seen[-1])
        if m and int(m.group(1)) >= 12 and not shots:
            shots.append(1)
            shot(viewer, "napari_progress.png")

    c.on_segment()
    c.worker.yielded.connect(record)
    wait_until(lambda: not c.busy, 60, "segment")
    assert c.last_error is None, c.last_error
    counts = [tuple(map(int, m.groups())) for m in (re.match(r"segmenting slices (\d+)/(\d+)", s) for s in seen) if m]
    assert counts and {t for _, t in counts} == {29}  # 15 ± 14 slices
    assert any(re.fullmatch(r"segmenting slices \d+/29, about \d+ s left", s) for s in seen), seen
    assert len(seen) > len(set(seen)) or len(set(seen)) < 29  # throttled, not one repaint per report
    assert w.progress_label.text().startswith("Segment: done in")


def test_progress_meter_eta_and_throttle():
    from sam_med_napari._progress import ProgressMeter

    t = [0.0]
    m = ProgressMeter(clock=lambda: t[0])
    assert m.update(0, 40, "encode") and m.text() == "encoding slices 0/40, estimating time left…"
    t[0] = 0.05
    assert not m.update(1, 40, "encode")  # within 0.1 s of the last repaint
    t[0] = 2.0
    assert m.update(10, 40, "encode") and m.text() == "encoding slices 10/40, about 6 s left"
    assert m.percent == 25
    t[0] = 2.5
    assert m.update(1, 30, "propagate") and m.text() == "segmenting slices 1/30, estimating time left…"
    assert m.update(30, 30, "propagate") and m.text() == "segmenting slices 30/30, done"


def test_volumes_in_ml_confidence_warning_and_show_hide(viewer, ct_path, tmp_path):
    import nibabel as nib

    layers = _open(viewer, ct_path)
    vol = layers[0].metadata["sam_med_volume"]
    fake = BoxFill(iou=0.35)
    w = _widget(viewer, lambda *key: fake)
    c = w.controls
    w.half_spin.setValue(2)
    a = c.on_add_object("brain")
    c.shapes_layer.add_rectangles(rect(20, 20, 40, 40, 12))
    segment(c)
    voxel_ml = abs(np.linalg.det(vol.affine[:3, :3])) / 1000.0
    ml = c.session.get(a).mask.sum() * voxel_ml
    text = w.objects_list.item(0).text()
    assert f"{ml:.1f} mL" in text and "confidence 0.35  ⚠ LOW" in text, text
    assert w.warning_label.isVisible() and "unsure about 'brain' (0.35)" in w.warning_label.text()
    assert w.status.text().startswith(f"brain: {ml:.1f} mL")
    fake.iou = 0.9
    b = c.on_add_object("kidney")
    c.shapes_layer.add_rectangles(rect(60, 60, 70, 70, 12))
    segment(c)
    assert "confidence 0.90" in w.objects_list.item(1).text()
    from qtpy.QtCore import Qt

    w.objects_list.item(0).setCheckState(Qt.CheckState.Unchecked)  # hide the brain
    assert a in c.hidden and not (np.asarray(c.labels_layer.data) == a).any()
    assert (np.asarray(c.labels_layer.data) == b).any()
    saved = np.asarray(nib.load(w.files.on_save_labels(str(tmp_path / "l.nii.gz"))).dataobj)
    assert (saved == a).sum() == c.session.get(a).mask.sum()  # hiding is display only
    assert "Shift+S segment" in w.shortcuts_label.text() and "Shift+N next object" in w.shortcuts_label.text()
    for b_ in (w.prepare_btn, w.prepare_all_btn, w.segment_btn, w.tight_chk, w.overlap_combo, w.positive_chk):
        assert b_.toolTip()
    c.on_next_object()
    assert c.current_id == a
