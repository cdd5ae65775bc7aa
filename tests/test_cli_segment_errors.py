"""`sam-med segment` refuses bad prompts and outputs before any model work: exit 2, no file."""

import json

import pytest

from sam_med.cli import main

CT = "totalseg/example_ct_sm.nii.gz"  # 122 x 101 x 30


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--box", "200", "0", "0", "210", "5", "5"], "outside the volume"),
        (["--box", "50", "50", "20", "10", "10", "5"], "inverted"),
        (["--point", "10", "10", "99"], "outside the volume"),
        (["--box", "1", "nan", "1", "5", "5", "5"], "finite"),
        ([], "no prompts"),
        (["--point", "10", "10", "5", "--label", "1", "--label", "0"], "one label per point"),
    ],
)
def test_bad_prompts_exit_2_nothing_written(data_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "mask.nii.gz"
    rc = main(["segment", str(data_dir / CT), *extra, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and err.startswith("sam-med: error:")
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_bad_prompt_file(data_dir, tmp_path, capsys):
    pf = tmp_path / "p.json"
    pf.write_text(json.dumps({"coords": "voxel", "objects": [{"id": 1, "name": "x"}]}))
    rc = main(["segment", str(data_dir / CT), "--prompts", str(pf), "--out", str(tmp_path / "o.nii.gz")])
    assert rc == 2 and "neither a box, a key-slice box nor points" in capsys.readouterr().err
    pf.write_text("{not json")
    rc = main(["segment", str(data_dir / CT), "--prompts", str(pf), "--out", str(tmp_path / "o.nii.gz")])
    assert rc == 2 and "not valid JSON" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


def test_world_box_outside(data_dir, tmp_path, capsys):
    rc = main(["segment", str(data_dir / CT), "--coords", "world", "--box", "1e4", "1e4", "1e4",
               "1.1e4", "1.1e4", "1.1e4", "--out", str(tmp_path / "o.nii.gz")])
    assert rc == 2 and "outside" in capsys.readouterr().err


def test_dicom_seg_needs_dicom_input(data_dir, tmp_path, capsys):
    rc = main(["segment", str(data_dir / CT), "--box", "1", "1", "1", "5", "5", "5",
               "--out", str(tmp_path / "o.dcm")])
    assert rc == 2 and "DICOM" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_input(data_dir, tmp_path, capsys):
    import shutil

    src = tmp_path / "ct.nii.gz"
    shutil.copy(data_dir / CT, src)
    before = src.read_bytes()
    rc = main(["segment", str(src), "--box", "1", "1", "1", "5", "5", "5", "--out", str(src)])
    assert rc == 2 and "overwrite" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_missing_image(tmp_path, capsys):
    rc = main(["segment", str(tmp_path / "nope.nii.gz"), "--box", "1", "1", "1", "5", "5", "5",
               "--out", str(tmp_path / "o.nii.gz")])
    assert rc == 2 and "nope.nii.gz" in capsys.readouterr().err


def test_key_box_is_validated_before_the_model(tmp_path, capsys):
    """--key-box outside the volume, with --box, or in world coordinates: one line, exit 2."""
    import numpy as np
    import nibabel as nib

    from sam_med.cli import main

    img = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 18, 8), np.int16), np.eye(4)), str(img))
    out = tmp_path / "o.nii.gz"
    for extra in (["--key-box", "4", "2", "9", "1", "1", "10", "10"],  # range past the last slice (7)
                  ["--key-box", "4", "2", "6", "1", "1", "30", "10"],  # rectangle outside
                  ["--key-box", "4", "2", "6", "1", "1", "10", "10", "--box", "1", "1", "1", "5", "5", "5"],
                  ["--key-box", "4", "2", "6", "1", "1", "10", "10", "--coords", "world"]):
        rc = main(["segment", str(img), "--out", str(out), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("sam-med: error:"), (extra, err)
        assert not out.exists()
