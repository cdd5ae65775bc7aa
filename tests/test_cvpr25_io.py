"""CVPR 2025 challenge npz: safe reading (no pickle code runs), validation (exit 2, one line,
nothing written), key-slice boxes, and the official box rule reproducing the shared cases."""

import os
import pickle

import numpy as np
import pytest

from sam_med.cli import main
from sam_med.errors import InputFileError
from sam_med.io.challenge import read_challenge, safe_unpickle
from sam_med.prompts import KeySliceBox, ObjectPrompts, make_key_slice_box

CASES = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "cvpr25", "cases")
BOX = {"z_min": 2, "z_max": 6, "z_mid": 4, "z_mid_x_min": 3, "z_mid_y_min": 5, "z_mid_x_max": 12, "z_mid_y_max": 9}


class Marker:
    """Unpickling this (if allowed) would create a marker file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def write_case(path, **over):
    keys = {"imgs": np.zeros((8, 16, 20), np.uint8), "spacing": np.array([3.0, 1.0, 1.0]), "boxes": [dict(BOX)]}
    keys.update(over)
    np.savez_compressed(path, **{k: v for k, v in keys.items() if v is not None})
    return path


def run_segment(tmp_path, case, capsys, *extra):
    out = tmp_path / "out" / "seg.npz"
    rc = main(["segment", str(case), "--out", str(out), "--model", "threshold", *extra])
    err = capsys.readouterr().err
    return rc, err, out


def test_marker_pickle_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    bad = np.empty(1, dtype=object)
    bad[0] = Marker(marker)
    case = write_case(tmp_path / "evil.npz", boxes=bad)
    rc, err, out = run_segment(tmp_path, case, capsys)
    assert rc == 2 and err.startswith("sam-med: error:") and "refused" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not marker.exists() and not out.exists()
    with pytest.raises(InputFileError):
        safe_unpickle(pickle.dumps([Marker(marker)]))
    assert not marker.exists()


def test_numpy_scalars_and_arrays_allowed():
    clicks = [{"fg": [[np.int64(1), np.int64(2), np.int64(3)]], "bg": [np.array([0, 1, 2])]}]
    obj = safe_unpickle(pickle.dumps(np.asarray(clicks, dtype=object)))
    assert obj[0]["fg"][0][2] == 3 and list(obj[0]["bg"][0]) == [0, 1, 2]


@pytest.mark.parametrize("over, message", [
    ({"imgs": None}, "no 'imgs' key"),
    ({"boxes": [dict(BOX, z_mid_x_max=20)]}, "outside the volume"),
    ({"boxes": [dict(BOX, z_max=8)]}, "outside the volume"),
    ({"boxes": [{k: v for k, v in BOX.items() if k != "z_mid"}]}, "missing z_mid"),
    ({"clicks": [{"fg": [[1, 2, 3]], "bg": []}], "clicks_order": [["bg"]]}, "clicks_order has 0 'fg' but clicks has 1"),
    ({"clicks": [{"fg": [[1, 2, 3]], "bg": []}]}, "must come together"),
    ({"clicks": [{"fg": [[1, 2, 30]], "bg": []}], "clicks_order": [["fg"]]}, "outside the volume"),
])
def test_bad_challenge_file_exit_2_nothing_written(tmp_path, capsys, over, message):
    rc, err, out = run_segment(tmp_path, write_case(tmp_path / "c.npz", **over), capsys)
    assert rc == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists() and not out.parent.exists()


def test_cli_prompts_with_challenge_file_refused(tmp_path, capsys):
    rc, err, out = run_segment(tmp_path, write_case(tmp_path / "c.npz"), capsys, "--point", "1", "1", "1")
    assert rc == 2 and "do not give --point" in err and not out.exists()


def test_segment_challenge_file_writes_segs(tmp_path, capsys):
    imgs = np.zeros((8, 16, 20), np.uint8)
    imgs[3:6, 6:9, 4:12] = 200
    clicks = [{"fg": [[np.int64(2), np.int64(7), np.int64(5)]], "bg": []}]
    case = write_case(tmp_path / "c.npz", imgs=imgs, clicks=clicks, clicks_order=[[None, "fg"]],
                      prev_pred=np.zeros_like(imgs))
    rc, err, out = run_segment(tmp_path, case, capsys)
    assert rc == 0, err
    segs = np.load(out)["segs"]
    assert segs.dtype == np.uint8 and segs.shape == (8, 16, 20)
    # threshold baseline: box (x 3..12, y 5..9, z 2..6) >= 0.5, plus the fg click's 1-voxel ball at (2, 7, 5)
    assert segs[2, 7, 5] == 1 and segs[4, 7, 8] == 1 and segs[0, 0, 0] == 0 and segs[4, 7, 13] == 0


def test_reader_orders_and_spacing(tmp_path):
    case = read_challenge(write_case(tmp_path / "c.npz", clicks=[{"fg": [[1, 2, 3]], "bg": [[4, 5, 6]]}],
                                     clicks_order=[["bg", "fg"]]))
    p = case.prompts[0]
    assert [(pt.ijk, pt.positive) for pt in p.points] == [((6.0, 5.0, 4.0), False), ((3.0, 2.0, 1.0), True)]
    assert p.key_box == KeySliceBox(2, 4, (2, 6), (3.0, 5.0, 12.0, 9.0))
    assert p.box is None  # a key-slice box stays one: the predictor bounds only slice 4 by it
    b3 = p.key_box.to_box3d()  # what 3D-box-only predictors get (apply_key_slice_box)
    assert b3.lo == (3.0, 5.0, 2.0) and b3.hi == (12.0, 9.0, 6.0)
    assert case.image.shape == (20, 16, 8) and np.allclose(case.image.spacing, [1, 1, 3])
    xyz = read_challenge(tmp_path / "c.npz", spacing_order="xyz")
    assert np.allclose(xyz.spacing_zyx, [1, 1, 3]) and np.allclose(xyz.image.spacing, [3, 1, 1])


def test_key_slice_box_json_round_trip():
    kb = make_key_slice_box(0, 5, (3, 7), (1, 2, 10, 12), shape=(9, 20, 20))
    p = ObjectPrompts.from_json({"key_slice_box": kb.to_json()})
    assert p.key_box == kb and p.box is None
    b3 = kb.to_box3d()
    assert b3.lo == (3.0, 1.0, 2.0) and b3.hi == (7.0, 10.0, 12.0)
    assert ObjectPrompts.from_json(p.to_json()).to_json() == p.to_json()


def test_official_box_rule_reproduces_shared_cases():
    from sam_med.evaluation.cvpr25.cases import official_boxes
    from sam_med.io.challenge import read_npz_members

    if not os.path.isdir(CASES):
        pytest.skip("../shared/cvpr25/cases not found")
    for name in ("TotalSeg_MR_sm", "CT_Lesion_000001_02_01_008-023"):
        img = read_npz_members(os.path.join(CASES, "imgs", name + ".npz"))
        gts = np.load(os.path.join(CASES, "gts", name + ".npz"))["gts"]
        assert official_boxes(gts, name) == list(img["boxes"])
