"""`sam-med segment` end to end with LiteMedSAM on real scans (embeddings from the suite cache)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sam_med import io
from sam_med.cli import main
from sam_med.evaluation.metrics import dice
from sam_med.prompts import box_from_mask

pytestmark = pytest.mark.slow

ORGANS = {5: "liver", 1: "spleen", 2: "kidney_right", 3: "kidney_left", 52: "aorta"}


def test_multi_object_prompts_file(data_dir, tmp_path, embedding_cache_dir, lite_medsam, capsys):
    ct = data_dir / "totalseg/example_ct_sm.nii.gz"
    vol = io.load(ct)
    ref = io.load_label(data_dir / "totalseg/example_seg.nii.gz", like=vol).array
    spec = {"coords": "voxel", "objects": [
        {"id": lab, "name": name, "box": box_from_mask(ref == lab).to_json()} for lab, name in ORGANS.items()]}
    pf = tmp_path / "prompts.json"
    pf.write_text(json.dumps(spec))
    out = tmp_path / "labels.nii.gz"
    rc = main(["segment", str(ct), "--prompts", str(pf), "--cache-dir", str(embedding_cache_dir),
               "--device", "cpu", "--no-progress", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    labels = io.load_label(out, like=vol).array  # same grid or GeometryError
    scores = {name: dice(labels == lab, ref == lab) for lab, name in ORGANS.items()}
    print("Dice per organ", {k: round(v, 3) for k, v in scores.items()})
    assert scores["liver"] >= 0.85
    assert np.mean(list(scores.values())) >= 0.8
    side = json.loads((tmp_path / "labels.nii.gz.json").read_text())
    assert side["model"]["name"] == "lite_medsam" and len(side["prompts"]["objects"]) == 5


def test_npz_in_npz_out(data_dir, tmp_path, embedding_cache_dir, lite_medsam, capsys):
    f = data_dir / "ct_lesion/CT_Lesion_000001_02_01_008-023.npz"
    case = io.read_npz(f)
    g = case.label.array > 0
    box = box_from_mask(g).to_json()
    out = tmp_path / "segs.npz"
    rc = main(["segment", str(f), "--box", *map(str, box), "--cache-dir", str(embedding_cache_dir),
               "--device", "cpu", "--no-progress", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    with np.load(out) as z:
        segs = z["segs"]
    with np.load(f) as z:
        assert segs.shape == z["gts"].shape  # the challenge's (D, H, W) order
        assert dice(segs > 0, z["gts"] > 0) >= 0.85
