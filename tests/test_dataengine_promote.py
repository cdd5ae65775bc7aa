"""``sam-med finetune --from DIR`` and promotion (issue 19 part B), on CPU with the tiny model.

End to end: the TotalSegmentator CT and MR label maps are accepted as "corrected" masks
through ``Session.accept`` (what napari's Accept calls), a decoder fine-tune of the tiny
random-weight model runs from the folder (split by scan: one scan trains, one validates),
the base and new weights are compared on the validation scan, and the outcome (a registered
model, or the documented refusal) is checked: promotion.json/md, the model by name in
``sam-med segment`` and in napari's model list, and the embedding cache shared between a
decoder-only fine-tune and its base.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sam_med.dataengine import accept_session

from sam_med.errors import SamMedError

ROOT = Path(__file__).resolve().parents[1]
STRUCTURES = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver"}


def _accept(folder: Path, scan: Path, label: Path, scans_dir: Path, values=STRUCTURES):
    """Copy ``scan`` into ``scans_dir`` and accept ``label``'s structures as corrected masks."""
    from sam_med import io
    from sam_med.session import Session

    scans_dir.mkdir(parents=True, exist_ok=True)
    dst = scans_dir / scan.name
    shutil.copy(scan, dst)
    vol = io.load(str(dst))
    lab = io.load_label(str(label), like=vol)
    s = Session(vol, None)
    for v, name in values.items():
        s.add_object(name, id=v)
        s.set_mask(v, lab.array == v)
    return accept_session(s, folder)


def _env(*dirs) -> dict:
    return dict(os.environ, SAM_MED_CONFIGS=os.pathsep.join(map(str, dirs)), PYTHONPATH=str(ROOT),
                OMP_NUM_THREADS="1")


