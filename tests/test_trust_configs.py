"""Issue #28 problem 1: a model config is data, never code (every route of the campaign).

Each case runs ``sam-med segment`` with a config that would create a marker file if any of
it ran; the command must fail with one line (exit 2) and the marker must never appear.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sam_med.errors import SamMedError
from sam_med.models.configs import PACKAGE_CONFIGS, read_model_config
from sam_med.models.registry import get_architecture
from _reliability import assert_one_line_error, run_cli, small_nifti

LITE = (PACKAGE_CONFIGS / "lite_medsam.yaml").read_text()
BOX = ["--box", "2", "2", "1", "9", "9", "4"]


@pytest.fixture(autouse=True)
def _untrusted(monkeypatch):
    monkeypatch.delenv("SAM_MED_TRUST_CONFIGS", raising=False)
    monkeypatch.delenv("SAM_MED_CONFIGS", raising=False)


def _segment(capsys, tmp_path, *extra):
    scan = small_nifti(tmp_path / "T.nii.gz")
    out = tmp_path / "o.nii.gz"
    rc, _, err = run_cli(capsys, "segment", scan, *BOX, "--device", "cpu", "--out", out, *extra)
    assert not out.exists()
    return rc, err


CASES = {
    "target_os_system": LITE + "pwn: {_target_: sam_med.io.atomic.os.system, command: 'touch {m}'}\n",
    "target_writer": LITE + "pwn: {_target_: sam_med.io.atomic.atomic_write_text, path: '{m}', text: x}\n",
    "target_in_component": LITE.replace("_target_: sam_med.transforms.CheckUint8Range",
                                        "_target_: sam_med.transforms.np.save\n    file: '{m}'\n    arr: [1]"),
    "target_in_args": LITE + "architecture_args:\n  x: {_target_: builtins.open, file: '{m}', mode: w}\n",
    "architecture_import_path": LITE.replace("architecture: tinyvit_sam", "architecture: 'os:system'")
    .replace("architecture_args:\n  image_size: \"@image_size\"", "architecture_args:\n  command: 'touch {m}'"),
    "dollar_expression": LITE.replace("mask_threshold: 0.0", "mask_threshold: \"$open('{m}', 'w') and 0.0\""),
    "dollar_in_component": LITE.replace("normalize: minmax", "normalize: \"$open('{m}', 'w') and 'minmax'\""),
    "debug_directive": LITE.replace("postprocessing:\n  _target_: sam_med.transforms.LowResToSource",
                                    "postprocessing:\n  _target_: sam_med.transforms.LowResToSource\n  _debug_: true"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_route_never_runs_code(case, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    cfg = tmp_path / "x.yaml"
    cfg.write_text(CASES[case].replace("{m}", str(marker)))
    rc, err = _segment(capsys, tmp_path, "--model", cfg)
    assert_one_line_error(rc, err, "model config")
    assert not marker.exists()


def test_macro_from_second_file_is_refused(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    (tmp_path / "other.yaml").write_text(f"code: \"$open('{marker}', 'w')\"\n")
    cfg = tmp_path / "x.yaml"
    cfg.write_text(LITE.replace("mask_threshold: 0.0", f"mask_threshold: \"%{tmp_path}/other.yaml#code\""))
    rc, err = _segment(capsys, tmp_path, "--model", cfg)
    assert_one_line_error(rc, err, "macro")
    assert not marker.exists()


def test_shadowing_config_in_sam_med_configs_is_data(tmp_path, capsys, monkeypatch):
    """``$SAM_MED_CONFIGS/lite_medsam.yaml`` is found first by a plain ``segment`` (no --model)."""
    marker = tmp_path / "PWNED"
    d = tmp_path / "cfgs"
    d.mkdir()
    (d / "lite_medsam.yaml").write_text(CASES["architecture_import_path"].replace("{m}", str(marker)))
    monkeypatch.setenv("SAM_MED_CONFIGS", str(d))
    rc, err = _segment(capsys, tmp_path)
    assert_one_line_error(rc, err, "architecture")
    assert not marker.exists()


def test_debug_directive_never_reaches_pdb(tmp_path):
    """``_debug_: true`` once left the terminal at a (Pdb) prompt: now one line, exit 2, at once."""
    cfg = tmp_path / "x.yaml"
    cfg.write_text(CASES["debug_directive"])
    scan = small_nifti(tmp_path / "T.nii.gz")
    env = dict(os.environ)
    env.pop("SAM_MED_TRUST_CONFIGS", None)
    p = subprocess.run([sys.executable, "-m", "sam_med", "segment", str(scan), *BOX, "--model", str(cfg),
                        "--out", str(tmp_path / "o.nii.gz")], capture_output=True,
                       text=True, timeout=120, env=env, input="c\nc\nc\n")
    assert p.returncode == 2 and "(Pdb)" not in p.stdout + p.stderr, p.stderr
    assert "_debug_" in p.stderr


def test_alias_bomb_is_refused_quickly(tmp_path, capsys):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    cfg = tmp_path / "x.yaml"
    cfg.write_text(LITE + "training:\n" + "".join(f"  {ln}\n" for ln in lines))
    t0 = time.perf_counter()
    rc, err = _segment(capsys, tmp_path, "--model", cfg)
    assert time.perf_counter() - t0 < 20
    assert_one_line_error(rc, err, "alias")


def test_unknown_architecture_import_path_is_never_imported():
    with pytest.raises(SamMedError, match="SAM_MED_TRUST_CONFIGS"):
        get_architecture("os:system")
    with pytest.raises(SamMedError):
        get_architecture("sam_med.models.build:torch")  # a re-export of a builder module


def test_copies_and_finetune_style_configs_still_load(tmp_path):
    cfg = tmp_path / "site.yaml"
    doc = yaml.safe_load(LITE)
    doc["training"] = {"mode": "decoder", "created": "2026-12-06"}
    doc["checkpoint"] = {"path": "/nowhere/x.pt", "sha256": None}
    cfg.write_text(yaml.safe_dump(doc))
    out = read_model_config(cfg)
    assert out["image_size"] == 256 and out["preprocessing"].image_size == 256
    assert out["intensity"]["hu"].a_min == -160.0


def test_trust_variable_is_the_only_way_to_monai_parser(tmp_path, monkeypatch):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(LITE.replace("mask_threshold: 0.0", "mask_threshold: \"$0.25 + 0.25\""))
    with pytest.raises(SamMedError, match="Python expression"):
        read_model_config(cfg)
    monkeypatch.setenv("SAM_MED_TRUST_CONFIGS", "1")
    assert read_model_config(cfg)["mask_threshold"] == 0.5
    assert Path(str(get_architecture("sam_med.models.build:build_lite_medsam").__module__)) is not None


def test_reference_bomb_is_refused_quickly(tmp_path):
    lines = ["  r0: [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"  r{i}: [" + ", ".join([f'"@training#r{i - 1}"'] * 10) + "]")
    cfg = tmp_path / "x.yaml"
    cfg.write_text(LITE + "training:\n" + "\n".join(lines) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(SamMedError, match="references"):
        read_model_config(cfg)
    assert time.perf_counter() - t0 < 20
