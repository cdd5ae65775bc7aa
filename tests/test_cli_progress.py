"""`sam-med segment` shows the object's slices done / total from the start (issue 29 item 5):
the engine announces the slice range before it encodes the key slice, then counts each slice
(tiny random-weight model; no weights, no shared data)."""

from __future__ import annotations

from _helpers import blob_volume
from sam_med import io
from sam_med.cli import main
from sam_med.predictors.slicewise import SliceWisePredictor
from sam_med.prompts import ObjectPrompts, box_from_mask


def test_the_first_event_is_the_object_slice_count(tiny):
    vol, ref = blob_volume((48, 40, 34), (24, 20, 16), (9, 7, 16))  # spans slices 0..32
    box = box_from_mask(ref)
    n = int(box.int_bounds()[1][2] - box.int_bounds()[0][2] + 1)
    events = []
    SliceWisePredictor(loaded=tiny).predict(vol, ObjectPrompts(box=box), progress=lambda *e: events.append(e))
    assert events[0] == (0, n, "propagate") and n >= 30
    prop = [d for d, t, w in events if w == "propagate"]
    assert prop == sorted(prop) and prop[-1] == n  # counts up to the whole range
    first_encode = next(i for i, e in enumerate(events) if e[2] == "encode")
    assert first_encode > 0  # the bar is there before the encoder runs


def test_segment_draws_the_slice_bar(tiny, tmp_path, capsys):
    vol, ref = blob_volume((48, 40, 34), (24, 20, 16), (9, 7, 16))
    path = io.save_volume(vol, str(tmp_path / "blob.nii.gz"))
    b = box_from_mask(ref).to_json()
    rc = main(["segment", path, "--box", *[f"{v:g}" for v in b], "--model", tiny.name, "--modality", "CT",
               "--out", str(tmp_path / "o.nii.gz")])
    err = capsys.readouterr().err.replace("\r", "\n")
    assert rc == 0
    assert "propagating slices" in err and "0/33" in err  # the bar, with the total, before any encode
    assert err.index("0/33") < err.index("encoding slices")