@pytest.fixture(scope="session")
def accepted(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("accepted")
    folder = root / "site"
    t = data_dir / "totalseg"
    _accept(folder, t / "example_ct_sm.nii.gz", t / "example_seg.nii.gz", root / "scans")
    _accept(folder, t / "example_mr_sm.nii.gz", t / "example_seg_mr.nii.gz", root / "scans")
    return folder


@pytest.fixture(scope="session")
def promoted(accepted, tiny, data_dir, tmp_path_factory):
    """One fine-tune + promotion from the accepted folder (tiny model, 1 epoch, 1 click)."""
    from sam_med.dataengine.finetune_from import build_config, run_from

    root = tmp_path_factory.mktemp("promote")
    models = root / "models"
    cfg, info = build_config(accepted, name="tiny_site", base=tiny.name, epochs=1, overrides=[
        "from.axes=[2]", "from.slices_per_object=2", "from.eval_clicks=1", "from.bootstrap=500",
        f"from.extra_cvpr25={data_dir.parent / 'cvpr25' / 'cases'}", "from.extra_cases=TotalSeg_CT*",
        f"out_dir={root / 'ft'}", f"export.models_dir={models}", "num_threads=1", "optim.lr=1e-2"])
    res = run_from(cfg, info, log=lambda *_: None)
    return {"cfg": cfg, "info": info, "report": res["promotion"], "summary": res["summary"], "models": models,
            "tiny_dir": Path(tiny.config["config_path"]).parent, "out": root / "ft"}


# ------------------------------------------------------------------ split, manifest, rule
def _rows(*scan_ids):
    return [{"id": f"e{i}", "scan_sha256": s, "mask_sha256": f"m{i}"} for i, s in enumerate(scan_ids)]


def test_split_is_by_scan_and_deterministic():
    from sam_med.dataengine.finetune_from import split_by_scan

    rows = _rows("a", "a", "b", "c", "c", "d", "e", "f")
    tr, va = split_by_scan(rows, 0.3, seed=1)
    assert {r["scan_sha256"] for r in tr}.isdisjoint({r["scan_sha256"] for r in va})
    assert len({r["scan_sha256"] for r in va}) == 2 and len(tr) + len(va) == len(rows)
    assert split_by_scan(rows, 0.3, seed=1) == (tr, va)  # same seed, same split
    assert split_by_scan(rows, 0.0) == (rows, [])
    with pytest.raises(SamMedError, match="one scan"):
        split_by_scan(_rows("a", "a"), 0.3)
    with pytest.raises(SamMedError, match="val-fraction"):
        split_by_scan(rows, 1.0)
    named = [dict(r, scan=f"/scans/{r['scan_sha256']}.nii.gz") for r in rows]
    tr, va = split_by_scan(named, 0.3, val_scans=["/scans/c.nii.gz"])  # chosen scans: still whole scans
    assert [r["id"] for r in va] == ["e3", "e4"] and len(tr) == 6
    with pytest.raises(SamMedError, match="not scans of this folder"):
        split_by_scan(named, 0.3, val_scans=["/elsewhere.nii.gz"])


def test_manifest_hash_covers_ids_scans_and_masks():
    from sam_med.dataengine.finetune_from import manifest_hash

    rows = _rows("a", "b")
    h = manifest_hash(rows)
    assert h == manifest_hash(list(reversed(rows)))
    changed = [dict(rows[0], mask_sha256="other"), rows[1]]
    assert manifest_hash(changed) != h


def test_paired_bootstrap_and_the_rule():
    from sam_med.dataengine.compare import paired_bootstrap
    from sam_med.dataengine.promotion import PROMOTION_DEFAULTS, decide

    base = np.linspace(0.5, 0.7, 8)
    s = paired_bootstrap(base, base + 0.05 + 0.01 * np.sin(np.arange(8)), n=1000, seed=0)
    assert s["n"] == 8 and s["ci"][0] > 0 and abs(s["mean_diff"] - 0.05) < 0.01
    assert paired_bootstrap(base, base + 0.05, 1000, 0) == paired_bootstrap(base, base + 0.05, 1000, 0)
    mixed = paired_bootstrap(base, base + np.array([0.1, -0.1] * 4), 1000, 0)
    assert mixed["ci"][0] < 0 < mixed["ci"][1]

    def ev(c, b, n=8):
        return {"cvpr25": {"metrics": {"DSC_AUC": dict(c, n=n)}}, "box": {"metrics": {"dice": b}}}

    opts = dict(PROMOTION_DEFAULTS)
    assert decide(None, opts)[0] is False
    assert decide(ev(s, s), opts)[0] is True
    assert decide(ev(mixed, s), opts)[0] is False
    assert "at least 3" in decide(ev(s, s, n=2), opts)[1]
    worse = paired_bootstrap(base, base - 0.05, 1000, 0)
    assert "box-protocol" in decide(ev(s, worse), opts)[1]
    assert decide(ev(s, worse), dict(opts, box_guard=False))[0] is True


def test_early_stop_counts_validations_since_the_best():
    from sam_med.training.early_stop import check_patience, should_stop

    h = [{"epoch": 0, "val_dice": 0.5}, {"epoch": 1, "val_dice": 0.6}, {"epoch": 2, "val_dice": 0.55},
         {"epoch": 3, "loss": 1.0}, {"epoch": 4, "val_dice": 0.58}]
    best = {"epoch": 1, "val_dice": 0.6}
    assert should_stop(h, best, 2) and not should_stop(h, best, 3) and not should_stop(h, best, None)
    with pytest.raises(SamMedError, match="patience"):
        check_patience(0)


# ------------------------------------------------------------------ CLI refusals
def _cli(args, env=None):
    return subprocess.run([sys.executable, "-m", "sam_med", "finetune", *args], capture_output=True, text=True,
                          env=env or _env(), cwd=ROOT)


def test_cli_bad_folder_and_one_scan_are_one_line_exit_2(tmp_path, data_dir):
    p = _cli(["--from", str(tmp_path / "missing")])
    assert p.returncode == 2 and "not an accepted-results folder" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    one = tmp_path / "one"
    t = data_dir / "totalseg"
    _accept(one, t / "example_ct_sm.nii.gz", t / "example_seg.nii.gz", tmp_path / "scans", {1: "spleen"})
    before = sorted(p.name for p in tmp_path.rglob("*"))
    p = _cli(["--from", str(one), f"out_dir={tmp_path / 'ft'}"])
    assert p.returncode == 2 and "one scan" in p.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written
    p = _cli(["--from", str(one), "--config", "x.yaml"])
    assert p.returncode == 2 and "not allowed with" in p.stderr


def test_a_changed_scan_stops_the_build(tmp_path, data_dir):
    from sam_med.dataengine.finetune_from import build_config

    t = data_dir / "totalseg"
    folder = tmp_path / "acc"
    _accept(folder, t / "example_ct_sm.nii.gz", t / "example_seg.nii.gz", tmp_path / "a", {1: "spleen"})
    _accept(folder, t / "example_mr_sm.nii.gz", t / "example_seg_mr.nii.gz", tmp_path / "b", {1: "spleen"})
    scan = tmp_path / "b" / "example_mr_sm.nii.gz"
    raw = bytearray(scan.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one byte of the compressed data
    scan.write_bytes(bytes(raw))
    with pytest.raises(SamMedError, match="scan changed since it was accepted"):
        build_config(folder, name="x")


# ------------------------------------------------------------------ end to end
def test_promotion_report_and_split(promoted, accepted):
    from sam_med.dataengine.finetune_from import manifest_hash

    rep, info = promoted["report"], promoted["info"]
    assert json.loads((promoted["out"] / "promotion.json").read_text())["promoted"] == rep["promoted"]
    assert "promoted" in (promoted["out"] / "promotion.md").read_text()
    rows = info["manifest"]
    assert info["manifest_hash"] == manifest_hash(rows) == rep["manifest_hash"]
    tr = {r["scan_sha256"] for r in rows if r["split"] == "train"}
    va = {r["scan_sha256"] for r in rows if r["split"] == "val"}
    assert len(tr) == len(va) == 1 and tr.isdisjoint(va)
    assert rep["reason"]
    if rep["evaluation"] is not None:
        per = rep["evaluation"]["cvpr25"]["per_structure"]
        assert sorted(r["name"] for r in per) == sorted(STRUCTURES.values())  # the validation scan's 4
        assert rep["evaluation"]["box"]["metrics"]["dice"]["n"] == 4
        extra = rep["evaluation"]["extra"]  # the CVPR25 copy of the CT scan: reported, not in the rule
        assert {r["case"] for r in extra["per_structure"]} == {"TotalSeg_CT_sm"}
        assert "Also compared" in (promoted["out"] / "promotion.md").read_text()
    files = sorted(p.name for p in promoted["models"].glob("tiny_site*")) if promoted["models"].exists() else []
    assert files == (["tiny_site.pt", "tiny_site.yaml"] if rep["promoted"] else [])


def test_registered_model_loads_by_name_in_segment_and_napari(promoted, tmp_path):
    rep = promoted["report"]
    if not rep["promoted"]:
        assert rep["registered"] is None
        pytest.skip(f"documented refusal: {rep['reason']}")
    import yaml

    cfg = yaml.safe_load(Path(rep["registered"]["config"]).read_text())
    prov = cfg["provenance"]
    assert prov["data"]["manifest_hash"] == rep["manifest_hash"] and prov["base_model"]["name"] == "tiny_lite"
    assert prov["checkpoint_sha256"] == cfg["checkpoint"]["sha256"] and "CVPR25" in prov["evaluation"]["summary"]

    out = tmp_path / "seg.nii.gz"
    scan = Path(promoted["info"]["manifest"][0]["scan"])
    p = subprocess.run([sys.executable, "-m", "sam_med", "segment", str(scan), "--model", "tiny_site",
                        "--box", "40", "30", "10", "70", "60", "20", "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, env=_env(promoted["models"], promoted["tiny_dir"]), cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert out.is_file()

    from sam_med_napari._models import model_entries, site_models

    site = {m.name: m for m in site_models()}
    assert "tiny_site" in site and site["tiny_site"].base == "tiny_lite"
    assert prov["evaluation"]["summary"] in site["tiny_site"].tooltip
    assert not {m.name: m for m in model_entries()}["tiny_lite"].site


def test_decoder_finetune_reuses_the_base_encodes(promoted, data_dir):
    """Switching from the base to its decoder-only site model hits the embedding cache."""
    if not promoted["report"]["promoted"]:
        pytest.skip("no registered model to switch to")
    from sam_med import io
    from sam_med.models import load_model
    from sam_med.predictors.embedding_cache import EmbeddingCache
    from sam_med.predictors.slicewise import SliceWisePredictor
    from sam_med.prompts import Box, ObjectPrompts

    base, site = load_model("tiny_lite"), load_model("tiny_site")
    assert site.encoder_signature() == base.encoder_signature() and site.sha256 != base.sha256
    vol = io.load(str(data_dir / "totalseg" / "example_ct_sm.nii.gz"))
    cache = EmbeddingCache()
    prompts = ObjectPrompts(box=Box((40, 30, 10), (70, 60, 20)))
    a = SliceWisePredictor(loaded=base, cache=cache).predict(vol, prompts)
    n = cache.encoded
    assert n > 0
    b = SliceWisePredictor(loaded=site, cache=cache).predict(vol, prompts)
    assert cache.encoded == n  # nothing encoded again
    assert a.mask.shape == b.mask.shape == vol.shape

    from sam_med_napari._predictors import default_factory  # the widget's model switch (no Qt)

    p1, p2 = default_factory("tiny_lite", "cpu", None), default_factory("tiny_site", "cpu", None)
    assert p1.cache is p2.cache and p2.model_name == "tiny_site"
    p1.predict(vol, prompts)
    n = p1.cache.encoded
    p2.predict(vol, prompts)
    assert p2.cache.encoded == n


def test_train_only_run_is_never_promoted(accepted, tiny, tmp_path):
    tiny_dir = Path(tiny.config["config_path"]).parent
    p = _cli(["--from", str(accepted), "--name", "tiny_trainonly", "--base", "tiny_lite", "--val-fraction", "0",
              "--epochs", "1", "from.axes=[2]", "from.slices_per_object=1", f"out_dir={tmp_path / 'ft'}",
              f"export.models_dir={tmp_path / 'models'}", "num_threads=1"], env=_env(tiny_dir))
    assert p.returncode == 0, p.stderr
    assert "not promoted: no validation scans" in p.stdout
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())
    assert json.loads((tmp_path / "ft" / "promotion.json").read_text())["promoted"] is False


def test_patience_stops_the_loop_and_a_resume_stays_stopped(tmp_path, monkeypatch):
    """eval.patience in the trainer loop: validation Dice that never beats the base stops the run
    after ``patience`` validations, the base weights are selected, and a rerun does not train on."""
    from _training import CASES, make_tiny_model, tiny_finetune_config

    from sam_med.training import load_config, train
    from sam_med.training.validation import ValidationMixin

    monkeypatch.setenv("SAM_MED_CONFIGS", str(tmp_path / "models"))
    make_tiny_model(tmp_path / "models")
    calls = []

    def fake_eval(self, model, case_ids, encoder_changed, tag):  # base 0.5, every epoch worse
        calls.append(tag)
        return {c: (0.5 if tag == "base" else 0.4) for c in case_ids}

    monkeypatch.setattr(ValidationMixin, "_eval_cases", fake_eval)
    cfg = tiny_finetune_config(tmp_path / "ft", eval={"enabled": True, "train_before_after": False, "patience": 1},
                               data={"val_cases": [CASES[2]], "max_slices_per_case": 2}, optim={"epochs": 4})
    s = train(load_config(data=cfg))
    assert s["early_stopped_at"] == 1 and s["best_epoch"] == 0 and s["steps"] == 1
    assert calls == ["base", "e1", "final"]
    again = train(load_config(data=cfg))  # resumes from last.pt: already stopped
    assert again["early_stopped_at"] == 1 and again["steps"] == 1


def test_clicks_from_3d_errors_train_from_the_accepted_folder(accepted, tiny, tmp_path):
    """``from.clicks=errors3d`` (issue #15's samples where the CVPR25 clicks land on the model's
    own 3D errors) builds and trains from the accepted folder; train only, never promoted."""
    from sam_med.dataengine.finetune_from import build_config, run_from

    cfg, info = build_config(accepted, name="tiny_err3d", base=tiny.name, epochs=1, val_fraction=0, overrides=[
        "from.clicks=errors3d", "from.axes=[2]", "from.slices_per_object=1", f"out_dir={tmp_path / 'ft'}",
        f"export.models_dir={tmp_path / 'models'}", "num_threads=1"])
    assert all(s.get("clicks") == "errors3d" for s in cfg["data"]["sources"])
    res = run_from(cfg, info, log=lambda *_: None)
    assert res["summary"]["steps"] >= 1
    assert res["promotion"]["promoted"] is False
