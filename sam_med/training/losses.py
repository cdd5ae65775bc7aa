"""The loss of one training sample: a jittered box prompt, optional neighbour-slice mask
prompt and corrective clicks, or SAM-style iterative click rounds (``prompts.iterative``).

A mixin of :class:`~sam_med.training.trainer.Trainer`: it reads the trainer's ``cfg``,
``data``, ``items``, ``lm``, ``model``, ``device``, ``loss_fn``, ``cached`` and its
``_by_slice`` index; every random draw comes from ``sample_seed(seed + 7919, epoch, index)``.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import sample_seed
from .prompts import corrective_click_2d, jitter_box

__all__ = ["SampleLossMixin"]


class SampleLossMixin:
    """Per-sample losses of a :class:`Trainer` (tensors on ``self.device``)."""

    def _box_prompt(self, d: dict, rng: np.random.Generator) -> torch.Tensor:
        pc = self.cfg["prompts"]
        hw = tuple(int(v) for v in d["hw"])
        bbox = d["bbox"].numpy()
        if bbox[0] < 0:  # augmentation moved the object out: prompt the whole slice
            bbox = np.array([0, 0, hw[1] - 1, hw[0] - 1], dtype=float)
        box = jitter_box(bbox, hw, rng, float(pc["box_outward_px"]), float(pc["box_inward_px"]))
        return torch.as_tensor(self.lm.box_to_model(box, hw), dtype=torch.float32, device=self.device).reshape(1, 4)

    @staticmethod
    def _slice_key(it: dict, k: int) -> tuple:
        return (it.get("source"), it["case_id"], it["object"], it.get("axis"), it.get("copy"), int(k))

    def _embed(self, idx: int, d: dict) -> torch.Tensor:
        if self.cached:
            return self.items[idx]["embedding"].to(self.device)[None]
        return self.model.image_encoder(d["image"][None].to(self.device))

    def _sample_start(self, idx: int, epoch: int):
        """``(sample, rng, box prompt (1, 4) on the model grid, embedding, label (1, 1, H, W))``
        of sample ``idx`` in ``epoch``; the rng is seeded per (seed, epoch, index)."""
        d = self.data[idx]
        rng = np.random.default_rng(sample_seed(self.cfg["seed"] + 7919, epoch, idx))
        box_m = self._box_prompt(d, rng)
        with self._autocast():
            emb = self._embed(idx, d)
        return d, rng, box_m, emb, d["label"][None].to(self.device)

    def _click_kwargs(self, clicks: list[tuple[int, int, bool]]) -> dict:
        """``points`` (1, N, 2) / ``point_labels`` (1, N) decoder arguments for ``(x, y, positive)``
        clicks in model-grid pixels; empty without clicks."""
        if not clicks:
            return {}
        return {"points": torch.tensor([[c[:2] for c in clicks]], dtype=torch.float32, device=self.device),
                "point_labels": torch.tensor([[int(c[2]) for c in clicks]], device=self.device)}

    @staticmethod
    def _on_grid(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``target`` (1, 1, H, W) resized (nearest) to the logits' grid when its width differs."""
        if target.shape[-1] == logits.shape[-1]:
            return target
        return torch.nn.functional.interpolate(target, size=logits.shape[-2:], mode="nearest")

    def _sample_loss(self, idx: int, epoch: int) -> torch.Tensor:
        pc = self.cfg["prompts"]
        if "clicks3d" in self.items[idx]:  # a click on the model's own 3D error (.errors3d)
            from .errors3d import errors3d_loss
            return errors3d_loss(self, idx)
        if pc.get("iterative"):
            return self._iterative_loss(idx, epoch)[0]
        d, rng, box_m, emb, target = self._sample_start(idx, epoch)
        pts, labs = None, None
        mask_in = None
        if float(pc.get("mask_prompt_prob", 0)) > 0 and rng.random() < float(pc["mask_prompt_prob"]):
            it = self.items[idx]
            step = 1 if rng.random() < 0.5 else -1
            nb = self._by_slice.get(self._slice_key(it, it["slice"] + step),
                                    self._by_slice.get(self._slice_key(it, it["slice"] - step)))
            if nb is not None:
                dn = self.data[nb]
                with torch.no_grad(), self._autocast():
                    lo_n, _ = self.model.decode(self._embed(nb, dn), boxes=self._box_prompt(dn, rng))
                mask_in = lo_n[:, :1].float().detach()
        if float(pc.get("click_prob", 0)) > 0 and rng.random() < float(pc["click_prob"]):
            n = int(rng.integers(1, int(pc.get("max_clicks", 1)) + 1))
            ref = None
            clicks: list[tuple[int, int, bool]] = []
            for _ in range(n):
                with torch.no_grad(), self._autocast():
                    lo, _ = self.model.decode(emb.detach(), boxes=box_m, mask_input=mask_in,
                                              **self._click_kwargs(clicks))
                if ref is None:
                    ref = self._on_grid(target, lo)[0, 0].cpu().numpy() > 0.5
                c = corrective_click_2d(lo[0, 0].float().cpu().numpy() > 0, ref, rng, center=False)
                if c is None:
                    break
                clicks.append(c)
            if clicks:
                scale = self.lm.image_size / ref.shape[-1]
                pts = torch.tensor([[(c[0] * scale, c[1] * scale) for c in clicks]], dtype=torch.float32,
                                   device=self.device)
                labs = torch.tensor([[int(c[2]) for c in clicks]], device=self.device)
        with self._autocast():
            logits, _iou = self.model.decode(emb, boxes=box_m, points=pts, point_labels=labs, mask_input=mask_in)
        logits = logits[:, :1].float()
        return self.loss_fn(logits, self._on_grid(target, logits))

    def _iterative_loss(self, idx: int, epoch: int) -> tuple[torch.Tensor, list[tuple[int, int, bool]], list[float]]:
        """SAM-style interactive training on one sample.

        Iteration 0 decodes the (jittered) box; with probability ``click_prob`` the sample
        then gets ``n ~ U{1..max_clicks}`` more iterations, each adding one corrective click
        drawn from the previous iteration's prediction (no gradient through that choice):
        into the largest error component, positive where the label is missed, negative where
        the prediction overshoots; the decoder sees box + all clicks so far (+ the previous
        low-res logits with ``click_mask_input``). The loss (DiceCE) is averaged over all
        iterations, so box-only accuracy is trained in every sample. Returns (loss, clicks
        in model-grid pixels, per-iteration losses)."""
        pc = self.cfg["prompts"]
        d, rng, box_m, emb, target = self._sample_start(idx, epoch)
        n_clicks = 0
        if float(pc.get("click_prob", 0)) > 0 and rng.random() < float(pc["click_prob"]):
            n_clicks = int(rng.integers(1, int(pc.get("max_clicks", 1)) + 1))
        mode = str(pc.get("click_point", "random"))
        # click_mask_input: true/false, or the probability that a sample uses it (drawn after
        # the click count, so the other prompts of a sample do not depend on it)
        pm = pc.get("click_mask_input", False)
        pm = float(pm) if not isinstance(pm, bool) else (1.0 if pm else 0.0)
        use_mask = pm >= 1.0 or (pm > 0.0 and rng.random() < pm)
        # valid (unpadded) part of the model grid: clicks never land in the padding
        from ..transforms import longest_side_size
        hw = tuple(int(v) for v in d["hw"])
        vh, vw = longest_side_size(hw, self.lm.image_size)
        losses: list[torch.Tensor] = []
        clicks: list[tuple[int, int, bool]] = []
        mask_in = None
        ref = None
        for it in range(n_clicks + 1):
            with self._autocast():
                lo, _ = self.model.decode(emb, boxes=box_m, mask_input=mask_in, **self._click_kwargs(clicks))
            lo = lo[:, :1].float()
            if ref is None:
                target = self._on_grid(target, lo)
                ref = target[0, 0].cpu().numpy() > 0.5
            losses.append(self.loss_fn(lo, target))
            if it == n_clicks:
                break
            pred = lo[0, 0].detach().cpu().numpy() > 0
            s = lo.shape[-1] / self.lm.image_size
            hv, wv = max(1, int(round(vh * s))), max(1, int(round(vw * s)))
            center = mode == "center" or (mode == "mixed" and rng.random() < 0.5)
            c = corrective_click_2d(pred[:hv, :wv], ref[:hv, :wv], rng, center=center)
            if c is None:
                break
            clicks.append((int(round(c[0] / s)), int(round(c[1] / s)), bool(c[2])))
            if use_mask:
                mask_in = lo.detach()
        loss = torch.stack(losses).mean()
        return loss, clicks, [float(v.detach()) for v in losses]
