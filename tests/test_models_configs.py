"""Model configs: shipped as package data, one reader for 2D and 3D, and the config's
intensity transforms are exactly what the encoder is fed. No real weights needed."""

from __future__ import annotations

import importlib.resources
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import sam_med
from sam_med.errors import SamMedError
from sam_med.models import LoadedModel, LoadedModel3D, build, load_model, read_model_config
from sam_med.models import configs as cfgs

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ("lite_medsam", "medsam_vit_b", "sam_vit_b", "sam_med3d_turbo")


def test_configs_are_package_resources_not_source_tree_files():
    res = importlib.resources.files("sam_med") / "configs" / "models"
    package_dir = Path(sam_med.__file__).resolve().parent
    for name in BUILTIN:
        entry = res / f"{name}.yaml"
        assert entry.is_file(), f"{name}.yaml is not a resource of the sam_med package"
        found = cfgs.find_model_config(name)
        assert found.resolve() == Path(str(entry)).resolve()
        assert package_dir in found.resolve().parents  # inside the package, not ../configs
        assert yaml.safe_load(entry.read_text())["name"] == name


def test_package_data_declares_every_model_config():
    """What a wheel ships: pyproject's package-data globs must cover each config file."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["sam_med"]
    package_dir = Path(sam_med.__file__).resolve().parent
    files = sorted((package_dir / "configs" / "models").glob("*.yaml"))
    assert len(files) >= len(BUILTIN)
    for f in files:
        rel = f.relative_to(package_dir).as_posix()
        assert any(fnmatch(rel, g) for g in globs), f"{rel} is not package data ({globs})"


def test_one_reader_for_2d_and_3d_and_parse_is_cached():
    two, three = read_model_config("lite_medsam"), read_model_config("sam_med3d_turbo")
    assert two["dims"] == 2 and three["dims"] == 3 and three["image_size"] == 128
    geo = three["preprocessing"]["geometry"]  # MONAI transforms, instantiated by the same parser
    assert [type(t).__name__ for t in geo] == ["Orientation", "Spacing"]
    again = read_model_config("sam_med3d_turbo")
    assert again is not three and again["preprocessing"] is three["preprocessing"]  # parsed once
    assert read_model_config(again)["name"] == "sam_med3d_turbo"  # a resolved dict passes through


def test_bad_config_is_one_clear_error(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("name: broken\narchitecture: tinyvit_sam\ncheckpoint: {}\n")  # no image_size
    with pytest.raises(SamMedError, match="image_size"):
        read_model_config(str(p))
    with pytest.raises(SamMedError, match="unknown model 'nope'"):
        read_model_config("nope")


@pytest.fixture(scope="module")
def random_lite(tmp_path_factory) -> LoadedModel:
    """lite_medsam's own config, pointed at random weights (strict loading still applies)."""
    d = tmp_path_factory.mktemp("rand_lite")
    torch.manual_seed(0)
    torch.save(build.build_lite_medsam().state_dict(), d / "rand.pth")
    cfg = yaml.safe_load(cfgs.find_model_config("lite_medsam").read_text())
    cfg["name"] = "rand_lite"
    cfg["checkpoint"] = {"path": str(d / "rand.pth"), "sha256": None}
    (d / "rand_lite.yaml").write_text(yaml.safe_dump(cfg))
    return load_model(str(d / "rand_lite.yaml"), precision="fp32")


def _window(x, level=40.0, width=400.0):
    return np.clip((x - (level - width / 2)) / width * 255.0, 0, 255)


