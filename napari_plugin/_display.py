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
RANGE_LAYER = "sam-med box range"
#: below this predicted IoU the widget warns that the model is unsure
LOW_CONFIDENCE = 0.6


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


def show_axial(viewer, volume=None) -> None:
    """The scan's acquisition plane (axial for an axial CT): slider on the RAS axis closest to
    its slices' normal, anterior (or superior) up, the patient's right on the screen's left."""
    if viewer.dims.ndisplay == 2 and viewer.dims.ndim == 3:
        viewer.dims.order = L.view_order(volume) if volume is not None else L.AXIAL_ORDER
        try:
            scene = getattr(viewer, "scene", None)  # napari >= 0.9
            cam = scene.camera if scene is not None else viewer.camera
            cam.orientation2d = L.RADIOLOGICAL_2D
        except Exception:  # noqa: BLE001 - older napari: keep the default orientation
            pass


def make_layers(viewer, volume):
    """(Re)create the Labels, box Shapes, box-range Shapes and clicks Points layers on
    ``volume``'s grid. Returns ``(labels, shapes, range, points)``; all carry
    :func:`~._layers.layer_affine`, so their data are voxel coordinates (i, j, k)."""
    aff = L.layer_affine(volume)
    for name in (POINTS_LAYER, BOX_LAYER, RANGE_LAYER, LABELS_LAYER):
        if name in viewer.layers:
            viewer.layers.remove(name)
    labels = viewer.add_labels(np.zeros(volume.shape, np.uint8), **L.labels_layer_kwargs(volume, LABELS_LAYER))
    labels.opacity = 0.5
    rng = viewer.add_shapes(ndim=3, name=RANGE_LAYER, affine=aff, face_color="transparent", edge_width=0.8,
                            opacity=0.55)
    rng.editable = False
    shapes = viewer.add_shapes(ndim=3, name=BOX_LAYER, affine=aff, edge_color="yellow",
                               face_color="transparent", edge_width=2)
    points = viewer.add_points(ndim=3, name=POINTS_LAYER, affine=aff, size=7, face_color=POS_COLOR,
                               border_color="white", border_width=0.15)
    shapes.mode = "add_rectangle"
    return labels, shapes, rng, points


def object_rgba(obj) -> np.ndarray:
    return np.array([*[float(c) for c in obj.color[:3]], 1.0])


def box_rectangles(obj, axis: int) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """``obj``'s box as (its rectangle on the slice it was drawn on, the same rectangle on
    every other slice of its range), voxel vertices (4, 3); (None, []) without a box."""
    p = obj.prompts
    if p.key_box is not None:
        kb = p.key_box
        u, w = [d for d in range(3) if d != kb.axis]
        lo, hi = np.zeros(3), np.zeros(3)
        lo[u], lo[w], hi[u], hi[w] = kb.rect
        box, key, (z0, z1), axis = [*lo, *hi], int(kb.slice), kb.range, kb.axis
    elif p.box is not None:
        (lo, hi) = p.box.int_bounds()
        box, z0, z1 = [*lo, *hi], int(lo[axis]), int(hi[axis])
        key = (z0 + z1) // 2
    else:
        return None, []
    others = [L.box_to_rectangle(box, k, axis) for k in range(int(z0), int(z1) + 1) if k != key]
    return L.box_to_rectangle(box, key, axis), others


def show_prompts(c, obj, visible) -> None:
    """The prompt layers show the selected object's own prompts, in its colour: its box on
    the slice it was drawn on (thick), the box's slice range on the other slices (thin,
    "sam-med box range"), and its clicks (filled: adds; a cross: removes)."""
    positive = c.ui.positive_chk.isChecked()
    show_obj = obj is not None and obj.id in {o.id for o in visible}
    rgba = object_rgba(obj) if obj is not None else POS_COLOR
    p = obj.prompts if show_obj else None
    boxes = (id(c.shapes_layer), show_obj and obj.id, tuple(rgba), p and repr((p.box, p.key_box)))
    if boxes != getattr(c, "boxes_shown", None) or len(c.shapes_layer.data) != (p is not None and
                                                                              (p.box or p.key_box) is not None):
        c.boxes_shown = boxes  # rebuilding the Shapes layers costs tens of ms: only on a change
        key, others = box_rectangles(obj, c.volume.slice_axis) if show_obj else (None, [])
        for layer, rects, width in ((c.shapes_layer, [] if key is None else [key], 2.0),
                                    (c.range_layer, others, 0.8)):
            with layer.events.data.blocker():
                layer.selected_data = set()
                layer.data = []
                if rects:
                    layer.add_rectangles(rects, edge_color=rgba, edge_width=width, face_color="transparent")
            layer.current_edge_color = rgba
    pts = obj.prompts.points if show_obj else []
    layer = c.points_layer
    clicks = (id(layer), tuple(rgba), positive, tuple((tuple(q.ijk), q.positive) for q in pts))
    if clicks == getattr(c, "clicks_shown", None) and len(layer.data) == len(pts):
        return
    c.clicks_shown = clicks
    data = np.array([p.ijk for p in pts], dtype=float).reshape(-1, 3)
    with layer.events.data.blocker():
        layer.selected_data = set()
        layer.data = data
        if len(data):
            layer.face_color = np.array([rgba if p.positive else NEG_COLOR for p in pts]).reshape(-1, 4)
            layer.symbol = ["disc" if p.positive else "x" for p in pts]
            layer.border_color = np.array([POS_COLOR if p.positive else NEG_COLOR for p in pts]).reshape(-1, 4)
    layer.current_face_color = rgba if positive else NEG_COLOR
    layer.current_symbol = "disc" if positive else "x"
    layer.current_border_color = POS_COLOR if positive else NEG_COLOR


