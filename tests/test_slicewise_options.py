"""Typed predictor options: one ``key=value`` parser (YAML typing), options dataclasses that
convert and reject unknown keys, and the CLI refusing what a predictor does not take
(one line, exit 2). No weights, no shared data."""

from __future__ import annotations

import numpy as np
import pytest

from _helpers import blob_volume, load_tiny_model
from sam_med.cli import main
from sam_med.predictors.base import OptionError, build_options, parse_option_pairs
from sam_med.predictors.slicewise import SliceWiseOptions, SliceWisePredictor

EXAMPLE = "sam_med/data/example_ct_sm.nii.gz"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_tiny_model(tmp_path_factory.mktemp("tiny_models"))


def test_parse_option_pairs_reads_yaml_values():
    got = parse_option_pairs(["mask_prompt=false", "context=5", "window=[40,400]", "zoom-factor=2.5",
                              "zoom=never", "point_intensity_stop=null", "optim.lr=0.001"])
    assert got == {"mask_prompt": False, "context": 5, "window": [40, 400], "zoom_factor": 2.5,
                   "zoom": "never", "point_intensity_stop": None, "optim.lr": 0.001}
    assert parse_option_pairs(["a=1", "a=2"]) == {"a": 2}
    for bad in (["mask_prompt"], ["=3"]):
        with pytest.raises(OptionError, match="KEY=VALUE"):
            parse_option_pairs(bad)


def test_build_options_converts_to_the_field_types():
    o = build_options(SliceWiseOptions, parse_option_pairs(
        ["slice_step=1", "encode_budget=40", "window=[40,400]", "axis=1", "whole_res_alt=none"]))
    assert o.slice_step == 1 and o.encode_budget == 40.0 and isinstance(o.encode_budget, float)
    assert o.window == (40.0, 400.0) and o.axis == 1 and o.whole_res_alt is None
    o = build_options(SliceWiseOptions, {"encode_workers": "1", "zoom": "never", "click_rule": "edit"})
    assert o.encode_workers == 1 and o.zoom == "never" and o.click_rule == "edit"


def test_the_engine_has_few_options_each_documented():
    import dataclasses

    from sam_med.predictors.slicewise.options import option_docs

    fields = dataclasses.fields(SliceWiseOptions)
    assert len(fields) <= 15
    docs = option_docs()
    assert [d[0] for d in docs] == [f.name for f in fields] and all(len(d[2]) > 20 for d in docs)


@pytest.mark.parametrize("values, message", [
    ({"slice_stpe": 1}, "does not take option(s) slice_stpe"),
    ({"slice_step": 2.5}, "expected an integer"),
    ({"zoom": "sometimes"}, "must be one of auto, never"),
    ({"window": [40]}, "expected 2 values"),
    ({"encode_budget": [1, 2]}, "encode_budget"),
])
def test_build_options_rejects_what_does_not_fit(values, message):
    with pytest.raises(OptionError) as e:
        build_options(SliceWiseOptions, values, owner="the slice-wise predictor")
    assert message in str(e.value)


def test_predictor_takes_typed_options(tiny):
    pred = SliceWisePredictor(loaded=tiny, zoom="never", encode_budget="60", options=SliceWiseOptions(slice_step=3))
    assert pred.options.zoom == "never" and pred.options.encode_budget == 60.0 and pred.options.slice_step == 3
    assert pred.options.encode_workers >= 1 and pred.options.batch_size >= 1  # resolved for the device
    with pytest.raises(OptionError, match="does not take"):
        SliceWisePredictor(loaded=tiny, unknown_option=1)


def test_factory_refuses_options_a_predictor_does_not_take():
    from sam_med.evaluation.baselines import ThresholdPredictor, build_threshold
    from sam_med.predictors.factory import build_predictor

    # validated before any weights are looked for: no checkpoint is needed to be refused
    with pytest.raises(OptionError, match=r"volumetric predictor \(sam_med3d_turbo\) does not take option\(s\) "
                                          r"modality, window"):
        build_predictor("sam_med3d_turbo", "cpu", modality="MR", window=(40, 400))
    with pytest.raises(OptionError, match="threshold baseline does not take option"):
        build_threshold(radius=2, bogus=1)
    t = build_threshold(threshold="100", largest="true")
    assert isinstance(t, ThresholdPredictor) and t.threshold == 100.0 and t.largest is True


def test_segment_refuses_an_option_of_the_3d_model_with_one_line(tmp_path, capsys):
    out = tmp_path / "s.nii.gz"
    rc = main(["segment", EXAMPLE, "--box", "10", "22", "0", "43", "57", "29", "--model", "sam_med3d_turbo",
               "--checkpoint", str(tmp_path / "C.pth"), "--modality", "MR", "--cache-dir", str(tmp_path / "D"),
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("sam-med: error:") and "Traceback" not in err
    assert "does not take option(s) cache_dir, modality" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def _npz_dataset(folder):
    vol, ref = blob_volume(shape=(40, 32, 12), center=(20, 16, 6), radii=(7, 6, 3))
    folder.mkdir()
    imgs = np.clip(vol.array.transpose(2, 1, 0), 0, 255).astype(np.uint8)  # (D, H, W) already 0..255
    np.savez(folder / "blob.npz", imgs=imgs, gts=ref.transpose(2, 1, 0).astype(np.uint8),
             spacing=np.array([1.0, 1.0, 3.0]))
    return folder


def test_evaluate_option_reaches_the_predictor_typed(tiny, tmp_path, capsys, monkeypatch):
    seen = []
    original = SliceWisePredictor.predict

    def spy(self, *a, **k):
        seen.append((self.options.zoom, self.options.encode_budget))
        return original(self, *a, **k)

    monkeypatch.setattr(SliceWisePredictor, "predict", spy)
    data = _npz_dataset(tmp_path / "data")
    rc = main(["evaluate", str(data), "--model", tiny.name, "--protocol", "box", "--out", str(tmp_path / "ev"),
               "--no-progress", "--option", "zoom=never", "--option", "encode_budget=4"])
    assert rc == 0, capsys.readouterr().err
    assert seen and all(s == ("never", 4.0) for s in seen)
    rc = main(["evaluate", str(data), "--model", tiny.name, "--out", str(tmp_path / "ev3"), "--no-progress",
               "--option", "mask_promt=false"])
    err = capsys.readouterr().err
    assert rc == 2 and "does not take option(s) mask_promt" in err and "Traceback" not in err
