#!/usr/bin/env python
"""Fine-tuning pipeline check for the 3D model (NOT a zero-shot or accuracy claim).

No pretrained SAM-Med3D weights are available here, so this trains a SMALL
configuration of our 3D SAM (``Sam3DConfig.small``: ViT depth 2, width 96, 64^3 crops
of 8^3-voxel patches, at 3 mm so that abdominal organs fit) from random init, on real
crops of the TotalSegmentator example CT and MR (liver, spleen, kidneys, stomach, ...,
label maps from ../shared/data/totalseg). Crops are made with the same MONAI
Orientation/Spacing + SpatialCrop/SpatialPad transforms and the same z-score
(voxels > 0) as the volumetric predictor. One positive click per crop (a random voxel
of the organ, as SAM-Med3D's first training click), loss = foreground-weighted BCE + soft Dice on the
upsampled logits.

It reports the loss and the Dice of the *training* crops before and after: this
shows gradients flow through every part (encoder, prompt encoder, decoder) and the
whole pipeline can be fine-tuned on CPU, nothing more.

    python scripts/train_sam3d_smoke.py --steps 600 --out /tmp/sam3d_small.pth

Measured (``OMP_NUM_THREADS=1 ... --steps 300 --time-limit 480`` on a shared 2-core VM):
281 steps (batch 2) in 487 s on 33 crops (11 organs of the CT and MR x 3 jittered centres):
loss 1.95 -> 1.00 (mean of the first/last 20 steps), Dice of the training crops with one
fixed random click 0.05 (random init) -> 0.35. Training crops only: no generalisation claim.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "totalseg"
CASES = [("example_ct_sm.nii.gz", "example_seg.nii.gz", [5, 1, 2, 3, 6, 20]),
         ("example_mr_sm.nii.gz", "example_seg_mr.nii.gz", [5, 1, 2, 3, 6])]


def make_crops(img_size: int = 64, spacing: float = 3.0, jitters: int = 3, seed: int = 0,
               data: Path = DATA, cases=None):
    """Real (image, mask, click) crops: list of dicts with tensors (S,S,S)."""
    import nibabel as nib
    from monai.data import MetaTensor
    from monai.transforms import Compose, Orientationd, SpatialCropd, SpatialPadd, Spacingd

    from sam_med.predictors.volumetric import zscore_positive

    rng = np.random.default_rng(seed)
    geom = Compose([Orientationd(keys=("img", "seg"), axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
                    Spacingd(keys=("img", "seg"), pixdim=(spacing,) * 3, mode=("bilinear", "nearest"))])
    s = img_size
    crops = []
    for img_name, seg_name, labels in (cases or CASES):
        im, sg = nib.load(str(data / img_name)), nib.load(str(data / seg_name))
        d = geom({"img": MetaTensor(torch.as_tensor(np.asanyarray(im.dataobj), dtype=torch.float32)[None],
                                    affine=torch.as_tensor(im.affine)),
                  "seg": MetaTensor(torch.as_tensor(np.asanyarray(sg.dataobj), dtype=torch.float32)[None],
                                    affine=torch.as_tensor(sg.affine))})
        for lab in labels:
            idx = np.argwhere(d["seg"][0].numpy() == lab)
            if len(idx) < 50:
                continue
            centre = (idx.min(0) + idx.max(0)) / 2
            for j in range(jitters):
                c = centre + (rng.integers(-6, 7, 3) if j else 0)
                t = Compose([SpatialCropd(keys=("img", "seg"), roi_center=[int(x) for x in c], roi_size=(s,) * 3),
                             SpatialPadd(keys=("img", "seg"), spatial_size=(s,) * 3, value=0)])
                cd = t(d)
                img = zscore_positive(cd["img"][0])
                gt = (cd["seg"][0].as_tensor() == lab).float()
                if gt.sum() < 20:
                    continue
                crops.append({"image": img, "gt": gt, "name": f"{img_name.split('_')[1]}:{lab}:{j}"})
    return crops


def click(gt: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    idx = torch.nonzero(gt)
    return idx[torch.randint(len(idx), (1,), generator=gen)].float()  # (1, 3) tensor-dim order


def dice_loss(logits, gt):
    p = torch.sigmoid(logits)
    inter = (p * gt).sum(dim=(1, 2, 3, 4))
    return 1 - (2 * inter + 1) / (p.sum(dim=(1, 2, 3, 4)) + gt.sum(dim=(1, 2, 3, 4)) + 1)


@torch.no_grad()
def evaluate(model, crops, seed: int = 123) -> float:
    """Mean Dice (logits > 0) over the crops with one fixed random click each."""
    from monai.metrics import DiceMetric

    model.eval()
    gen = torch.Generator().manual_seed(seed)
    metric = DiceMetric(include_background=True, reduction="mean")
    for c in crops:
        pt = click(c["gt"], gen)
        logits, _, _ = model(c["image"][None, None], pt[None], torch.ones(1, 1, dtype=torch.long))
        metric((logits > 0).float(), c["gt"][None, None])
    return float(metric.aggregate())


def train(steps: int = 600, batch: int = 2, lr: float = 1e-3, seed: int = 0, crops=None, log_every: int = 25,
          time_limit: float | None = None, verbose: bool = True, config: dict | None = None):
    from sam_med.models.sam3d import Sam3DConfig, build_sam3d

    torch.manual_seed(seed)
    cfg = Sam3DConfig.small(**{"spacing": (3.0, 3.0, 3.0), **(config or {})})
    model = build_sam3d(cfg)
    crops = crops if crops is not None else make_crops(cfg.img_size, cfg.spacing[0])
    dice0 = evaluate(model, crops)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed + 1)
    losses, t0 = [], time.perf_counter()
    for step in range(steps):
        model.train()
        sel = torch.randint(len(crops), (batch,), generator=gen).tolist()
        img = torch.stack([crops[i]["image"] for i in sel])[:, None]
        gt = torch.stack([crops[i]["gt"] for i in sel])[:, None]
        pts = torch.stack([click(crops[i]["gt"], gen) for i in sel])
        logits, _, _ = model(img, pts, torch.ones(batch, 1, dtype=torch.long))
        # foreground is a few % of a crop: weight it so the model does not collapse to "all background"
        pos_weight = ((gt.numel() - gt.sum()) / gt.sum().clamp_min(1)).clamp(1, 20)
        bce = F.binary_cross_entropy_with_logits(logits, gt, pos_weight=pos_weight)
        loss = bce + dice_loss(logits, gt).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if verbose and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:4d} loss {np.mean(losses[-log_every:]):.4f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
            break
    dice1 = evaluate(model, crops)
    k = max(1, min(20, len(losses) // 5))
    return {"steps": len(losses), "crops": len(crops), "loss_first": float(np.mean(losses[:k])),
            "loss_last": float(np.mean(losses[-k:])), "dice_random_init": dice0, "dice_trained": dice1,
            "seconds": time.perf_counter() - t0, "model": model}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds")
    ap.add_argument("--out", type=Path, default=None, help="save the fine-tuned state dict here")
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    res = train(a.steps, a.batch, a.lr, a.seed, time_limit=a.time_limit)
    model = res.pop("model")
    print(json.dumps(res, indent=1))
    if a.out:
        torch.save(model.state_dict(), a.out)
        print(f"saved {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
