"""napari plugin reader/writer/layer geometry — no Qt and no napari needed (pure functions)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sam_med.volume import Volume, apply_affine

try:
    import sam_med_napari._layers as L
except ImportError as exc:  # the plugin package is installed with sam-med (setup.py)
    if os.environ.get("SAM_MED_REQUIRE_NAPARI") == "1":
        raise
    pytest.skip(f"sam_med_napari not importable: {exc}", allow_module_level=True)


@pytest.fixture(scope="module")
def ct_path(data_dir):
    return str(data_dir / "totalseg" / "example_ct_sm.nii.gz")


def test_reader_nifti_world_is_ras(ct_path):
    import nibabel as nib

    from sam_med_napari._reader import napari_get_reader

    reader = napari_get_reader(ct_path)
    assert reader is not None
    (data, kw, kind), = reader(ct_path)
    img = nib.load(ct_path)
    assert kind == "image" and data.shape == img.shape
    # the layer's data->world matrix is nibabel's voxel->RAS affine, as is
    assert np.allclose(kw["affine"], img.affine, atol=1e-5)
    assert kw["contrast_limits"] == (-160.0, 240.0)  # CT soft tissue W400/L40
    assert kw["name"] == "example_ct_sm"
    assert isinstance(kw["metadata"][L.VOLUME_KEY], Volume)


def test_reader_dicom_folder_name_and_geometry(data_dir):
    import SimpleITK as sitk

    from sam_med_napari._reader import napari_get_reader

    folder = str(data_dir / "totalseg" / "example_ct_dicom")
    layers = napari_get_reader(folder)(folder)
    assert len(layers) >= 1
    data, kw, kind = layers[0]
    vol = kw["metadata"][L.VOLUME_KEY]
    # independent check with SimpleITK (LPS): voxel (i, j, k) -> LPS, flip to RAS
    r = sitk.ImageSeriesReader()
    files = r.GetGDCMSeriesFileNames(folder)
    r.SetFileNames(files)
    ref = r.Execute()
    for ijk in ([0, 0, 0], [5, 7, 3], [data.shape[0] - 1, data.shape[1] - 1, data.shape[2] - 1]):
        lps = np.array(ref.TransformIndexToPhysicalPoint([int(c) for c in ijk]))
        ras = lps * [-1, -1, 1]
        assert np.allclose(apply_affine(kw["affine"], ijk), ras, atol=1e-3)
    assert vol.dicom is not None and kw["name"] == (vol.dicom.series_description or kw["name"])


def test_mr_percentile_contrast(data_dir):
    from sam_med import io

    vol = io.load(str(data_dir / "totalseg" / "example_mr_sm.nii.gz"))
    lo, hi = L.contrast_limits(vol.with_array(vol.array, modality="MR"))
    p1, p99 = np.percentile(vol.array, [1, 99])
    assert lo < hi and abs(lo - p1) <= 0.05 * (p99 - p1) + 1 and abs(hi - p99) <= 0.05 * (p99 - p1) + 1


def test_prompt_geometry_conversions():
    aff = np.array([[-0.8, 0, 0, 100], [0, -0.8, 0, 50], [0, 0, 2.5, -30], [0, 0, 0, 1]])
    vol = Volume(np.zeros((40, 30, 20), np.int16), aff)
    # a rectangle drawn on slice 7 + a ±3 z-range → 3D box in voxels
    rect = L.box_to_rectangle([4, 5, 7, 20, 25, 7], 7, axis=2)
    assert L.rectangle_to_box(rect, L.slice_range(7, 3, 20), vol) == [4, 5, 4, 20, 25, 10]
    assert L.rectangle_to_box(rect, (19, 12), vol) == [4, 5, 12, 20, 25, 19]
    assert L.slice_range(1, 5, 20) == (0, 6)
    # the CLI's box check: a rectangle reaching outside the scan is refused, never clipped
    from sam_med.errors import PromptError

    wide = L.box_to_rectangle([-3, 5, 7, 20, 25, 7], 7, axis=2)
    with pytest.raises(PromptError, match="extends outside the volume"):
        L.rectangle_to_box(wide, (5, 9), vol)
    with pytest.raises(PromptError, match="outside the volume"):
        L.rectangle_to_box(rect, (18, 25), vol)  # slice range past the last slice (19)
    assert L.rectangle_to_box(L.box_to_rectangle([-0.4, 5, 7, 39.4, 25, 7], 7), (5, 9), vol) == [0, 5, 5, 39, 25, 9]
    # a layer with another affine (e.g. scale-only, made by hand) → voxel via world
    other = np.diag([2.0, 2.0, 5.0, 1.0])
    ijk = np.array([[3.0, 4.0, 5.0]])
    world = apply_affine(other, ijk)
    assert np.allclose(L.data_to_voxel(ijk, other, vol), vol.world_to_voxel(world))
    assert np.allclose(L.data_to_voxel(ijk, aff, vol), ijk)  # same affine: 1:1
    # the slice shown at a world point
    assert L.current_slice(vol.voxel_to_world([10, 10, 13]), vol) == 13


def test_writer_nifti_and_nrrd_on_source_grid(ct_path, tmp_path):
    import nibabel as nib
    import SimpleITK as sitk

    from sam_med import io
    from sam_med_napari._writer import write_labels

    vol = io.load(ct_path)
    lab = np.zeros(vol.shape, np.uint8)
    lab[40:60, 30:50, 10:20] = 3
    state = {"metadata": {L.VOLUME_KEY: vol}, "affine": vol.affine}
    out = write_labels(str(tmp_path / "l.nii.gz"), lab, state)[0]
    img = nib.load(out)
    assert np.allclose(img.affine, vol.affine, atol=1e-5) and np.array_equal(np.asarray(img.dataobj), lab)
    out = write_labels(str(tmp_path / "l.nrrd"), lab, state)[0]
    back = io.load_label(out, like=vol)
    assert back.same_grid(vol) and np.array_equal(back.array, lab)
    assert sitk.ReadImage(out).GetSize() == vol.shape


def test_writer_dicom_seg_refuses_non_dicom(ct_path, tmp_path):
    from sam_med import io
    from sam_med.errors import OutputError
    from sam_med_napari._writer import write_dicom_seg

    vol = io.load(ct_path)
    with pytest.raises(OutputError, match="DICOM"):
        write_dicom_seg(str(tmp_path / "s.dcm"), np.ones(vol.shape, np.uint8), {"metadata": {L.VOLUME_KEY: vol}})
    assert not (tmp_path / "s.dcm").exists()


def test_workers_stream_progress_result_error_and_cancel():
    """The worker side (no Qt): a blocking call's progress becomes yielded reports."""
    import threading

    from sam_med_napari._workers import Cancelled, CancelToken, Progress, stream

    main = threading.get_ident()

    def call(progress):
        assert threading.get_ident() != main  # the library call runs off the caller's thread
        for n in range(5):
            progress(n + 1, 5, "encode")
        return "done"

    gen = stream(call, CancelToken())
    reports = []
    with pytest.raises(StopIteration) as stop:
        while True:
            reports.append(next(gen))
    assert stop.value.value == "done"
    assert reports == [Progress(n + 1, 5, "encode") for n in range(5)] and reports[-1].fraction == 1.0

    def bad(progress):
        progress(1, 2, "load")
        raise ValueError("no such model")

    with pytest.raises(ValueError, match="no such model"):
        list(stream(bad, CancelToken()))

    token, started = CancelToken(), threading.Event()
    steps = []

    def slow(progress):
        for n in range(1000):
            started.set()
            progress(n, 1000, "encode")
            steps.append(n)
            threading.Event().wait(0.002)
        return "finished"

    gen = stream(slow, token)
    next(gen)
    token.cancel()
    with pytest.raises(Cancelled, match="encode"):
        for _ in gen:
            pass
    assert len(steps) < 1000  # stopped at the next progress call, not run to the end