def test_intensity_step_is_the_config_transform(random_lite):
    rng = np.random.default_rng(0)
    ct = rng.uniform(-1000, 1500, (6, 7, 3)).astype(np.float32)
    mr = rng.gamma(2.0, 200.0, (6, 7, 3)).astype(np.float32)
    mr[0] = 0
    table = random_lite.config["intensity"]
    got = random_lite.intensity_to_uint8_range(ct, "HU")
    np.testing.assert_array_equal(got, np.asarray(table["hu"](ct), dtype=np.float32))
    np.testing.assert_allclose(got, _window(ct), atol=1e-4)
    np.testing.assert_allclose(random_lite.intensity_to_uint8_range(ct, "raw", "CT", window=(50, 100)),
                               _window(ct, 50, 100), atol=1e-4)
    lo, hi = np.percentile(mr[mr > 0], [0.5, 99.5])
    ref = (np.clip(mr, lo, hi) - lo) / (hi - lo) * 255
    ref[mr == 0] = 0
    got = random_lite.intensity_to_uint8_range(mr, "raw", "MR")
    np.testing.assert_array_equal(got, np.asarray(table["raw_mr"](mr), dtype=np.float32))
    np.testing.assert_allclose(got, ref, atol=1e-3)
    u8 = rng.integers(0, 256, (4, 4, 2)).astype(np.float32)
    np.testing.assert_array_equal(random_lite.intensity_to_uint8_range(u8, "windowed"), u8)
    with pytest.raises(ValueError, match="0..255"):
        random_lite.intensity_to_uint8_range(ct, "windowed")


def test_encoder_gets_exactly_the_config_pipeline(random_lite):
    """The slice-wise predictor's encoder input == config intensity -> config preprocessing."""
    from sam_med.predictors.slicewise import SliceWisePredictor
    from sam_med.prompts import ObjectPrompts, make_box
    from sam_med.volume import Volume

    rng = np.random.default_rng(1)
    arr = rng.uniform(-300, 400, (48, 40, 1)).astype(np.float32)
    arr[10:30, 12:28] += 300.0
    vol = Volume(arr, np.eye(4), modality="CT", intensity="HU")
    seen: list[torch.Tensor] = []
    hook = random_lite.model.image_encoder.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
    try:
        SliceWisePredictor(loaded=random_lite).predict(vol, ObjectPrompts(box=make_box([10, 12, 0, 29, 27, 0])))
    finally:
        hook.remove()
    assert seen, "the encoder never ran"
    cfg = random_lite.config
    u8 = np.asarray(cfg["intensity"]["hu"](arr), dtype=np.float32)
    expected, _ = cfg["preprocessing"](u8[:, :, 0].T)  # a slice is [row, column] = [y, x] = [j, i]
    full = [x for x in seen if tuple(x.shape[-2:]) == expected.shape[-2:]]
    assert full, f"no full-size encoder input among {[tuple(x.shape) for x in seen]}"
    torch.testing.assert_close(full[0][0], expected, rtol=0, atol=0)


def test_3d_config_loads_as_loaded_model_3d(tmp_path):
    from sam_med.models.sam3d import Sam3DConfig, build_sam3d

    small = Sam3DConfig.small()
    torch.save({"model_state_dict": build_sam3d(small).state_dict()}, tmp_path / "tiny.pth")
    cfg = {"name": "tiny3d", "dims": 3, "architecture": "sam_med3d", "architecture_args": dict(small.__dict__),
           "checkpoint": {"file_name": "tiny.pth"},
           "preprocessing": {"geometry": [{"_target_": "Orientation", "axcodes": "RAS"}], "threshold": 0.5}}
    lm = load_model(cfg, checkpoint=tmp_path, precision="fp32")
    assert isinstance(lm, LoadedModel3D) and lm.image_size == 64 and lm.precision == "fp32"
    assert len(lm.sha256) == 64 and [type(t).__name__ for t in lm.geometry] == ["Orientation"]
    assert lm.preprocessing == {"threshold": 0.5}
    emb = lm.encode(torch.zeros(1, 1, 64, 64, 64))
    low, iou = lm.decode(emb, torch.tensor([[[32.0, 32.0, 32.0]]]), torch.tensor([[1]]))
    assert low.dtype == torch.float32 and iou.shape == (1, 1)
