"""Issue #18 case 11: a model config from outside the package is not code unless trusted."""

from __future__ import annotations

import shutil

import pytest

from sam_med.errors import SamMedError
from sam_med.models.configs import PACKAGE_CONFIGS, read_model_config


def test_packaged_configs_load(monkeypatch):
    monkeypatch.delenv("SAM_MED_TRUST_CONFIGS", raising=False)
    assert read_model_config("lite_medsam")["name"] == "lite_medsam"


@pytest.mark.parametrize("payload", [
    "marker: \"$open('{marker}', 'w').write('x')\"\n",
    "marker:\n  _target_: builtins.open\n  file: '{marker}'\n  mode: w\n",
])
def test_outside_config_with_code_is_refused_and_never_runs(tmp_path, monkeypatch, payload):
    monkeypatch.delenv("SAM_MED_TRUST_CONFIGS", raising=False)
    marker = tmp_path / "ran"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text((PACKAGE_CONFIGS / "lite_medsam.yaml").read_text() + payload.format(marker=marker))
    with pytest.raises(SamMedError, match="SAM_MED_TRUST_CONFIGS"):
        read_model_config(cfg)
    assert not marker.exists()


def test_outside_copy_of_a_packaged_config_loads(tmp_path, monkeypatch):
    monkeypatch.delenv("SAM_MED_TRUST_CONFIGS", raising=False)
    cfg = tmp_path / "site_model.yaml"
    shutil.copy(PACKAGE_CONFIGS / "lite_medsam.yaml", cfg)
    assert read_model_config(cfg)["image_size"] == 256