def test_plugin_reads_no_private_attribute_of_another_module():
    """``obj._name`` is allowed on ``self``/``cls`` only (and dunders); each file owns its internals."""
    import ast
    from pathlib import Path

    import sam_med_napari

    bad = []
    for f in sorted(Path(sam_med_napari.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    bad.append(f"{f.name}:{node.lineno} .{node.attr}")
        assert len(f.read_text().splitlines()) <= 400, f"{f.name} is over 400 lines"
    assert not bad, bad


def test_manifest_is_valid():
    # npe2 comes with napari: required under SAM_MED_REQUIRE_NAPARI=1
    npe2 = __import__("npe2") if os.environ.get("SAM_MED_REQUIRE_NAPARI") == "1" else pytest.importorskip("npe2")
    from pathlib import Path

    import sam_med_napari

    pm = npe2.PluginManifest.from_file(Path(sam_med_napari.__file__).parent / "napari.yaml")
    assert {w.command for w in pm.contributions.writers} == {"sam-med.write_labels", "sam-med.write_dicom_seg"}
    assert pm.contributions.readers[0].accepts_directories
    # every command's python_name resolves (a renamed module or class would break napari's menu)
    import importlib

    for cmd in pm.contributions.commands:
        module, _, attr = cmd.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), cmd.python_name
