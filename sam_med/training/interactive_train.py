"""Run the interactive recipe (:mod:`.interactive`): epochs over cached samples, validation on
other scans after every epoch (box + clicks, 2D), the best epoch kept, exported as a delta.

:func:`train_interactive` is what ``sam-med finetune --config <recipe: interactive>`` calls;
benchmarks call it with their own ``cases`` to run ablations on one encoded set.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .click_data import ClickCase, load_click_sets, parse_click_sets, samples_of
from .interactive import SampleBatch, interactive_options, run_rounds, set_trainable_clicks

__all__ = ["train_interactive", "score_clicks", "summarise_scores", "decoder_state", "val_subset"]


def val_subset(cases: Sequence[ClickCase], n: int, seed: int = 0) -> list[tuple]:
    """A fixed, seeded subset of ``n`` validation samples ``(case, slice, value)`` (all when fewer)."""
    s = samples_of(cases)
    if n and len(s) > n:
        idx = np.sort(np.random.default_rng(seed).choice(len(s), n, replace=False))
        s = [s[i] for i in idx]
    return [(cases[ci], k, v) for ci, k, v in s]


@torch.no_grad()
def score_clicks(model: torch.nn.Module, loaded, items: Sequence[tuple], n_clicks: int = 5, mask_prompt: bool = True,
                 batch_size: int = 1, start: str = "jitter", seed: int = 1234, amp: bool = False,
                 base: torch.nn.Module | None = None) -> np.ndarray:
    """``(len(items), n_clicks + 1)`` Dice: the CVPR25-jittered box (seeded per batch), then one
    CVPR25-rule 2D click per step, the decoder seeing box + all clicks (+ the previous low-res
    logits with ``mask_prompt``). ``start="neighbour"``: the box of a neighbouring slice's mask.
    ``base``: the box step decoded by this (base) model, as in the engine."""
    from ..masks import dice

    model.eval()
    o = {"neighbour_box": 1.0 if start == "neighbour" else 0.0, "margin": 3, "mask_prompt": bool(mask_prompt)}
    dev = next(model.parameters()).device
    out = np.zeros((len(items), n_clicks + 1))
    for b0 in range(0, len(items), batch_size):
        chunk = list(items[b0:b0 + batch_size])
        rng = np.random.default_rng([seed, b0])
        batch = SampleBatch(chunk, loaded, o, rng, dev, starts=[start] * len(chunk))

        def on_round(r, src, _b0=b0, _batch=batch):
            for i, lg in enumerate(src):
                out[_b0 + i, r] = dice(lg.cpu().numpy() > 0, _batch.refs[i])

        run_rounds(model, batch, o, n_clicks, 0, train=False, on_round=on_round, amp=amp, base=base)
    return out


def summarise_scores(d: np.ndarray) -> dict:
    """Mean Dice per step, the CVPR25 DSC_AUC of the mean curve, and the mean over steps."""
    from ..evaluation.cvpr25.metrics import auc

    m = d.mean(axis=0) if len(d) else np.zeros(d.shape[1])
    return {"dice": [round(float(v), 4) for v in m], "auc": round(auc(m), 4), "mean": round(float(m.mean()), 4),
            "n": int(len(d))}


def decoder_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The prompt encoder + mask decoder tensors of ``model`` (LoRA merged), keys as in the base."""
    from .lora import remove_lora

    m = copy.deepcopy(model)
    remove_lora(m)
    sd = {f"mask_decoder.{k}": v.detach().clone() for k, v in m.mask_decoder.state_dict().items()}
    sd.update({f"prompt_encoder.{k}": v.detach().clone() for k, v in m.prompt_encoder.state_dict().items()})
    return {k: v.contiguous() for k, v in sd.items()}


def _init_decoder(model: torch.nn.Module, name: str, loaded, device, log) -> None:
    """Start from registered model ``name``'s prompt encoder + mask decoder (its encoder must be the base's)."""
    from ..errors import SamMedError
    from ..models import load_model

    other = load_model(name, device=device)
    if other.encoder_signature() != loaded.encoder_signature():
        raise SamMedError(f"interactive.init_from: {name} does not share {loaded.name}'s image encoder")
    model.mask_decoder.load_state_dict(other.model.mask_decoder.state_dict())
    model.prompt_encoder.load_state_dict(other.model.prompt_encoder.state_dict())
    log(f"[finetune] decoder initialised from {name}")


def _load_data(cfg: dict, loaded, log) -> tuple[list[ClickCase], list[ClickCase]]:
    from ..predictors.embedding_cache import EmbeddingCache
    from ..predictors.slicewise import SliceWisePredictor

    dc = cfg["data"]
    cdir = dc.get("embedding_cache_dir")
    cache = EmbeddingCache(max_bytes=256 << 20, cache_dir=Path(cdir).expanduser() if cdir else None)
    pred = SliceWisePredictor(loaded=loaded, cache=cache)
    sets = parse_click_sets(dc["click_sets"])
    train = load_click_sets(sets, "train", pred, log)
    val = load_click_sets(sets, "val", pred, log)
    log(f"[finetune] {cache.encoded} slices encoded now, {cache.disk_hits} read from {cdir}")
    return train, val


