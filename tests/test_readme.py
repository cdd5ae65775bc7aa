"""The README's examples run on the bundled sample and hit their organs (issue 26).

The CLI block is read from README.md itself: ``S=...`` then each ``sam-med`` line, run through
:func:`sam_med.cli.main` with a shared embedding cache; a ``segment`` line's comment names the
organ, whose Dice against the sample's labels must be high. The Python block runs as written.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from sam_med import io
from sam_med.cli import main
from sam_med.evaluation.metrics import dice

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ORGANS = {"liver": 5, "spleen": 1, "right kidney": 2, "kidney_right": 2, "left kidney": 3, "kidney_left": 3,
          "aorta": 52}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def cli_lines() -> list[tuple[list[str], str]]:
    """``(argv, comment)`` of each ``sam-med`` line of the README block that defines ``S=``."""
    block = next(b for b in _blocks("bash") if re.search(r"^S=", b, flags=re.M))
    sample = re.search(r"^S=(\S+)", block, flags=re.M).group(1)
    out = []
    for line in block.splitlines():
        if not line.startswith("sam-med "):
            continue
        cmd, _, comment = line.partition("#")
        argv = [sample if a == "$S" else a for a in shlex.split(cmd)[1:]]
        out.append((argv, comment.strip()))
    return out


def test_the_readme_is_short_and_opens_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    first = _blocks("bash")[:2]
    assert [b.strip() for b in first] == ["make demo", "make test"]


def test_the_cli_block_names_an_organ_for_every_segment_line():
    lines = cli_lines()
    assert lines and lines[0][0][0] == "info"
    for argv, comment in lines:
        if argv[0] == "segment" and "--prompts" not in argv:
            assert any(comment.startswith(name) for name in ORGANS), comment


@pytest.mark.slow
@pytest.mark.parametrize("argv, comment", cli_lines(), ids=lambda v: v if isinstance(v, str) else None)
def test_readme_command_runs_and_hits_its_organ(argv, comment, tmp_path, embedding_cache_dir, lite_medsam,
                                                monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    argv = list(argv)
    if argv[0] == "segment":
        i = argv.index("--out")
        argv[i + 1] = str(tmp_path / argv[i + 1])
        argv += ["--cache-dir", str(embedding_cache_dir), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    if argv[0] != "segment":
        return
    vol = io.load(argv[1])
    ref = io.load_label(str(ROOT / "sam_med/data/example_seg.nii.gz"), like=vol).array
    out = io.load_label(argv[argv.index("--out") + 1], like=vol).array
    if "--prompts" in argv:
        import json

        spec = json.loads((ROOT / argv[argv.index("--prompts") + 1]).read_text())
        for o in spec["objects"]:
            assert dice(out == o["id"], ref == o["id"]) > 0.8, o["name"]
        return
    organ = next(ORGANS[n] for n in ORGANS if comment.startswith(n))
    assert dice(out > 0, ref == organ) > 0.85, comment
    if "--point" in argv:  # the click was answered by LiteMedSAM's click decoder, and the sidecar says so
        import json

        side = json.loads(Path(argv[argv.index("--out") + 1] + ".json").read_text())
        assert side["model"]["click_decoder"]["name"] == "lite_medsam_clicks_hn_hippo4"
        assert len(side["model"]["click_decoder"]["checkpoint_sha256"]) == 64


@pytest.mark.slow
def test_readme_python_block_runs(monkeypatch, tmp_path, lite_medsam, embedding_cache_dir):
    code = next(b for b in _blocks("python") if "sam_med.Session" in b)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SAM_MED_CACHE_DIR", str(embedding_cache_dir))
    code = code.replace('"sam_med/data/', f'"{ROOT}/sam_med/data/')
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    vol = scope["vol"]
    ref = io.load_label(str(ROOT / "sam_med/data/example_seg.nii.gz"), like=vol).array == 5
    labels = io.load_label(str(tmp_path / "labels.nii.gz"), like=vol).array
    assert dice(labels > 0, ref) > 0.85
    assert 0.0 < scope["session"].get(scope["liver"].id).result.info.confidence <= 1.5
    assert np.count_nonzero(labels) > 1000
