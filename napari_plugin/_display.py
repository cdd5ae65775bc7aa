"""Session → napari layers and widget state, on the GUI thread.

Functions of the widget (``ui``: a :class:`~._widget.SamMedWidget`, read through
its public child widgets) and of the plugin's three layers. Every update here
blocks the signals of what it changes, so showing the Session never fires a
handler back (no re-entrant ``on_*`` calls while syncing).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QListWidgetItem

from . import _layers as L

POS_COLOR = np.array([0.0, 0.9, 0.2, 1.0])
NEG_COLOR = np.array([1.0, 0.1, 0.1, 1.0])
BOX_LAYER = "sam-med box"
POINTS_LAYER = "sam-med clicks"
LABELS_LAYER = "sam-med labels"


@contextmanager
def blocked(*widgets):
    """Block the Qt signals of ``widgets`` inside the block."""
    old = [w.blockSignals(True) for w in widgets]
    try:
        yield
    finally:
        for w, was in zip(widgets, old):
            w.blockSignals(was)


def image_layers(viewer) -> list:
    """The viewer's 3D Image layers (the scans the widget can segment)."""
    from napari.layers import Image

    return [layer for layer in viewer.layers if isinstance(layer, Image) and layer.ndim == 3]


def refresh_image_choices(ui) -> None:
    """Fill the image combo with the viewer's 3D image layers, keeping the selection."""
    cur = ui.image_combo.currentText()
    names = [layer.name for layer in image_layers(ui.viewer)]
    with blocked(ui.image_combo):
        ui.image_combo.clear()
        ui.image_combo.addItems(names)
        if cur in names:
            ui.image_combo.setCurrentText(cur)


def show_axial(viewer) -> None:
    """Slider on S, rows A up, the patient's right on the screen's left (radiological)."""
    if viewer.dims.ndisplay == 2 and viewer.dims.ndim == 3:
        viewer.dims.order = L.AXIAL_ORDER
        try:
            scene = getattr(viewer, "scene", None)  # napari >= 0.9
            cam = scene.camera if scene is not None else viewer.camera
            cam.orientation2d = L.RADIOLOGICAL_2D
        except Exception:  # noqa: BLE001 - older napari: keep the default orientation
            pass


def make_layers(viewer, volume):
    """(Re)create the Labels, box Shapes and clicks Points layers on ``volume``'s grid.

    Returns ``(labels, shapes, points)``; all three carry ``volume.affine``, so their
    data are voxel coordinates (i, j, k) of the scan."""
    aff = np.asarray(volume.affine)
    for name in (POINTS_LAYER, BOX_LAYER, LABELS_LAYER):
        if name in viewer.layers:
            viewer.layers.remove(name)
    labels = viewer.add_labels(np.zeros(volume.shape, np.uint8), **L.labels_layer_kwargs(volume, LABELS_LAYER))
    labels.opacity = 0.5
    shapes = viewer.add_shapes(ndim=3, name=BOX_LAYER, affine=aff, edge_color="yellow",
                               face_color="transparent", edge_width=1.5)
    points = viewer.add_points(ndim=3, name=POINTS_LAYER, affine=aff, size=6, face_color=POS_COLOR,
                               border_color="white")
    shapes.mode = "add_rectangle"
    return labels, shapes, points


def set_click_color(points_layer, positive: bool) -> None:
    """The colour new points get (green positive, red negative)."""
    if points_layer is not None:
        # napari recolours the *selected* points with the current colour: select none first
        points_layer.selected_data = set()
        points_layer.current_face_color = POS_COLOR if positive else NEG_COLOR


def show_objects(ui, session, current_id: int | None) -> None:
    """Objects list, name, lock and overlap widgets from the Session."""
    with blocked(ui.objects_list, ui.lock_chk, ui.name_edit, ui.overlap_combo):
        ui.objects_list.clear()
        row = -1
        for n, o in enumerate(session.objects.values()):
            item = QListWidgetItem(f"{o.id}: {o.name}" + ("  [locked]" if o.locked else ""))
            item.setData(Qt.ItemDataRole.DecorationRole, QColor.fromRgbF(*o.color[:3]))
            ui.objects_list.addItem(item)
            if o.id == current_id:
                row = n
        ui.objects_list.setCurrentRow(row)
        obj = session.objects.get(current_id)
        ui.lock_chk.setChecked(bool(obj and obj.locked))
        ui.name_edit.setText(obj.name if obj else "")
        ui.overlap_combo.setCurrentText(session.overlap)


def show_points(points_layer, obj, positive: bool) -> None:
    """The clicks layer shows the current object's points, coloured by sign."""
    if points_layer is None:
        return
    pts = obj.prompts.points if obj is not None else []
    data = np.array([p.ijk for p in pts], dtype=float).reshape(-1, 3)
    colors = np.array([POS_COLOR if p.positive else NEG_COLOR for p in pts]).reshape(-1, 4)
    with points_layer.events.data.blocker():
        points_layer.selected_data = set()
        points_layer.data = data
        if len(data):
            points_layer.face_color = colors
    set_click_color(points_layer, positive)


def show_labels(labels_layer, session, volume, model_name: str) -> None:
    """The label map (overlap rule applied), object colours, and the metadata the writers use."""
    if labels_layer is None or session is None:
        return
    from napari.utils.colormaps import DirectLabelColormap

    objs = list(session.objects.values())
    labels_layer.data = session.label_map()
    labels_layer.colormap = DirectLabelColormap(color_dict=L.label_colors(objs))
    md = labels_layer.metadata
    md[L.VOLUME_KEY] = volume
    md["sam_med_segments"] = L.segments_for([o for o in objs if o.mask is not None and o.mask.any()])
    md["sam_med_algorithm"] = {
        "name": getattr(session.predictor, "model_name", None) or model_name,
        "checkpoint_sha256": getattr(session.predictor, "checkpoint_sha256", None),
    }
    labels_layer.refresh()


def paint_update(labels_layer, update, oid: int) -> None:
    """Paint one streamed slice ``(axis, k, plane)`` of object ``oid`` (or ``(None, None,
    mask3d)``, the whole mask) into the Labels layer at once, before the Session has the
    result (:func:`sam_med.predictors.streaming.paint`; the final :func:`show_labels`
    applies the overlap rule)."""
    from sam_med.predictors.streaming import paint

    if labels_layer is None:
        return
    paint(labels_layer.data, update, value=int(oid), background=0)
    labels_layer.refresh()


def set_enabled(ui, busy: bool, session, has_object: bool, prompt_layers) -> None:
    """Lock every control while ``busy`` (Cancel only); else enable what the state allows."""
    for w in ui.lockable:
        w.setEnabled(not busy)
    ui.cancel_btn.setEnabled(busy)
    if not busy:
        for w in ui.object_controls:
            w.setEnabled(has_object)
        ui.undo_btn.setEnabled(session is not None and session.can_undo)
        ui.redo_btn.setEnabled(session is not None and session.can_redo)
        ui.save_labels_btn.setEnabled(session is not None)
        ui.save_session_btn.setEnabled(session is not None)
    for layer in prompt_layers:
        if layer is not None:
            layer.editable = not busy