def train_interactive(cfg: dict, log: Callable[[str], None] | None = None, *, train_cases=None, val_cases=None,
                      loaded=None, out_dir: str | Path | None = None) -> dict:
    """Train, validate per epoch, keep the best epoch (mean validation Dice over the box and
    click steps; epoch 0 = the base), write ``best.pt`` + ``summary.json`` under ``out_dir``
    (default the config's), export when ``export.enabled``. Returns the summary."""
    from ..models import load_model

    log = log or print
    t_start = time.perf_counter()
    o = interactive_options(cfg)
    seed = int(cfg.get("seed") or 0)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg["num_threads"]))
    device = torch.device(cfg.get("device") or "cpu")
    amp = bool(o["amp"])  # bf16 autocast in the decoder (run_rounds)
    loaded = loaded or load_model(cfg["base_model"], device=device)
    if train_cases is None:
        train_cases, val_cases = _load_data(cfg, loaded, log)
    rep = {str(s["name"]): int(s.get("repeat") or 1) for s in (cfg["data"].get("click_sets") or [])
           if isinstance(s, dict) and s.get("name")}
    samples = [t for t in samples_of(train_cases) for _ in range(rep.get(train_cases[t[0]].source, 1))]
    val_items = val_subset(val_cases or [], int(o["val_samples"]), seed)
    model = copy.deepcopy(loaded.model).to(device).eval()
    if o["init_from"]:
        _init_decoder(model, str(o["init_from"]), loaded, device, log)
    params = set_trainable_clicks(model, o, seed)
    base_dec = loaded.model.to(device).eval()  # the frozen base (its decoder: the engine's box step)
    for p in base_dec.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(params, lr=float(o["lr"]), weight_decay=float(o["weight_decay"]))
    out = Path(str(out_dir or cfg["out_dir"]).format(name=cfg["name"])).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    def validate(tag: str) -> dict:
        t0 = time.perf_counter()
        s = summarise_scores(score_clicks(model, loaded, val_items, int(o["val_clicks"]), bool(o["mask_prompt"]),
                                          amp=amp, base=base_dec if o["val_base_start"] else None))
        s["eval_s"] = round(time.perf_counter() - t0, 1)
        log(f"[finetune] {tag}: validation Dice per step {s['dice']} AUC {s['auc']} ({s['eval_s']}s)")
        return s

    history = [{"epoch": 0, "val": validate("epoch 0 (base)")}] if val_items and o["val_base"] else []
    best = {"epoch": 0, "score": history[0]["val"]["mean"] if history else -1.0}
    best_state = decoder_state(model)
    n_spe = int(o["samples_per_epoch"] or len(samples))
    bs = int(o["batch_size"])
    for epoch in range(int(o["epochs"])):
        t0 = time.perf_counter()
        rng = np.random.default_rng([seed, epoch])
        order = np.concatenate([rng.permutation(len(samples)) for _ in range(-(-n_spe // len(samples)))])[:n_spe]
        losses = []
        n_rounds = 1 + int(o["rounds"]) + int(o["extra_rounds"])
        for b in range(0, len(order) - bs + 1, bs):
            opt.zero_grad(set_to_none=True)
            tot = 0.0
            for j, i in enumerate(order[b:b + bs]):
                brng = np.random.default_rng([seed, epoch, b, j])
                batch = SampleBatch([(train_cases[samples[i][0]], samples[i][1], samples[i][2])], loaded, o, brng, device)
                g = int(o["grad_rounds"])
                by_base = n_rounds > 1 and float(o["base_start"]) > 0 and brng.random() < float(o["base_start"])
                first = 1 if by_base else 0  # the base's box round has no loss
                graded = None if g == 0 or g >= n_rounds - first else sorted(
                    (first + brng.choice(n_rounds - first, g, replace=False)).tolist())
                if graded is None and by_base:
                    graded = list(range(1, n_rounds))
                loss = run_rounds(model, batch, o, int(o["rounds"]), int(o["extra_rounds"]), train=True,
                                  graded=graded, amp=amp, base=base_dec if by_base else None) / bs
                loss.backward()
                tot += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(tot)
        rec = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 5), "train_s": round(time.perf_counter() - t0, 1)}
        log(f"[finetune] epoch {epoch + 1}: loss {rec['loss']} ({rec['train_s']}s, {len(losses)} batches)")
        if val_items:
            rec["val"] = validate(f"epoch {epoch + 1}")
            if rec["val"]["mean"] > best["score"]:
                best = {"epoch": epoch + 1, "score": rec["val"]["mean"]}
                best_state = decoder_state(model)
        else:
            best, best_state = {"epoch": epoch + 1, "score": None}, decoder_state(model)
        history.append(rec)
    torch.save({"state": best_state, "epoch": best["epoch"]}, out / "best.pt")
    summary = {"name": cfg["name"], "recipe": "interactive", "options": o, "base_model": cfg["base_model"],
               "base_sha256": loaded.sha256, "trainable_params": int(sum(p.numel() for p in params)),
               "train_cases": len(train_cases), "train_slices": sum(len(c.slices) for c in train_cases),
               "train_samples": len(samples),
               "train_objects": len({(c.source, c.case_id, v) for c in train_cases for (_k, v) in c.labels}),
               "val_samples": len(val_items), "best_epoch": best["epoch"], "history": history,
               "wall_s": round(time.perf_counter() - t_start, 1), "out_dir": str(out)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if cfg.get("export", {}).get("enabled", False) and best["epoch"] > 0:
        from .click_export import export_click_model
        summary["export"] = export_click_model(cfg, loaded, best_state, summary, log)
    return summary
