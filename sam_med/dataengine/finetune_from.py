"""``sam-med finetune --from DIR``: a fine-tune config built from an accepted-results folder.

The folder (``docs``/FORMAT: ``dataset.json`` + ``entries/<id>/{mask.nii.gz, entry.json}``,
read with :class:`sam_med.dataengine.accepted.AcceptedDataset`) holds, per accepted scan, a
label map of the corrected objects and a checksummed reference to the scan. From it:

* every entry is verified (a moved or changed scan stops here, one line);
* the entries are split into train / validation **by scan** (the scan's sha256: two entries
  of the same scan always land on the same side), deterministic from ``seed``: the scans are
  ordered by sha256, permuted by ``numpy.random.default_rng(seed)``, and the first
  ``round(val_fraction * n_scans)`` (at least 1 when ``val_fraction > 0``, at most
  ``n_scans - 1``) validate. One scan cannot be split: refused unless ``val_fraction=0``
  (train only, never promoted);
* each entry becomes one ``data.sources`` item (``image`` = the scan, ``label`` = its
  ``mask.nii.gz``, ``labels`` / ``label_names`` = its objects) for training, or one
  ``data.val_sources`` item for the trainer's per-epoch validation (box protocol, 3D Dice;
  best epoch kept; ``eval.patience`` stops early, :mod:`sam_med.training.early_stop`);
* the trainer config: mode ``decoder`` (mask decoder + prompt encoder, embeddings cached)
  by default, ``lora`` / ``full`` / ``prompt`` (learnable prompt tokens, the rest frozen,
  embeddings cached; :mod:`sam_med.models.prompt_tokens`; lr 1e-3) as options, SAM-style iterative click simulation
  (``prompts.iterative``), resumable from ``out_dir/last.pt``, ``torchrun`` as the trainer.
  Export is off: :mod:`.promotion` registers the weights only when they win.

Builder options (``from.KEY=VALUE`` among the CLI's overrides, or ``options=`` here):
``axes`` ([0, 1, 2]), ``slices_per_object`` (3 per object and axis), ``val_scans`` (scan
paths to validate on, instead of the seeded draw; still whole scans), ``clicks`` (``slice``:
the trainer's clicks on each training slice; the hook for #15's 3D-error clicks, which is
passed to every source as ``clicks: <value>`` once ``data.sources`` knows that key),
and the promotion settings of :data:`sam_med.dataengine.promotion.PROMOTION_DEFAULTS`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import SamMedError

__all__ = ["BUILD_DEFAULTS", "manifest", "manifest_hash", "split_by_scan", "build_config", "split_options"]

#: builder options (``from.KEY=VALUE``); the promotion's own are added by split_options
BUILD_DEFAULTS: dict[str, Any] = {"axes": [0, 1, 2], "slices_per_object": 3, "clicks": "slice", "val_scans": None}
_MODES = ("decoder", "lora", "full", "prompt")
#: the learning rate per mode (prompt tuning moves K x 256 numbers only: a larger step)
_LR = {"prompt": 1e-3}


def manifest(entries: Sequence) -> list[dict]:
    """One row per entry: ``id``, ``scan`` (path), ``scan_sha256``, ``mask_sha256``, ``objects``
    (``[{label, name}]``), ``modality``; sorted by id."""
    from ..models.checkpoint import sha256_file

    rows = []
    for e in sorted(entries, key=lambda x: x.id):
        rows.append({"id": e.id, "scan": str(e.scan_path), "scan_sha256": e.scan_sha256,
                     "mask_sha256": sha256_file(e.mask_path), "modality": e.modality,
                     "objects": [{"label": int(o["label"]), "name": str(o.get("name") or f"label {o['label']}")}
                                 for o in e.objects]})
    return rows


def manifest_hash(rows: Sequence[dict]) -> str:
    """sha256 over the sorted ``(entry id, scan sha256, mask sha256)`` triples of a manifest."""
    triples = sorted((r["id"], r["scan_sha256"], r["mask_sha256"]) for r in rows)
    return hashlib.sha256(json.dumps(triples).encode()).hexdigest()


def split_by_scan(rows: Sequence[dict], val_fraction: float, seed: int = 0,
                  val_scans: Sequence[str] | None = None) -> tuple[list[dict], list[dict]]:
    """(train rows, validation rows), split by ``scan_sha256`` (see the module docstring);
    ``val_scans`` (scan paths) picks the validation scans instead of the seeded draw."""
    if val_scans:
        want = {str(Path(v).expanduser().resolve()) for v in val_scans}
        shas = {r["scan_sha256"] for r in rows if str(Path(r["scan"]).resolve()) in want}
        found = {str(Path(r["scan"]).resolve()) for r in rows} & want
        if found != want:
            raise SamMedError(f"from.val_scans: not scans of this folder: {sorted(want - found)}")
        tr = [r for r in rows if r["scan_sha256"] not in shas]
        if not tr:
            raise SamMedError("from.val_scans takes every scan; none is left to train on")
        return tr, [r for r in rows if r["scan_sha256"] in shas]
    if not 0.0 <= float(val_fraction) < 1.0:
        raise SamMedError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    scans = sorted({r["scan_sha256"] for r in rows})
    if not scans:
        raise SamMedError("the accepted folder has no entries to train on")
    if float(val_fraction) == 0.0:
        return list(rows), []
    if len(scans) < 2:
        raise SamMedError(f"the accepted folder holds one scan ({len(rows)} entr{'y' if len(rows) == 1 else 'ies'}): "
                          "no scan is left to validate on, so the weights could not be promoted; accept "
                          "another scan, or train only with --val-fraction 0")
    order = [scans[i] for i in np.random.default_rng(int(seed)).permutation(len(scans))]
    n_val = min(len(scans) - 1, max(1, int(round(float(val_fraction) * len(scans)))))
    val = set(order[:n_val])
    return [r for r in rows if r["scan_sha256"] not in val], [r for r in rows if r["scan_sha256"] in val]


def _source(row: dict, opts: dict) -> dict:
    """The ``data.sources`` item of one manifest row."""
    src = {"name": row["id"], "image": row["scan"], "label": row["mask"], "case_id": row["id"],
           "labels": [o["label"] for o in row["objects"]], "label_names": [o["name"] for o in row["objects"]],
           "axes": [int(a) for a in opts["axes"]], "slices_per_object": int(opts["slices_per_object"])}
    if opts["clicks"] != "slice":
        src["clicks"] = opts["clicks"]
    return src


def split_options(overrides: Sequence[str]) -> tuple[dict, list[str]]:
    """``from.KEY=VALUE`` overrides -> builder/promotion options; the rest go to the trainer."""
    from ..predictors.base import parse_option_pairs
    from .promotion import PROMOTION_DEFAULTS

    mine = [o for o in overrides if o.startswith("from.")]
    rest = [o for o in overrides if not o.startswith("from.")]
    opts = dict(BUILD_DEFAULTS, **PROMOTION_DEFAULTS)
    given = parse_option_pairs([o[len("from."):] for o in mine], what="from. option")
    unknown = set(given) - set(opts)
    if unknown:
        raise SamMedError(f"unknown from. options {sorted(unknown)}; known: {sorted(opts)}")
    opts.update(given)
    return opts, rest


def _model_name(name: str | None, base: str, folder: Path) -> str:
    n = name or f"{base}_{folder.resolve().name}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", n):
        raise SamMedError(f"--name {n!r}: use letters, digits, '_', '-', '.' (it names the model's files)")
    return n


def build_config(folder, *, name: str | None = None, base: str = "lite_medsam", mode: str = "decoder",
                 val_fraction: float = 0.3, epochs: int | None = None, seed: int = 0,
                 overrides: Sequence[str] = (), options: dict | None = None) -> tuple[dict, dict]:
    """(trainer config from :func:`sam_med.training.load_config`, info) for ``folder``.

    ``info``: ``folder``, ``manifest`` (rows, each with its ``split``), ``manifest_hash``,
    ``train`` / ``val`` (entry ids), ``scans`` (train / val counts), ``options`` (builder +
    promotion). Raises :class:`SamMedError` (one line) for a bad folder, a changed scan, a
    folder that cannot be split or bad options; nothing is written.
    """
    from ..training import load_config
    from .accepted import AcceptedDataset

    if mode not in _MODES:
        raise SamMedError(f"--mode must be one of {', '.join(_MODES)}, got {mode!r}")
    opts, rest = split_options(overrides)
    opts.update(options or {})
    if opts["clicks"] not in ("slice", "errors3d"):
        raise SamMedError(f"from.clicks must be slice or errors3d, got {opts['clicks']!r}")
    folder = Path(folder).expanduser()
    entries = AcceptedDataset(folder).entries()
    if not entries:
        raise SamMedError(f"{folder}: the accepted folder has no entries")
    for e in entries:
        e.verify()  # "scan changed since it was accepted: PATH"
        if not e.objects:
            raise SamMedError(f"{e.dir}: entry has no objects")
    rows = manifest(entries)
    by_id = {e.id: e for e in entries}
    for r in rows:
        r["mask"] = str(Path(by_id[r["id"]].mask_path).resolve())
    train_rows, val_rows = split_by_scan(rows, val_fraction, seed, opts.get("val_scans"))
    for r in rows:
        r["split"] = "val" if r in val_rows else "train"
    model_name = _model_name(name, base, folder)
    data = {
        "name": model_name, "base_model": base, "mode": mode, "seed": int(seed),
        "train_prompt_encoder": mode == "decoder",
        "data": {"sources": [_source(r, opts) for r in train_rows],
                 "val_sources": [_source(r, opts) for r in val_rows] or None,
                 "embedding_cache_dir": None},
        "prompts": {"iterative": True, "click_prob": 0.8, "max_clicks": 5, "click_point": "mixed"},
        "optim": {"lr": _LR.get(mode, 1e-4), "schedule": "cosine", "epochs": int(epochs) if epochs else 3, "batch_size": 4},
        "eval": {"enabled": bool(val_rows), "protocol": "box", "train_before_after": False, "patience": 2},
        "export": {"enabled": False},
    }
    cfg = load_config(data=data, overrides=rest)
    out_dir = Path(str(cfg["out_dir"]).format(name=cfg["name"])).expanduser()
    if cfg["data"].get("embedding_cache_dir") is None:
        cfg["data"]["embedding_cache_dir"] = str(out_dir / "embeddings")
    cfg["config_path"] = f"sam-med finetune --from {folder.resolve()}"
    info = {"folder": str(folder.resolve()), "manifest": rows, "manifest_hash": manifest_hash(rows),
            "train": [r["id"] for r in train_rows], "val": [r["id"] for r in val_rows],
            "scans": {"train": len({r["scan_sha256"] for r in train_rows}),
                      "val": len({r["scan_sha256"] for r in val_rows})},
            "options": opts, "out_dir": str(out_dir)}
    return cfg, info


def run_from(cfg: dict, info: dict, log=None) -> dict:
    """Train ``cfg`` (from :func:`build_config`), then evaluate and promote
    (:func:`sam_med.dataengine.promotion.evaluate_and_promote`). Returns ``{"summary",
    "promotion"}`` (``promotion`` None on a ``stop_after_steps`` stop and on ranks > 0).
    ``out_dir/manifest.json`` records the entries and the split."""
    from ..io.atomic import atomic_write_text
    from ..training.trainer import Trainer
    from .promotion import evaluate_and_promote

    trainer = Trainer(cfg, log)
    if trainer.dist.is_main:
        trainer.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(trainer.out_dir / "manifest.json", json.dumps(
            {k: info[k] for k in ("folder", "manifest_hash", "train", "val", "scans", "manifest")}, indent=2))
    summary = trainer.run()
    if summary.get("stopped_early") or not trainer.dist.is_main:
        return {"summary": summary, "promotion": None}
    return {"summary": summary, "promotion": evaluate_and_promote(trainer, summary, info, trainer.log)}
