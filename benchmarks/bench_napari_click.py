"""Click latency in napari, through the widget's own handler (issue #29, item 7).

A real napari viewer (run under ``xvfb-run -a`` without a display), the sam-med reader,
the widget with the default model (LiteMedSAM), "Encode whole scan", a key-slice box on an
organ's middle slice (Segment), then ``--clicks`` corrective clicks, each added to the
widget's "sam-med clicks" layer as a click in the canvas adds it (``Points.add`` → the
widget's ``on_points_changed`` → worker → ``on_segmented``). Each click is timed from the
add to (a) the clicked slice painted in the Labels layer and (b) the controls unlocked with
the whole mask shown. The same clicks are then replayed on a plain
:class:`~sam_med.session.Session` (``add_point``, same predictor and embeddings) for the
library's own time. Clicks follow the CVPR25 rule (the largest error's deepest voxel) on
the reference mask; every slice is encoded first, as the issue asks (clicks on encoded
slices).

Usage::

    xvfb-run -a python benchmarks/bench_napari_click.py [SCAN] [--labels SEG] [--label 1]
        [--clicks 8] [--json out.json] [--screenshot-dir docs/img]

Prints the CPU flags, the load average, and median / p90 per path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_click_latency import cpu_flags  # noqa: E402  (one cpu-flags reader for the benchmarks)
DATA = HERE.parent.parent / "shared" / "data" / "totalseg"


def wait(cond, timeout=600.0):
    from qtpy.QtWidgets import QApplication

    t0 = time.perf_counter()
    while not cond():
        QApplication.processEvents()
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("timed out")
        time.sleep(0.002)
    QApplication.processEvents()


def stats(xs) -> str:
    a = np.asarray(xs, dtype=float) * 1000
    return f"median {np.median(a):8.1f} ms   p90 {np.percentile(a, 90):8.1f} ms   max {a.max():8.1f} ms   (n={a.size})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scan", nargs="?", default=str(DATA / "example_ct_sm.nii.gz"))
    ap.add_argument("--labels", default=str(DATA / "example_seg.nii.gz"))
    ap.add_argument("--label", type=int, default=1, help="reference label of the organ (1: spleen)")
    ap.add_argument("--clicks", type=int, default=8)
    ap.add_argument("--model", default="lite_medsam")
    ap.add_argument("--json")
    ap.add_argument("--screenshot-dir")
    a = ap.parse_args(argv)
    if a.clicks < 1:
        print("bench_napari_click: --clicks must be >= 1", file=sys.stderr)
        return 2
    for p in (a.scan, a.labels):
        if not os.path.exists(p):
            print(f"bench_napari_click: {p}: not found", file=sys.stderr)
            return 2
    import napari
    from sam_med import io
    from sam_med.evaluation.protocols import corrective_click
    from sam_med.session import Session
    from sam_med_napari._layers import box_to_rectangle
    from sam_med_napari._widget import SamMedWidget

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    layer = viewer.open(a.scan, plugin="sam-med")[0]
    vol = layer.metadata["sam_med_volume"]
    ref = io.load_label(a.labels, like=vol).array == a.label
    w = SamMedWidget(viewer)
    viewer.window.add_dock_widget(w, name="sam-med", area="right")
    w.model_combo.setCurrentText(a.model)
    w.ahead_spin.setValue(0)
    c = w.controls
    t = time.perf_counter()
    c.on_prepare_all()
    wait(lambda: not c.busy)
    if c.last_error is not None:
        print(f"bench_napari_click: {c.last_error}", file=sys.stderr)
        return 1
    t_encode = time.perf_counter() - t
    idx = np.argwhere(ref)
    lo, hi = idx.min(0), idx.max(0)
    mid = int((lo[2] + hi[2]) // 2)
    w.half_spin.setValue(int(max(mid - lo[2], hi[2] - mid)))
    viewer.dims.set_point(2, float(vol.voxel_to_world([0, 0, mid])[2]))
    oid = c.current_id if c.current_id is not None else c.on_add_object()  # Encode whole scan made one
    c.on_rename("spleen" if a.label == 1 else f"label {a.label}")
    c.shapes_layer.add_rectangles(box_to_rectangle([*lo, *hi], mid, axis=2))
    t = time.perf_counter()
    c.on_segment()
    wait(lambda: not c.busy)
    t_segment = time.perf_counter() - t
    box_prompts = c.session.get(oid).prompts.copy()
    first, done, clicks = [], [], []
    for n in range(a.clicks):
        nc = corrective_click(c.session.get(oid).mask, ref)  # the protocols' click: centre of the largest error
        if nc is None:
            break
        ijk, positive = nc.ijk, nc.positive
        w.positive_chk.setChecked(positive)
        stamp = {}
        t0 = time.perf_counter()
        c.points_layer.add(np.array([ijk], float))
        if c.worker is not None:
            c.worker.yielded.connect(lambda p: stamp.setdefault("first", time.perf_counter())
                                     if isinstance(p, tuple) else None)
        wait(lambda: not c.busy)
        t1 = time.perf_counter()
        if c.last_error is not None:
            print(f"bench_napari_click: click {n}: {c.last_error}", file=sys.stderr)
            return 1
        first.append(stamp.get("first", t1) - t0)
        done.append(t1 - t0)
        clicks.append((tuple(int(v) for v in ijk), positive))
    if a.screenshot_dir:
        viewer.reset_view()
        img = viewer.screenshot(canvas_only=False, flash=False)
        import imageio.v3 as iio

        iio.imwrite(Path(a.screenshot_dir) / "napari_click_bench.png", img)
    # the same clicks on a plain Session (same predictor, embeddings cached)
    s = Session(vol, c.predictor)
    sid = s.add_object("organ").id
    s.set_prompts(sid, box_prompts)
    lib = []
    for ijk, positive in clicks:
        t0 = time.perf_counter()
        s.add_point(sid, ijk, positive)
        lib.append(time.perf_counter() - t0)
    same = np.array_equal(s.get(sid).mask, c.session.get(oid).mask)
    out = {"cpu_flags": cpu_flags(), "loadavg": os.getloadavg(), "scan": a.scan, "shape": vol.shape,
           "encode_s": t_encode, "segment_s": t_segment, "clicks": clicks,
           "napari_first_slice_s": first, "napari_done_s": done, "session_add_point_s": lib,
           "same_final_mask": bool(same)}
    print(f"cpu flags: {out['cpu_flags']}")
    print(f"load average: {' '.join(f'{x:.1f}' for x in out['loadavg'])}")
    print(f"scan {vol.shape}, encode whole scan {t_encode:.1f} s, segment {t_segment:.1f} s, {len(clicks)} clicks")
    print(f"napari click → clicked slice painted : {stats(first)}")
    print(f"napari click → whole mask shown      : {stats(done)}")
    print(f"Session.add_point (same clicks)       : {stats(lib)}")
    print(f"same final mask in napari and in the Session: {same}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=float))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
