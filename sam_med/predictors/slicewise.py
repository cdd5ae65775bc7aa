"""Slice-wise 3D segmentation with a 2D SAM-style model (LiteMedSAM by default).

Recipe (see ``benchmarks/bench_slicewise.py`` for the measurements behind each choice):

1. The volume is mapped to the model's 0..255 intensity range once (CT window,
   MR percentiles, research npz left as is) by the model config's pipeline.
2. Slices are taken perpendicular to the acquisition axis (``Volume.slice_axis``)
   unless ``axis`` is given; see :mod:`sam_med.predictors.planes` for the 2D layout.
3. **View selection (zoom)**: the key slice is decoded in two views: the *context
   view* (a square of ``context`` x the box side around the box at the whole slice's
   scale, encoded as a reduced r x r input, r < S; the whole slice when that square
   would not fit) and the *zoom view* (a square of ``zoom_factor`` x the box side,
   resized to S). The zoom is used for every slice of the object only when the model's
   own predicted IoU there beats the context view's by ``zoom_margin``. Small or
   low-contrast lesions gain pixels; the others keep the slice's own scale. The encoder
   cost grows with the input area, so a context view of a 60 px lesion in a 512² slice
   costs ~1/5 of the whole slice; large organs get the whole slice, whose embeddings all
   objects share. Costs one extra encode at the key slice.
4. A 3D box starts on its middle slice with the box's in-plane extent, then
   propagates both ways: each next slice is prompted with the previous slice's
   mask box (+ ``margin`` px) clipped to the 3D box (optionally with the previous
   slice's low-res logits as a dense prompt, ``mask_prompt``: off by default, it
   costs abdominal organs 0.08 Dice); it stops at the box's extent or when the
   object vanishes (empty mask or predicted IoU below ``iou_stop``).
5. Clicks (refinement) act on their slice through the box, which is what this
   box-trained model understands: a positive click grows the slice's box to
   include it, a negative click moves the nearest box side past it; the slice is
   re-decoded from cached embeddings and the change is re-propagated outwards
   only while the neighbouring slices change; each re-propagated slice gets its own
   previous logits as a dense prompt (``refine_own_logits``). A click on a slice the object had
   not reached seeds it there from the nearest segmented slice.

Embeddings come from an :class:`EmbeddingCache` (shared across objects, prompts
and clicks; optional on-disk store).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import PromptError
from ..prompts import ObjectPrompts, Point
from ..session import PredictionResult, ProgressFn
from ..volume import Volume
from .embedding_cache import EmbeddingCache, array_signature
from .planes import (
    PlaneGeometry,
    clip_box,
    component_at,
    dice2d,
    expand_box,
    intersect_box,
    mask_bbox,
    union_box,
)


@dataclass
class SliceOut:
    """Result on one slice: full-plane mask, the low-res logits (object crop frame), the box used."""

    mask: np.ndarray
    logits: torch.Tensor | None
    box: np.ndarray | None
    score: float = 0.0


@dataclass
class ObjectState:
    """Private per-object state kept in ``PredictionResult.state`` for refinement."""

    axis: int
    crop: tuple[int, int, int, int] | None
    prompts: ObjectPrompts
    bound2d: np.ndarray | None
    srange: tuple[int, int]
    slices: dict[int, SliceOut] = field(default_factory=dict)
    key: int | None = None  # the slice propagation started from
    res: int | None = None  # encoder input size of the view (None: the model's own S)
    seed_stats: tuple[float, float] | None = None  # points only: (mean, sd) of the seed slice's mask


@dataclass
class SliceWiseOptions:
    axis: int | None = None
    zoom: str = "auto"  # "auto" | "always" | "never"
    zoom_margin: float = 0.1  # auto: zoom when its key-slice predicted IoU beats the whole slice's by this
    zoom_factor: float = 2.2
    # encoder input size of the zoomed crop: its side x zoom_upsample, rounded up to 16 px,
    # at most the model's S (inf: always S, i.e. upsample small crops to S)
    zoom_upsample: float = float("inf")
    # the alternative to the zoom: None = the whole slice at S; f = a square crop of f x the
    # box side at the whole slice's scale (same pixels per mm, a smaller encoder input: the
    # encoder's cost grows with the input area). Measured on the CT lesions: 4..8 all within
    # noise of the whole slice or better (benchmarks/ablate_slicewise.py), 5 costs ~1/4.
    context: float | None = 5.0
    min_crop: int = 64  # plane pixels
    margin: int = 3
    mask_prompt: bool = False  # measured: +0.01 Dice on CT lesions, -0.08 on abdominal organs
    iou_stop: float = 0.0
    refine_stop_dice: float = 0.98
    # refinement: a re-propagated slice gets its own previous low-res logits as the dense
    # prompt (SAM's iterative rule), so a click's effect fades instead of leaking downstream.
    # Measured (5 clicks, CT lesions, context 5): mean Dice per click 0.864 0.869 0.873 0.877
    # 0.881 0.885, non-decreasing; without: 0.864 0.877 0.883 0.881 (dip) 0.885 0.889.
    # Cropped views only: on whole-slice views (large organs) LiteMedSAM leaks with a dense
    # prompt (liver, one negative click: false positives 3851 -> 11927 voxels with it,
    # -> 3785 without), as the neighbour-logit prompt costs organs 0.08 Dice.
    refine_own_logits: bool = True
    # a click on a slice that has a mask: "edit" = the smallest disk edit of that mask that
    # honours the click (no decoder call; the model re-propagates the neighbours), "model" =
    # decode candidates (box reshaped by the clicks, box + clicks as points, multimask, and
    # the edit) and keep the one that honours most clicks with the least change. With the
    # box-trained LiteMedSAM the edit won 20 of 20 clicks of the CT-lesion click protocol
    # under "model", so "edit" gives the same masks without four decoder calls.
    click_mode: str = "edit"
    batch_size: int | None = None  # None: encode_workers on CPU (batching measured no faster), 8 on CUDA
    # CPU: encode this many slices at once, one per worker thread running one intra-op thread
    # (None: 2 when torch has >= 2 threads). At small inputs one slice does not keep two
    # cores busy, and independent single-threaded workers do not stall each other under load.
    encode_workers: int | None = None
    # points only: "scan" = search, on the clicked slice, the box the model rates best for
    # the object under the clicks (LiteMedSAM is box-trained); "sam" = SAM's point decode
    # for the first extent. Measured, one centre click per object (sam-med evaluate
    # --protocol point): CT lesions mean Dice 0.062 -> 0.772 (0.812 with the intensity stop
    # below), TotalSeg CT organs + brain tumour 0.464 -> 0.806
    point_seed: str = "scan"
    # points only: stop propagating where the mask's mean intensity departs from the seed
    # slice's by more than this x the seed's sd (and >= 30 on the 0-255 scale); None: off
    point_intensity_stop: float | None = 4.0
    window: tuple[float, float] | None = None  # CT (level, width)
    modality: str | None = None  # override "CT"/"MR"


class SliceWisePredictor:
    """3D segmentation with a 2D promptable model, slice by slice (implements ``VolumePredictor``)."""

    def __init__(
        self,
        model: str = "lite_medsam",
        *,
        checkpoint: str | None = None,
        device: str = "cpu",
        cache: EmbeddingCache | None = None,
        cache_dir: str | None = None,
        loaded=None,
        **options: Any,
    ) -> None:
        from ..models import load_model

        self.loaded = loaded if loaded is not None else load_model(model, checkpoint=checkpoint, device=device)
        self.model_name = self.loaded.name
        self.checkpoint_sha256 = getattr(self.loaded, "sha256", None)
        self.options = SliceWiseOptions(**options)
        if self.options.point_seed not in ("scan", "sam"):
            raise ValueError(f"point_seed must be 'scan' or 'sam', got {self.options.point_seed!r}")
        if self.options.click_mode not in ("edit", "model"):
            raise ValueError(f"click_mode must be 'edit' or 'model', got {self.options.click_mode!r}")
        self.cache = cache if cache is not None else EmbeddingCache(cache_dir=cache_dir)
        self.size = int(self.loaded.image_size)
        on_cpu = not str(getattr(self.loaded, "device", "cpu")).startswith(("cuda", "mps"))
        if self.options.encode_workers is None:
            self.options.encode_workers = min(2, torch.get_num_threads()) if on_cpu else 1
        if self.options.batch_size is None:
            self.options.batch_size = max(1, self.options.encode_workers) if on_cpu else 8
        self.pre = self.loaded.preprocess
        self._vol: Volume | None = None
        self._vol_sig: str | None = None
        self._u8: np.ndarray | None = None
        self.timings: dict[str, float] = {"encode": 0.0, "decode": 0.0}
        self.last_candidate: str | None = None  # which click candidate won last (diagnostics)

    # ------------------------------------------------------------ volume prep
    def _bind(self, volume: Volume) -> None:
        if self._vol is volume and self._u8 is not None:
            return
        from ..volume import guess_modality

        o = self.options
        modality = o.modality or guess_modality(volume)
        self._u8 = np.ascontiguousarray(
            self.loaded.intensity_to_uint8_range(volume.array, volume.intensity, modality, window=o.window),
            dtype=np.float32,
        )
        model_sig = (self.model_name, self.checkpoint_sha256, str(getattr(self.loaded, "autocast_dtype", None)))
        self._vol_sig = array_signature(self._u8, volume.affine.round(4).tolist(), model_sig)
        self._vol = volume  # identity, not id(): ids are reused after garbage collection

    def _axis(self, volume: Volume) -> int:
        return volume.slice_axis if self.options.axis is None else int(self.options.axis)

    # ------------------------------------------------------------ encoder
    def _image(self, geo: PlaneGeometry, k: int, crop) -> np.ndarray:
        img = geo.slice_of(self._u8, k)
        if crop is not None:
            x0, y0, x1, y1 = crop
            img = img[y0 : y1 + 1, x0 : x1 + 1]
        return np.ascontiguousarray(img)

    def _pre_at(self, res: int | None):
        return self.pre if res is None or res == self.size else self.loaded.preprocess_at(res)

    def _embeddings(self, geo: PlaneGeometry, ks, crop, progress: ProgressFn | None = None,
                    res: int | None = None):
        ks = [int(k) for k in ks]
        ns = f"{self._vol_sig}-a{geo.axis}"
        res = None if res == self.size else res
        pre = self._pre_at(res)

        def make_input(key):
            x, _meta = pre(self._image(geo, key[1], key[2]))
            return x

        def encode(batch):
            t0 = time.perf_counter()
            workers = self.options.encode_workers or 1
            if workers > 1 and len(batch) > 1:
                out = torch.cat(list(_worker_pool(workers).map(self.loaded.encode, batch.split(1))))
            else:
                with torch.inference_mode():
                    out = self.loaded.encode(batch)
            self.timings["encode"] += time.perf_counter() - t0
            return out

        keys = [("s", k, crop) if res is None else ("s", k, crop, res) for k in ks]
        embs = self.cache.get_many(ns, keys, make_input, encode, self.options.batch_size, progress)
        return dict(zip(ks, embs))

    def prepare(self, volume: Volume, progress: ProgressFn | None = None) -> None:
        """Encode every whole slice along the slicing axis (GUI "Prepare")."""
        self._bind(volume)
        geo = PlaneGeometry(self._axis(volume), volume.shape)
        self._embeddings(geo, range(geo.n_slices), None, progress)

    def _emb(self, st: "ObjectState", geo: PlaneGeometry, ks, progress: ProgressFn | None = None):
        return self._embeddings(geo, ks, st.crop, progress, st.res)

    # ------------------------------------------------------------ decoder
    def _decode_multi(self, st, geo, k, emb, box2d, points, labels) -> list[SliceOut]:
        """The three multimask candidates for box + points."""
        return self._decode(st, geo, k, emb, box2d, points=points, labels=labels, multimask=True)

    def _decode(self, st: ObjectState, geo: PlaneGeometry, k: int, emb: torch.Tensor, box2d,
                points=None, labels=None, mask_input=None, multimask: bool = False):
        """Decode slice k with a 2D box (plane px) (+ optional points and dense prompt).
        Returns a SliceOut, or a list of three with ``multimask``."""
        from ..transforms import SliceMeta, longest_side_size

        hw = geo.hw
        crop = st.crop
        hw_crop = hw if crop is None else (crop[3] - crop[1] + 1, crop[2] - crop[0] + 1)
        off = np.zeros(2) if crop is None else np.array([crop[0], crop[1]], dtype=float)
        kwargs: dict[str, Any] = {}
        pre = self._pre_at(st.res)
        size = pre.image_size
        if box2d is not None:
            b = np.asarray(box2d, dtype=float) - np.concatenate([off, off])
            kwargs["boxes"] = pre.box_to_model(b, hw_crop).reshape(1, 4)
        if points is not None and len(points):
            pts = np.asarray(points, dtype=float).reshape(-1, 2) - off
            kwargs["points"] = pre.points_to_model(pts, hw_crop)[None]
            kwargs["point_labels"] = np.asarray(labels, dtype=np.int64)[None]
        if mask_input is not None:
            kwargs["mask_input"] = mask_input
        t0 = time.perf_counter()
        low, iou = self.loaded.decode(emb[None], multimask=multimask, **kwargs)
        meta = SliceMeta(tuple(hw_crop), longest_side_size(hw_crop, size), size)
        logits = self.loaded.postprocess(low, meta)
        self.timings["decode"] += time.perf_counter() - t0
        outs = []
        for i in range(low.shape[1]):
            m_crop = (logits[0, i] > 0).cpu().numpy()
            if crop is None:
                mask = m_crop
            else:
                mask = np.zeros(hw, dtype=bool)
                mask[crop[1] : crop[3] + 1, crop[0] : crop[2] + 1] = m_crop
            outs.append(SliceOut(mask=mask, logits=low[:, i : i + 1].clone(),
                                 box=None if box2d is None else np.asarray(box2d), score=float(iou[0, i])))
        return outs if multimask else outs[0]

    # ------------------------------------------------------------ clicks on a slice
    @staticmethod
    def _clicks_on(st: ObjectState, geo: PlaneGeometry, k: int) -> list[tuple[int, int, bool]]:
        out = []
        for p in st.prompts.points:
            s, x, y = geo.to_plane(p.ijk)
            if int(round(s)) == k:
                out.append((int(round(x)), int(round(y)), p.positive))
        return out

    def _slice_with_clicks(self, st: ObjectState, geo: PlaneGeometry, k: int, emb, base_box,
                           mask_input, clicks, previous: np.ndarray | None = None) -> SliceOut:
        """Decode slice k from its base box, honouring the clicks on it.

        Clicks reshape the box (positive: grow to include it; negative: move the nearest
        side past it). Then a few candidates are decoded (box; box + clicks as point
        prompts, single and multimask) and the one that satisfies most clicks wins; among
        those a non-empty one, then the smallest change from ``previous`` (the slice's mask
        before this click: a correction is local), else the model's predicted IoU. A
        negative click inside a separate blob of a candidate removes that blob."""
        hw = geo.hw
        m = max(self.options.margin, 2)
        box = None if base_box is None else np.asarray(base_box).copy()
        for x, y, pos in clicks:
            if pos:
                pb = np.array([x - m, y - m, x + m, y + m])
                box = pb if box is None else union_box(box, pb)
        if box is None:
            return SliceOut(np.zeros(hw, bool), None, None)
        box = clip_box(box, hw)
        if not clicks:
            return self._decode(st, geo, k, emb, box, mask_input=mask_input)
        grown = box
        if self.options.click_mode == "edit" and previous is None and base_box is not None:
            # a run over prompts that already hold clicks (a re-run, a CLI call with --point):
            # the same two steps as interactively — the slice from its box, then the edit
            # the clicks ask for — so a re-run reproduces the interactive result, for one
            # decoder call instead of the candidates'
            first = self._decode(st, geo, k, emb, clip_box(np.asarray(base_box), hw), mask_input=mask_input)
            previous = first.mask if first.mask.any() else None
        if self.options.click_mode == "edit" and previous is not None and previous.any():
            edit = _local_edit(previous, clicks)
            if all(bool(edit[y, x]) == pos for x, y, pos in clicks):
                self.last_candidate = "local_edit"
                return SliceOut(edit, None, grown, 0.0)
        for x, y, pos in clicks:
            if not pos and box is not None and box[0] <= x <= box[2] and box[1] <= y <= box[3]:
                box = _shrink_past(box, x, y, m)
        pts = [(x, y) for x, y, _ in clicks]
        labels = [1 if pos else 0 for _, _, pos in clicks]
        candidates, kinds = [], []
        if box is not None:
            candidates.append(self._decode(st, geo, k, emb, box, mask_input=mask_input))
            candidates.append(self._decode(st, geo, k, emb, box, points=pts, labels=labels, mask_input=mask_input))
            kinds += ["box", "box+points"]
        candidates.append(self._decode(st, geo, k, emb, grown, points=pts, labels=labels, mask_input=mask_input))
        candidates.extend(self._decode_multi(st, geo, k, emb, grown, pts, labels))
        kinds += ["grown+points", "multi1", "multi2", "multi3"]
        if previous is not None and previous.any():
            candidates.append(SliceOut(_local_edit(previous, clicks), None, grown, 0.0))
            kinds.append("local_edit")
        for c in candidates:
            for x, y, pos in clicks:
                if not pos and c.mask[y, x]:
                    comp = component_at(c.mask, x, y)
                    if comp is not None and comp.sum() < c.mask.sum():
                        c.mask = c.mask & ~comp

        def rank(c: SliceOut):
            agree = dice2d(c.mask, previous) if previous is not None and previous.any() else c.score
            return (sum(bool(c.mask[y, x]) == pos for x, y, pos in clicks), bool(c.mask.any()), agree)

        best = max(range(len(candidates)), key=lambda i: rank(candidates[i]))
        self.last_candidate = kinds[best]
        return candidates[best]

    # ------------------------------------------------------------ main entry
    def predict(self, volume: Volume, prompts: ObjectPrompts, previous: PredictionResult | None = None,
                progress: ProgressFn | None = None) -> PredictionResult:
        if prompts.is_empty():
            raise PromptError("nothing to segment from: give a box or at least one point")
        self._bind(volume)
        t0 = time.perf_counter()
        enc0, dec0 = self.timings["encode"], self.timings["decode"]
        geo = PlaneGeometry(self._axis(volume), volume.shape)
        prev_state = previous.state if previous is not None and isinstance(previous.state, ObjectState) else None
        if prev_state is not None and _is_extension(prev_state, prompts, geo.axis):
            st = prev_state
            new_points = prompts.points[len(st.prompts.points):]
            st = ObjectState(st.axis, st.crop, prompts.copy(), st.bound2d, st.srange, dict(st.slices), st.key,
                             st.res, st.seed_stats)
            self._refine(st, geo, new_points, progress)
            mode = "refine"
        else:
            st = self._new_state(geo, prompts)
            self._full_run(st, geo, progress)
            mode = "full"
        mask = np.zeros(volume.shape, dtype=bool)
        for k, so in st.slices.items():
            if so.mask.any():
                geo.set_slice(mask, k, so.mask)
        if prompts.box is not None:  # the box bounds the object (grown by positive clicks outside it)
            lo, hi = prompts.box.int_bounds()
            for p in prompts.points:
                if p.positive:
                    ijk = np.rint(p.ijk).astype(int)
                    lo, hi = np.minimum(lo, ijk), np.maximum(hi, ijk)
            keep = np.zeros_like(mask)
            keep[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = True
            mask &= keep
        info = {
            "mode": mode,
            "axis": geo.axis,
            "zoom_crop": st.crop,
            "input_size": st.res or self.size,
            "slices": sorted(k for k, s in st.slices.items() if s.mask.any()),
            "seconds": time.perf_counter() - t0,
            "encode_seconds": self.timings["encode"] - enc0,
            "decode_seconds": self.timings["decode"] - dec0,
            # refinement: time to the updated mask on the clicked slice (before re-propagation)
            "click_slice_seconds": self.timings.get("click_slice") if mode == "refine" else None,
        }
        return PredictionResult(mask=mask, state=st, info=info)

    # ------------------------------------------------------------ planning
    def _new_state(self, geo: PlaneGeometry, prompts: ObjectPrompts) -> ObjectState:
        hw = geo.hw
        bound2d = None
        if prompts.box is not None:
            srange, bound2d = geo.box_to_plane(*prompts.box.int_bounds())
            extent = bound2d
        else:
            srange = (0, geo.n_slices - 1)
            pos = [geo.to_plane(p.ijk) for p in prompts.points if p.positive]
            if not pos:
                raise PromptError("points-only prompts need at least one positive (foreground) point")
            xs = [x for _, x, _ in pos]
            ys = [y for _, _, y in pos]
            extent = np.rint([min(xs), min(ys), max(xs), max(ys)]).astype(int)
        # positive clicks outside the box's slice range extend it
        for p in prompts.points:
            if p.positive:
                s = int(round(geo.to_plane(p.ijk)[0]))
                srange = (min(srange[0], s), max(srange[1], s))
        crop = self._choose_crop(extent, hw, from_points=prompts.box is None)
        return ObjectState(geo.axis, crop, prompts.copy(), bound2d, srange, res=self._zoom_res(crop))

    def _choose_crop(self, extent, hw, from_points: bool):
        o = self.options
        side = max(extent[2] - extent[0] + 1, extent[3] - extent[1] + 1)
        if from_points or o.zoom == "never":
            return None
        crop_side = int(max(o.min_crop, round(side * o.zoom_factor)))
        if crop_side >= max(hw):
            return None
        cx, cy = (extent[0] + extent[2]) / 2.0, (extent[1] + extent[3]) / 2.0
        return _square_crop(cx, cy, crop_side, hw)

    def _zoom_res(self, crop) -> int | None:
        """Encoder input size for a zoomed crop (None: the model's S)."""
        up = self.options.zoom_upsample
        if crop is None or not np.isfinite(up) or not self.loaded.supports_reduced_input:
            return None
        side = max(crop[2] - crop[0] + 1, crop[3] - crop[1] + 1)
        res = _round_up(side * up, 16)
        return None if res >= self.size else max(res, 64)

    def _key_slice(self, st: ObjectState, geo: PlaneGeometry) -> tuple[int, np.ndarray | None]:
        if st.prompts.box is not None:
            s0, s1 = geo.box_to_plane(*st.prompts.box.int_bounds())[0]
            return (s0 + s1) // 2, st.bound2d
        first = next(p for p in st.prompts.points if p.positive)
        return int(round(geo.to_plane(first.ijk)[0])), None

    def _full_run(self, st: ObjectState, geo: PlaneGeometry, progress: ProgressFn | None) -> None:
        k, base = self._key_slice(st, geo)
        st.key = k
        s0, s1 = st.srange
        if st.crop is not None and self.options.zoom == "auto":
            self._select_view(st, geo, k, base)
        if st.prompts.box is not None:  # a tight box needs every slice of its range: encode in batches
            self._emb(st, geo, range(s0, s1 + 1), progress)
        emb = self._emb(st, geo, [k])[k]
        clicks = self._clicks_on(st, geo, k)
        if base is None:
            st.slices[k] = self._seed_from_points(st, geo, k, emb, clicks)
            seed = st.slices[k].mask
            if seed.any():
                v = geo.slice_of(self._u8, k)[seed]
                st.seed_stats = (float(v.mean()), float(v.std()))
        else:
            st.slices[k] = self._slice_with_clicks(st, geo, k, emb, base, None, clicks)
        self._propagate(st, geo, k, +1, progress, old=None)
        self._propagate(st, geo, k, -1, progress, old=None)

    def _select_view(self, st: ObjectState, geo: PlaneGeometry, k: int, base) -> None:
        """Zoomed crop or whole slice (or context crop)? Decode the key slice in both views
        and keep the zoom only when the model's own predicted IoU is clearly higher there
        (costs one encode). Sets ``st.crop``/``st.res``."""
        zoom = (st.crop, st.res)
        wide = self._context_view(st, geo)
        scores = []
        for view in (wide, zoom):
            st.crop, st.res = view
            if view is zoom and scores[0] + self.options.zoom_margin >= 1.0:
                break  # the zoom cannot beat a predicted IoU this high by the margin: skip its encode
            emb = self._emb(st, geo, [k])[k]
            scores.append(self._decode(st, geo, k, emb, base).score)
        use_zoom = len(scores) == 2 and scores[1] > scores[0] + self.options.zoom_margin
        st.crop, st.res = zoom if use_zoom else wide

    def _context_view(self, st: ObjectState, geo: PlaneGeometry) -> tuple:
        """The non-zoomed view: the whole slice at S, or (``context``) a square crop of
        ``context`` x the box side around the box at the whole slice's scale."""
        o = self.options
        if o.context is None or st.crop is None:
            return None, None
        x0, y0, x1, y1 = st.crop
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        side = (x1 - x0 + 1) / o.zoom_factor * o.context
        h, w = geo.hw
        if side >= max(h, w):
            return None, None
        crop = _square_crop(cx, cy, side, geo.hw)
        scale = self.size / max(h, w)
        res = _round_up(max(crop[2] - crop[0] + 1, crop[3] - crop[1] + 1) * scale, 16)
        return crop, min(res, self.size)

    def _seed_from_points(self, st, geo, k, emb, clicks) -> SliceOut:
        """Points only: find the object's box on the clicked slice, then the box recipe.

        ``point_seed="scan"``: LiteMedSAM answers boxes, not points, so the box is searched
        for (:meth:`_scan_box`); then the view is chosen as for a box (context crop or zoom)
        and the slice is decoded there. ``"sam"``: SAM's own point decode (multimask, the
        best-rated candidate that honours the clicks) gives the extent."""
        if self.options.point_seed == "scan":
            bb = self._scan_box(st, geo, k, emb, clicks)
            if bb is not None:
                st.crop = self._choose_crop(bb, geo.hw, from_points=False)
                st.res = self._zoom_res(st.crop)
                if st.crop is not None and self.options.zoom == "auto":
                    self._select_view(st, geo, k, bb)
                emb = self._emb(st, geo, [k])[k]
                return self._slice_with_clicks(st, geo, k, emb, bb, None, clicks)
        pts = [(x, y) for x, y, _ in clicks]
        labels = [1 if p else 0 for _, _, p in clicks]
        # a single click is ambiguous: of the candidates that honour the clicks take the one
        # the model rates best (SAM's rule)
        cands = self._decode(st, geo, k, emb, None, points=pts, labels=labels, multimask=True)
        ok = [c for c in cands if c.mask.any() and all(bool(c.mask[y, x]) == p for x, y, p in clicks)]
        first = max(ok, key=lambda c: c.score) if ok else cands[0]
        bb = mask_bbox(first.mask)
        if bb is None:
            m = 8
            pos = [(x, y) for x, y, p in clicks if p]
            bb = np.array([min(x for x, _ in pos) - m, min(y for _, y in pos) - m,
                           max(x for x, _ in pos) + m, max(y for _, y in pos) + m])
        return self._slice_with_clicks(st, geo, k, emb, clip_box(bb, geo.hw), None, clicks)

    def _clicked_part(self, m: np.ndarray, clicks) -> np.ndarray | None:
        """The components of ``m`` under the positive clicks, minus blobs under negative ones."""
        for x, y, p in clicks:
            if not p and m[y, x]:
                c = component_at(m, x, y)
                m = m & ~c if c is not None else m
        parts = [component_at(m, x, y) for x, y, p in clicks if p]
        parts = [c for c in parts if c is not None]
        return np.logical_or.reduce(parts) if parts else None

    def _scan_box(self, st, geo, k, emb, clicks) -> np.ndarray | None:
        """Box search for :meth:`_seed_from_points`: squares of growing size (x1.5) around
        the positive clicks; each is decoded, refitted to the component under the clicks
        (its box + margin) and decoded again; the refit the model rates best wins."""
        h, w = geo.hw
        pos = [(x, y) for x, y, p in clicks if p]
        if not pos:
            return None
        x0, y0, x1, y1 = min(x for x, _ in pos), min(y for _, y in pos), max(x for x, _ in pos), max(y for _, y in pos)
        half = max(4.0, max(h, w) / 64)
        seen: dict[tuple, tuple] = {}
        best = None
        while half <= max(h, w) / 2:
            r = int(round(half))
            box = clip_box(np.array([x0 - r, y0 - r, x1 + r, y1 + r]), geo.hw)
            half *= 1.5
            part = self._clicked_part(self._decode(st, geo, k, emb, box).mask, clicks)
            if part is None:
                continue
            fit = expand_box(mask_bbox(part), self.options.margin, geo.hw)
            key = tuple(int(v) for v in fit)
            if key not in seen:
                out = self._decode(st, geo, k, emb, fit)
                part2 = self._clicked_part(out.mask, clicks)
                ok = part2 is not None and all(bool(part2[y, x]) == p for x, y, p in clicks)
                seen[key] = (ok, out.score)
            ok, score = seen[key]
            if best is None or (ok, score) > best[0]:
                best = ((ok, score), fit)
        return None if best is None else best[1]

    def _base_box(self, st: ObjectState, geo: PlaneGeometry, prev: SliceOut) -> np.ndarray | None:
        bb = mask_bbox(prev.mask)
        if bb is None:
            return None
        bb = expand_box(bb, self.options.margin, geo.hw)
        if st.bound2d is not None:
            inter = intersect_box(bb, st.bound2d)
            bb = inter if inter is not None else bb
        return bb

    def _propagate(self, st: ObjectState, geo: PlaneGeometry, start: int, step: int,
                   progress: ProgressFn | None, old: dict[int, SliceOut] | None) -> None:
        s0, s1 = st.srange
        prev = st.slices[start]
        last_box = prev.box if prev.mask.any() else None
        z = start + step
        while s0 <= z <= s1:
            clicks = self._clicks_on(st, geo, z)
            if old is not None and clicks and z in old:
                break  # refinement: a slice the user clicked on is an anchor
            base = self._base_box(st, geo, prev) if prev.mask.any() else None
            if base is None and any(p for _, _, p in clicks) and last_box is not None:
                base = last_box  # a click where the object had vanished re-seeds it
            if base is None and not any(p for _, _, p in clicks):
                new = SliceOut(np.zeros(geo.hw, bool), None, None)
            else:
                emb = self._prefetch(st, geo, z, step)
                mask_in = prev.logits if (self.options.mask_prompt and prev.mask.any()) else None
                if (old is not None and self.options.refine_own_logits and st.crop is not None and z in old
                        and old[z].logits is not None and old[z].mask.any()):
                    mask_in = old[z].logits  # SAM-style: the slice's own previous prediction
                new = self._slice_with_clicks(st, geo, z, emb, base, mask_in, clicks)
                if new.score < self.options.iou_stop:
                    new = SliceOut(np.zeros(geo.hw, bool), None, None)
                elif st.prompts.box is None and not clicks and new.mask.sum() > 1.5 * max(prev.mask.sum(), 1):
                    new = SliceOut(np.zeros(geo.hw, bool), None, None)  # no box: a sudden growth is a leak
                elif not clicks and self._unlike_seed(st, geo, z, new.mask):
                    new = SliceOut(np.zeros(geo.hw, bool), None, None)  # no box: another tissue
            if old is not None and z in old and dice2d(new.mask, old[z].mask) >= self.options.refine_stop_dice:
                break  # refinement: nothing changes beyond this slice
            st.slices[z] = new
            if new.mask.any():
                last_box = new.box
            elif old is None and not self._clicks_beyond(st, geo, z, step):
                # the object vanished: clear the rest of the range and stop
                zz = z + step
                while s0 <= zz <= s1:
                    st.slices.pop(zz, None)
                    zz += step
                break
            prev = new
            z += step
        if progress:
            progress(1, 1, "propagate")

    def _unlike_seed(self, st: ObjectState, geo: PlaneGeometry, z: int, mask: np.ndarray) -> bool:
        """Points only (no box bounds the slices): the mask on slice z has left the object
        when its mean intensity (model's 0-255 scale) departs from the seed slice's mean by
        more than ``point_intensity_stop`` x the seed's sd, and at least 30."""
        k = self.options.point_intensity_stop
        if st.seed_stats is None or k is None or not mask.any():
            return False
        mean, sd = st.seed_stats
        v = float(geo.slice_of(self._u8, z)[mask].mean())
        return abs(v - mean) > max(k * sd, 30.0)

    def _clicks_beyond(self, st: ObjectState, geo: PlaneGeometry, z: int, step: int) -> bool:
        for p in st.prompts.points:
            s = int(round(geo.to_plane(p.ijk)[0]))
            if p.positive and (s - z) * step > 0:
                return True
        return False

    def _prefetch(self, st: ObjectState, geo: PlaneGeometry, z: int, step: int) -> torch.Tensor:
        ns_keys = [z]
        s0, s1 = st.srange
        zz = z + step
        while len(ns_keys) < self.options.batch_size and s0 <= zz <= s1:
            ns_keys.append(zz)
            zz += step
        return self._emb(st, geo, ns_keys)[z]

    # ------------------------------------------------------------ refinement
    def _refine(self, st: ObjectState, geo: PlaneGeometry, new_points: list[Point],
                progress: ProgressFn | None) -> None:
        for p in new_points:
            k = int(round(geo.to_plane(p.ijk)[0]))
            if p.positive:
                st.srange = (min(st.srange[0], k), max(st.srange[1], k))
            old = dict(st.slices)
            emb = self._emb(st, geo, [k])[k]
            cur = st.slices.get(k)
            base = cur.box if cur is not None and cur.box is not None and cur.mask.any() else None
            if base is None:
                base = self._nearest_box(st, k)
            mask_in = None
            t0 = time.perf_counter()
            st.slices[k] = self._slice_with_clicks(st, geo, k, emb, base, mask_in, self._clicks_on(st, geo, k),
                                                   previous=None if cur is None else cur.mask)
            self.timings["click_slice"] = time.perf_counter() - t0
            # results flow outwards from the key slice: a change on slice k only affects the
            # slices downstream of it (both directions when k is the key slice itself)
            key = st.key if st.key is not None else k
            for step in (+1, -1):
                if k == key or (k - key) * step > 0:
                    self._propagate(st, geo, k, step, progress, old=old)

    @staticmethod
    def _nearest_box(st: ObjectState, k: int) -> np.ndarray | None:
        best = None
        for z, so in st.slices.items():
            if so.mask.any() and so.box is not None and (best is None or abs(z - k) < abs(best[0] - k)):
                best = (z, so.box)
        return None if best is None else best[1]


_POOLS: dict[int, Any] = {}


def _worker_pool(n: int):
    """A process-wide pool of ``n`` encoder threads, each with one intra-op thread."""
    if n not in _POOLS:
        from concurrent.futures import ThreadPoolExecutor

        _POOLS[n] = ThreadPoolExecutor(n, thread_name_prefix="sam-med-encode",
                                       initializer=torch.set_num_threads, initargs=(1,))
    return _POOLS[n]


def _round_up(v: float, m: int) -> int:
    return int(np.ceil(v / m) * m)


def _square_crop(cx: float, cy: float, side: float, hw) -> tuple[int, int, int, int]:
    """Inclusive (x0, y0, x1, y1) square of ``side`` px centred on (cx, cy), shifted to lie
    inside the plane (clipped to it when larger)."""
    h, w = hw
    side = int(round(side))
    sx, sy = min(side, w), min(side, h)
    x0 = int(np.clip(round(cx - sx / 2), 0, w - sx))
    y0 = int(np.clip(round(cy - sy / 2), 0, h - sy))
    return (x0, y0, x0 + sx - 1, y0 + sy - 1)


def _local_edit(mask: np.ndarray, clicks) -> np.ndarray:
    """The smallest edit of ``mask`` that honours the clicks: a disk at each unsatisfied
    click, reaching from the click to the mask's edge, is added (positive) or cut (negative)."""
    from scipy import ndimage

    out = mask.copy()
    yy, xx = np.ogrid[: mask.shape[0], : mask.shape[1]]
    for x, y, pos in clicks:
        if bool(out[y, x]) == pos:
            continue
        # distance from the click to the nearest pixel of the other kind
        dist = ndimage.distance_transform_edt(~out if pos else out)
        r = max(float(dist[y, x]), 1.5)
        disk = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
        out = (out | disk) if pos else (out & ~disk)
    return out


def _shrink_past(box: np.ndarray, x: int, y: int, m: int) -> np.ndarray | None:
    """Move the box side nearest to (x, y) just past it, so the click lies outside."""
    d = [x - box[0], y - box[1], box[2] - x, box[3] - y]
    side = int(np.argmin(d))
    b = box.copy()
    if side == 0:
        b[0] = x + 1
    elif side == 1:
        b[1] = y + 1
    elif side == 2:
        b[2] = x - 1
    else:
        b[3] = y - 1
    if b[2] < b[0] or b[3] < b[1]:
        return None
    return b


def _is_extension(st: ObjectState, prompts: ObjectPrompts, axis: int) -> bool:
    """True when ``prompts`` = the state's prompts + appended points (same box, same axis)."""
    old = st.prompts
    if st.axis != axis or old.box != prompts.box or len(prompts.points) <= len(old.points):
        return False
    return prompts.points[: len(old.points)] == old.points


__all__ = ["SliceWisePredictor", "SliceWiseOptions", "ObjectState", "SliceOut"]
