"""The README's main job: `sam-med demo` on the bundled sample."""

import pytest

from sam_med import io
from sam_med.cli import main

pytestmark = pytest.mark.slow


def test_demo(tmp_path, embedding_cache_dir, lite_medsam, capsys):
    out = tmp_path / "demo"  # does not exist yet: the demo creates it
    assert main(["demo", "--out", str(out), "--device", "cpu", "--cache-dir", str(embedding_cache_dir)]) == 0
    text = capsys.readouterr().out
    assert "liver" in text and "mean Dice" in text
    mean = float(text.split("mean Dice ")[1].split(";")[0])
    assert mean >= 0.85
    vol = io.load(io.sample_path("example_ct_sm.nii.gz"))
    labels = io.load_label(out / "demo_labels.nii.gz", like=vol).array
    assert set(labels.ravel().tolist()) == {0, 1, 2, 3, 5}