def confidence(obj) -> float | None:
    """The model's confidence in ``obj``'s mask: its mean predicted IoU over the object's slices
    (``PredictionInfo.confidence``); None when the predictor reports none or the object has no
    result (an imported mask)."""
    value = getattr(getattr(getattr(obj, "result", None), "info", None), "confidence", None)
    return None if value is None or obj.mask is None else float(value)


def show_objects(ui, session, current_id: int | None, hidden=(), volume=None) -> None:
    """Objects list (a check box shows/hides each; its volume in mL and the model's
    confidence), name, lock and overlap widgets, and the low-confidence warning."""
    warn = []
    with blocked(ui.objects_list, ui.lock_chk, ui.name_edit, ui.overlap_combo):
        ui.objects_list.clear()
        row = -1
        for n, o in enumerate(session.objects.values()):
            conf = confidence(o)
            text = f"{o.id}: {o.name}"
            if o.mask is not None and volume is not None:
                text += f"  {L.volume_ml(o.mask, volume):.1f} mL"
            if conf is not None:
                text += f"  confidence {conf:.2f}"
                if conf < LOW_CONFIDENCE:
                    text += "  ⚠ LOW"
                    warn.append(f"{o.name!r} ({conf:.2f})")
            if o.locked:
                text += "  [locked]"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.DecorationRole, QColor.fromRgbF(*o.color[:3]))
            item.setData(Qt.ItemDataRole.UserRole, int(o.id))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked if o.id in hidden else Qt.CheckState.Checked)
            item.setToolTip("tick: show this object; volume from the scan's voxel size; confidence: the "
                            "model's own estimate of its overlap with the true organ (0-1)")
            ui.objects_list.addItem(item)
            if o.id == current_id:
                row = n
        ui.objects_list.setCurrentRow(row)
        obj = session.objects.get(current_id)
        ui.lock_chk.setChecked(bool(obj and obj.locked))
        ui.name_edit.setText(obj.name if obj else "")
        ui.overlap_combo.setCurrentText(session.overlap)
    ui.warning_label.setText(
        f"⚠ The model is unsure about {', '.join(warn)}: check the mask slice by slice, add clicks "
        "or draw a tighter box." if warn else "")
    ui.warning_label.setVisible(bool(warn))


def show_labels(labels_layer, session, volume, model_name: str, ids=None, current_id=None):
    """The label map of ``ids`` (default all; overlap rule applied), object colours, and the
    metadata the writers use; the brush paints the selected object. Returns a copy of the
    map shown (what a brush stroke is compared with)."""
    if labels_layer is None or session is None:
        return None
    from napari.utils.colormaps import DirectLabelColormap

    objs = list(session.objects.values())
    shown = session.label_map(ids=ids)
    labels_layer.data = shown
    colors = L.label_colors(objs)
    if colors != labels_layer.metadata.get("sam_med_colors"):  # a new colormap re-uploads its texture
        labels_layer.colormap = DirectLabelColormap(color_dict=colors)
        labels_layer.metadata["sam_med_colors"] = colors
    if current_id is not None:
        labels_layer.selected_label = int(current_id)
    md = labels_layer.metadata
    md[L.VOLUME_KEY] = volume
    md["sam_med_segments"] = L.segments_for([o for o in objs if o.mask is not None and o.mask.any()])
    md["sam_med_algorithm"] = {
        "name": getattr(session.predictor, "model_name", None) or model_name,
        "checkpoint_sha256": getattr(session.predictor, "checkpoint_sha256", None),
    }
    labels_layer.refresh()
    return shown.copy()


def paint_update(labels_layer, update, oid: int, refresh: bool = True) -> None:
    """Paint one streamed slice ``(axis, k, plane)`` of object ``oid`` (or ``(None, None,
    mask3d)``, the whole mask) into the Labels layer at once, before the Session has the
    result (:func:`sam_med.predictors.streaming.paint`; the final :func:`show_labels`
    applies the overlap rule)."""
    from sam_med.predictors.streaming import paint

    if labels_layer is None:
        return
    paint(labels_layer.data, update, value=int(oid), background=0)
    if refresh:
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
