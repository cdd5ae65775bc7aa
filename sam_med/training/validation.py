"""Validation during fine-tuning: mean 3D Dice per case through the evaluation harness
(box protocol, slice-wise predictor), as a mixin of :class:`~sam_med.training.trainer.Trainer`."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import SamMedError

__all__ = ["NoPrepare", "ValidationMixin"]


class NoPrepare:
    """Predictor proxy without ``prepare``: the harness would encode every whole slice up
    front, which the zoomed small-lesion path never uses (it encodes crops lazily)."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name):
        if name == "prepare":
            raise AttributeError(name)
        return getattr(self._inner, name)



class ValidationMixin:
    """``_eval_cases``: the trainer's validation (reads ``cfg``, ``lm``, ``cache``, ``cases``)."""

    def _eval_cases(self, model, case_ids, encoder_changed: bool, tag: str) -> dict[str, float]:
        """Mean 3D Dice per case (box protocol, slice-wise predictor) with ``model``."""
        from ..evaluation import EvalConfig, evaluate_case
        from ..predictors.embedding_cache import EmbeddingCache
        from ..predictors.slicewise import SliceWisePredictor

        ec = self.cfg["eval"]
        lm = dataclasses.replace(self.lm, model=model,
                                 sha256=self.lm.sha256 if not encoder_changed else f"{self.lm.sha256}:{tag}")
        cache = self.cache if not encoder_changed else EmbeddingCache()
        conf = EvalConfig(protocol=str(ec.get("protocol", "box")), model=self.cfg["base_model"])
        out = {}
        model.eval()
        for cid in case_ids:
            # one predictor per case (sharing the cache): SliceWisePredictor keys its bound
            # volume by id(volume), which a new case's volume can reuse after the old one is freed
            pred = SliceWisePredictor(loaded=lm, cache=cache, **dict(ec.get("predictor") or {}))
            recs = evaluate_case(self.cases[cid], NoPrepare(pred), conf)
            bad = [r for r in recs if r.get("status") != "ok"]
            if bad:
                raise SamMedError(f"validation of {cid} failed: {bad[0].get('error')}")
            last = {}
            for r in recs:  # last step per object
                last[r["label"]] = r["dice"]
            out[cid] = float(np.mean(list(last.values())))
        return out
