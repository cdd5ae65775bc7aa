"""Base vs click-trained decoder on held-out 3D interactions (issue #27), per structure.

A decoder-level replay of the CVPR 2025 protocol on validation scans (OpenKBP validation organs,
the last 60 hippocampus ids), on whole-slice views from the shared embedding cache:

* box step: the challenge's box (middle slice of the labelled range, its 2D box widened by the
  seeded jitter, the z range) decodes the middle slice; propagation decodes each next slice
  from the previous slice's mask box + 3 px, inside the z range, until a mask comes out empty;
* 5 click steps: the challenge's 3D click (centre of the largest 3D error component); the
  clicked slice is re-decoded from its box + every click on it (+ its own previous low-res
  logits with ``--mask-prompt``), then the change is carried to the neighbouring slices (each
  decoded from the changed neighbour's mask box + its own clicks) while they keep changing
  (Dice to their previous mask < 0.95) -- the click path the engine is to take with these weights.

3D Dice after every step and DSC_AUC (clicks 1..5), per object:

    nice -n 10 .venv/bin/python benchmarks/eval_clicks_3d.py --model lite_medsam \
        --config configs/finetune/lite_medsam_clicks_hn_hippo.yaml --cache-dir /work/cache/emb \
        --sets hippocampus --limit 12 --out /work/cache/eval3d/base_hippo.json
    .venv/bin/python benchmarks/eval_clicks_2d.py --table base.json new.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Replay:
    """One object's interaction on a stack of planes ``gt (K, H, W)`` with embeddings ``embs[k]``."""

    def __init__(self, model, base, embs, gt: np.ndarray, mask_prompt: bool, seed: int) -> None:
        from sam_med.transforms import SliceMeta, longest_side_size

        self.model, self.base, self.embs, self.gt = model, base, embs, gt
        self.mask_prompt = mask_prompt
        k, h, w = gt.shape
        self.hw = (h, w)
        self.meta = SliceMeta((h, w), longest_side_size((h, w), base.image_size), base.image_size)
        self.pred = np.zeros_like(gt)
        self.boxes: dict[int, np.ndarray] = {}
        self.lows: dict[int, object] = {}
        self.clicks: dict[int, list] = {}
        zs = np.flatnonzero(gt.any(axis=(1, 2)))
        self.z0, self.z1, self.zm = int(zs.min()), int(zs.max()), int(zs[len(zs) // 2])
        self.rng = np.random.RandomState(seed)

    def decode(self, k: int, box, clicks, mask_in):
        import torch

        kw = {}
        if clicks:
            pts = self.base.points_to_model(np.array([c[:2] for c in clicks], float), self.hw)
            kw = {"points": torch.as_tensor(np.asarray(pts), dtype=torch.float32).reshape(1, -1, 2),
                  "point_labels": torch.tensor([[int(c[2]) for c in clicks]])}
        if mask_in is not None:
            kw["mask_input"] = mask_in
        b = torch.as_tensor(self.base.box_to_model(box, self.hw), dtype=torch.float32).reshape(1, 4)
        with torch.no_grad():
            low, _ = self.model.decode(self.embs[k][None].float(), boxes=b, **kw)
        low = low[:, :1].float()
        return low, self.base.postprocess(low, self.meta)[0, 0].numpy() > 0

    def _set(self, k, box, low, m):
        self.boxes[k], self.lows[k], self.pred[k] = box, low, m

    def _walk(self, start: int, mask, carry: bool) -> None:
        from sam_med.masks import dice
        from sam_med.training.interactive import neighbour_box

        for d in (1, -1):
            prev, k = mask, start + d
            while self.z0 <= k <= self.z1 and prev.any():
                box = neighbour_box(prev, self.hw, 3)
                cl = self.clicks.get(k, [])
                mi = self.lows.get(k) if (self.mask_prompt and cl) else None
                low, m = self.decode(k, box, cl, mi)
                if carry and dice(m, self.pred[k]) >= 0.95:
                    break
                self._set(k, box, low, m)
                prev, k = m, k + d

    def box_step(self) -> None:
        from sam_med.training.prompts import mask_box

        b = mask_box(self.gt[self.zm])
        h, w = self.hw
        s = self.rng.randint(0, 6)
        dx, dy = int(s * w / 256), int(s * h / 256)
        box = np.array([max(0, b[0] - dx), max(0, b[1] - dy), min(w - 1, b[2] + dx), min(h - 1, b[3] + dy)], float)
        low, m = self.decode(self.zm, box, [], None)
        self._set(self.zm, box, low, m)
        self._walk(self.zm, m, carry=False)

    def click_step(self) -> bool:
        from sam_med.evaluation.cvpr25.clicks import next_click

        c = next_click(self.pred, self.gt)
        if c is None:
            return False
        z, y, x = c.zyx
        self.clicks.setdefault(z, []).append((x, y, c.kind == "fg"))
        box = self.boxes.get(z)
        if box is None:  # a slice the object never reached: the nearest decoded slice's box
            near = min(self.boxes, key=lambda k: abs(k - z))
            box = self.boxes[near]
        mi = self.lows.get(z) if self.mask_prompt else None
        low, m = self.decode(z, box, self.clicks[z], mi)
        self._set(z, box, low, m)
        self._walk(z, m, carry=True)
        return True

    def dice(self) -> float:
        from sam_med.masks import dice

        return float(dice(self.pred, self.gt))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lite_medsam")
    ap.add_argument("--config", required=True)
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--sets", default="hippocampus", help="comma-separated click sets (their validation split)")
    ap.add_argument("--limit", type=int, default=0, help="the first N validation cases of each set (0 = all)")
    ap.add_argument("--mask-prompt", action="store_true")
    ap.add_argument("--label")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    from eval_clicks_2d import load_pair
    from sam_med.training.click_data import parse_click_sets, set_cases

    pair = load_pair(a.config, a.model, a.cache_dir, 256, "eval_clicks_3d")
    if pair is None:
        return 2
    cfg, base, lm, pred = pair
    rows = {"dice": [], "group": [], "id": []}
    t0 = time.perf_counter()
    for s in parse_click_sets(cfg["data"]["click_sets"]):
        if s["name"] not in a.sets.split(","):
            continue
        cases = set_cases(s, "val")
        for case in cases[: a.limit or None]:
            image, label = case.load()
            pred.bind(image)
            geo = pred.geometry(image)
            lab = np.asarray(label.array)
            for v, name in case.objects(label):
                gt = np.stack([geo.slice_of(lab == v, k) for k in range(image.shape[geo.axis])]).astype(bool)
                if gt.sum() == 0:
                    continue
                zs = np.flatnonzero(gt.any(axis=(1, 2)))
                embs = pred.embeddings(geo, range(int(zs.min()), int(zs.max()) + 1))
                r = Replay(lm.model, base, embs, gt, a.mask_prompt, seed=int(v))
                r.box_step()
                d = [r.dice()]
                for _ in range(5):
                    r.click_step()
                    d.append(r.dice())
                rows["dice"].append(d)
                rows["group"].append(f"{s['name']}/{name}")
                rows["id"].append(f"{case.case_id}:{v}")
            print(f"[eval3d] {case.case_id}: {len(rows['dice'])} objects, {time.perf_counter() - t0:.0f}s, "
                  f"{pred.cache.encoded} encoded", flush=True)
    from sam_med.training.interactive_train import summarise_scores

    d = np.array(rows["dice"])
    res = {"label": a.label or f"{a.model}{'+mask' if a.mask_prompt else ''}", "model": a.model,
           "mask_prompt": a.mask_prompt, "n": len(d), "seconds": round(time.perf_counter() - t0, 1),
           "summary": summarise_scores(d), "per_sample": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res))
    print(json.dumps({k: res[k] for k in ("label", "n", "seconds", "summary")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
