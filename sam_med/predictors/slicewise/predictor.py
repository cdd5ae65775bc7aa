"""The slice-wise predictor (the package docstring gives the recipe). One driver, two API
levels, as SAM 2's video predictor (slices = frames):

* ``state = init_state(volume, prompts)``; ``k, plane = add_prompts(state, points, box=...,
  key_box=...)`` decodes the prompted slice at once (the key slice of a first run, the clicked
  slice of a refinement); ``for k, plane in propagate(state): ...`` yields every slice the
  prompts changed, the prompted slice first, as they are decoded (a GUI paints them as they
  come; ``break`` cancels); :meth:`volume_mask` assembles the 3D mask. Planes are in the
  volume's own index order: ``np.take(mask3d, k, axis)``.
* :meth:`segment` is the driver every front end uses: the refine-or-run decision, a box with
  clicks replayed as the box's run then each click, every changed slice yielded as
  ``(axis, k, plane)``; it returns the ``PredictionResult``. :meth:`predict` (the
  :class:`~sam_med.predictors.base.VolumePredictor` contract) runs it to the end, and
  ``Session.stream`` / ``Session.set_prompts`` / the CLI all go through it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Generator, Iterator, Sequence

import numpy as np
import torch

from ...errors import PromptError
from ...models import load_model
from ...prompts import Box, KeySliceBox, ObjectPrompts, Point
from ...volume import Volume
from ..base import PredictionInfo, PredictionResult, ProgressFn, build_options
from ..embedding_cache import EmbeddingCache
from ..planes import PlaneGeometry
from .clicks import clicks_on
from .clicks import slice_with_clicks as decode_with_clicks
from .constants import MARGIN
from .corrections import apply_click
from .decoding import SliceDecoder
from .encoding import SliceEncoder
from .options import SliceWiseOptions, check_options, resolve_workers
from .propagation import intensity_stats, propagate_pass
from .seeding import seed_from_points
from .skipping import skip_pass, uses_skipping
from .state import ObjectState, Propagation, SliceOut, adopted, is_extension, keep_region, volume_plane
from .views import budget_res, cap_view, choose_crop, select_view
from .volume_binding import VolumeBinding

Update = tuple  # (axis, k, plane): slice k along voxel axis ``axis``, in the volume's index order

__all__ = ["SliceWisePredictor"]


class SliceWisePredictor:
    """3D segmentation with a 2D promptable model, slice by slice (implements ``VolumePredictor``).

    ``SliceWisePredictor(model="lite_medsam", checkpoint=None, device="cpu", cache=None,
    cache_dir=None, loaded=None, options=None, **option_values)``: ``loaded`` a ready
    :class:`~sam_med.models.LoadedModel` (else ``model``/``checkpoint`` are loaded);
    ``cache`` an :class:`EmbeddingCache` to share (else one with ``cache_dir``);
    ``options`` a :class:`SliceWiseOptions` and/or its fields as keywords (typed: strings
    from a command line are converted; unknown names raise ``OptionError``)."""

    def __init__(self, model: str = "lite_medsam", *, checkpoint: str | None = None, device: str = "cpu",
                 cache: EmbeddingCache | None = None, cache_dir: str | None = None, loaded=None,
                 options: SliceWiseOptions | None = None, **option_values: Any) -> None:
        base = {} if options is None else dataclasses.asdict(options)
        opts = build_options(SliceWiseOptions, {**base, **option_values}, owner="the slice-wise predictor")
        self.loaded = loaded if loaded is not None else load_model(model, checkpoint=checkpoint, device=device)
        self.model_name = self.loaded.name
        self.checkpoint_sha256 = getattr(self.loaded, "sha256", None)
        self.cache = cache if cache is not None else EmbeddingCache(cache_dir=cache_dir)
        self.size = int(self.loaded.image_size)
        check_options(opts, self.size, self.loaded.supports_reduced_input)
        on_cpu = not str(getattr(self.loaded, "device", "cpu")).startswith(("cuda", "mps"))
        self.options = resolve_workers(opts, on_cpu, torch.get_num_threads())
        self.timings: dict[str, float] = {"encode": 0.0, "decode": 0.0}
        self.binding = VolumeBinding(self.loaded, window=opts.window, modality=opts.modality)
        self.encoder = SliceEncoder(self.loaded, self.binding, self.cache, batch_size=opts.batch_size,
                                    workers=opts.encode_workers, timings=self.timings)
        self.decoder = SliceDecoder(self.loaded, self.encoder.transform, self.timings)

    # ------------------------------------------------------------ volume + geometry
    def bind(self, volume: Volume) -> None:
        """Map ``volume`` to the model's 0..255 range (once; a no-op for the bound volume)."""
        self.binding.bind(volume)

    def axis_for(self, volume: Volume) -> int:
        """The slicing axis: the ``axis`` option, else the scan's acquisition axis."""
        return volume.slice_axis if self.options.axis is None else int(self.options.axis)

    def geometry(self, volume: Volume, axis: int | None = None) -> PlaneGeometry:
        """Bind ``volume`` and return its plane geometry along ``axis`` (default :meth:`axis_for`)."""
        self.bind(volume)
        return PlaneGeometry(self.axis_for(volume) if axis is None else int(axis), volume.shape)

    @property
    def model_range(self) -> np.ndarray:
        """The bound volume on the model's 0..255 scale, float32, the volume's shape."""
        return self.binding.model_range

    def embedding_namespace(self, axis: int) -> str:
        """The embedding-cache namespace of the bound volume's slices along ``axis``."""
        return self.binding.namespace(axis)

    def slice_image(self, geo: PlaneGeometry, k: int, crop=None) -> np.ndarray:
        """Slice ``k`` of the bound volume (0..255, ``(H, W)`` or the inclusive crop)."""
        return self.binding.slice_image(geo, k, crop)

    # ------------------------------------------------------------ views
    def choose_crop(self, extent, hw, from_points: bool = False):
        """The zoom crop for a 2D extent (see :func:`~.views.choose_crop`)."""
        return choose_crop(self.options, extent, hw, from_points)

    def choose_view(self, st: ObjectState, geo: PlaneGeometry, k: int, base) -> tuple:
        """Zoom (the state's current view) or context view, by the key slice's predicted IoU."""
        def score(view) -> float:
            emb = self.embeddings(geo, [k], view[0], None, view[1])[k]
            return self.decode_slice(geo, k, view, emb, base).score

        return select_view(self.options, st.view, geo.hw, self.size, score, self.loaded.supports_reduced_input,
                           cap=st.res_cap)

    # ------------------------------------------------------------ encoder / decoder
    def embeddings(self, geo: PlaneGeometry, ks: Sequence[int], crop=None, progress: ProgressFn | None = None,
                   res: int | None = None) -> dict[int, torch.Tensor]:
        """``{k: (256, 64, 64) embedding}`` of slices ``ks`` of the bound volume in view (crop, res)."""
        return self.encoder.embeddings(geo, ks, crop, progress, res)

    def view_embeddings(self, st: ObjectState, geo: PlaneGeometry, ks, progress: ProgressFn | None = None):
        """Embeddings of slices ``ks`` in the object's view."""
        return self.encoder.embeddings(geo, ks, st.crop, progress, st.res)

    def prefetch(self, st: ObjectState, geo: PlaneGeometry, z: int, step: int, n: int = 1) -> torch.Tensor:
        """Embedding of slice ``z`` in the object's view; when it is not cached, encoded in one
        batch with the uncached slices ``z + i * n * step`` ahead within the slice range
        (:meth:`SliceEncoder.ahead`; ``n``: the slice step)."""
        s0, s1 = st.srange
        ks = [k for k in (z + i * n * step for i in range(2 * max(1, self.options.batch_size))) if s0 <= k <= s1]
        return self.encoder.ahead(geo, ks or [z], st.crop, st.res)

    def decode_slice(self, geo: PlaneGeometry, k: int, view, emb, box2d, points=None, labels=None,
                     mask_input=None, multimask: bool = False):
        """Decode slice ``k`` (``emb``: its embedding in ``view``) from a 2D box (plane px),
        optional points + labels and dense prompt (see :meth:`~.decoding.SliceDecoder.decode`).
        Every decoder call of the algorithm goes through here."""
        return self.decoder.decode(geo, view, emb, box2d, points, labels, mask_input, multimask)

    def slice_with_clicks(self, st: ObjectState, geo: PlaneGeometry, k: int, emb, base_box, mask_input,
                          clicks, previous: np.ndarray | None = None) -> SliceOut:
        """Decode slice ``k`` of the object from ``base_box`` honouring ``clicks`` (see :mod:`.clicks`)."""
        def decode(box, points=None, labels=None, mask_input=None, multimask=False):
            return self.decode_slice(geo, k, st.view, emb, box, points, labels, mask_input, multimask)

        return decode_with_clicks(decode, geo.hw, base_box, mask_input, clicks, margin=MARGIN, previous=previous)

    def prepare(self, volume: Volume, progress: ProgressFn | None = None) -> None:
        """Encode every whole slice along the slicing axis (GUI "Prepare")."""
        geo = self.geometry(volume)
        self.embeddings(geo, range(geo.n_slices), None, progress)

    # ------------------------------------------------------------ SAM 2 style API
    def init_state(self, volume: Volume, prompts: ObjectPrompts | None = None) -> ObjectState:
        """A new object on ``volume`` (bound now), with optional initial ``prompts``; nothing
        is decoded until :meth:`add_prompts`."""
        prompts = (prompts or ObjectPrompts()).copy()
        axis = prompts.key_box.axis if prompts.box is None and prompts.key_box is not None else None
        geo = self.geometry(volume, axis)
        return ObjectState(axis=geo.axis, prompts=prompts, volume=volume)

    def add_prompts(self, state: ObjectState, points: Sequence[Point] = (), *, box: Box | None = None,
                    key_box: KeySliceBox | None = None,
                    progress: ProgressFn | None = None) -> tuple[int, np.ndarray]:
        """Add ``points`` (voxel clicks) and/or a ``box`` (tight 3D) or ``key_box`` (a rectangle
        on one slice + a slice range) to the object; decode the prompted slice at once and
        return ``(k, plane)``: the slice index along ``state.axis`` and its bool mask in the
        volume's index order.

        A state not run yet, or a new box, starts a first run: the key slice (the box's middle
        slice, or the first positive click's slice), both directions left for
        :meth:`propagate`. On a run state each point is a refinement click under the
        ``click_rule``; the slices it changed are left for :meth:`propagate` to yield."""
        geo = self._state_geometry(state)
        points = list(points)
        if box is not None or key_box is not None or state.key is None:
            old = state.prompts
            prompts = ObjectPrompts(box=box if box is not None else (None if key_box is not None else old.box),
                                    key_box=key_box if key_box is not None else (None if box is not None else old.key_box),
                                    points=list(old.points) + points)
            if prompts.is_empty():
                raise PromptError("nothing to segment from: give a box or at least one point")
            if prompts.box is None and prompts.key_box is not None:
                state.axis = int(prompts.key_box.axis)
            elif box is not None:
                state.axis = self.axis_for(state.volume)
            geo = self._state_geometry(state)
            fresh = ObjectState(axis=state.axis, prompts=prompts, volume=state.volume)
            for f in dataclasses.fields(ObjectState):
                setattr(state, f.name, getattr(fresh, f.name))
            self._plan(state, geo)
            k = self._first_slice(state, geo, progress)
            return k, volume_plane(state.slices[k].mask, k, geo, keep_region(state, geo))
        if not points:
            raise PromptError("add_prompts needs points, a box or a key-slice box")
        self._drain(state, progress)
        state.prompts = ObjectPrompts(box=state.prompts.box, points=list(state.prompts.points) + points,
                                      key_box=state.prompts.key_box)
        for p in points:
            k = self._click(state, geo, p)
        return k, volume_plane(state.slices[k].mask, k, geo, keep_region(state, geo))

    def propagate(self, state: ObjectState, progress: ProgressFn | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(k, plane)`` for every slice the prompts changed since the last call, in the
        volume's index order: first the slices :meth:`add_prompts` changed (the prompted slice
        first), then every slice of the pending passes as it is decoded. ``progress(done,
        total, "propagate")`` counts slices over the planned slice range. ``break`` cancels:
        slices decoded so far stay in the state, the rest of the pending passes are dropped."""
        geo = self._state_geometry(state)
        keep = keep_region(state, geo)
        s0, s1 = state.srange
        total = max(1, s1 - s0 + 1) if state.pending else max(1, len(state.changed))
        done = 0
        try:
            while state.changed:
                k = state.changed.pop(0)
                done += 1
                if progress:
                    progress(min(done, total), total, "propagate")
                yield k, volume_plane(state.slices[k].mask, k, geo, keep)
            while state.pending:
                job = state.pending.pop(0)
                run = skip_pass if uses_skipping(self.options, state, job) else propagate_pass
                for z, out in run(self, state, geo, job):
                    done += 1
                    if progress:
                        progress(min(done, total), total, "propagate")
                    yield z, volume_plane(out.mask, z, geo, keep)
            if progress:
                progress(total, total, "propagate")
        finally:
            state.pending.clear()
            state.changed.clear()

    def volume_mask(self, state: ObjectState) -> np.ndarray:
        """The object's bool mask on the volume grid, kept inside its box (grown by positive
        clicks outside it)."""
        geo = PlaneGeometry(state.axis, state.volume.shape)
        mask = np.zeros(state.volume.shape, dtype=bool)
        for k, so in state.slices.items():
            if so.mask.any():
                geo.set_slice(mask, k, so.mask)
        keep = keep_region(state, geo)
        if keep is None:
            return mask
        (i0, j0, k0), (i1, j1, k1) = keep
        out = np.zeros_like(mask)
        out[i0:i1 + 1, j0:j1 + 1, k0:k1 + 1] = mask[i0:i1 + 1, j0:j1 + 1, k0:k1 + 1]
        return out

    def adopt_mask(self, result: PredictionResult, mask: np.ndarray) -> PredictionResult | None:
        """``result`` with ``mask`` (a hand edit on the volume grid) as its state's slices, so the
        next click refines the edited mask (``Session.set_mask``); None for a foreign result."""
        if not isinstance(result.state, ObjectState) or result.state.volume is None:
            return None
        st = adopted(result.state, np.asarray(mask, dtype=bool), PlaneGeometry(result.state.axis, mask.shape))
        return PredictionResult(mask=mask, state=st, info=dataclasses.replace(result.info, slices=st.mask_slices()))

    # ------------------------------------------------------------ the driver
    def segment(self, volume: Volume, prompts: ObjectPrompts, previous: PredictionResult | None = None,
                progress: ProgressFn | None = None) -> Generator[Update, None, PredictionResult]:
        """Segment one object from its full prompt set, yielding ``(axis, k, plane)`` for every
        slice as it changes; returns the :class:`PredictionResult`. A ``previous`` result whose
        prompts these extend by clicks is refined (its state branched, never modified); else the
        box's run comes first and each click is replayed after it, in order, so a re-run (a
        reloaded session, one ``sam-med segment`` per CVPR25 step) gives the masks of the
        interactive session that made the prompts. Closing the generator stops after the slice
        being decoded."""
        if prompts.is_empty():
            raise PromptError("nothing to segment from: give a box or at least one point")
        kb = prompts.key_box if prompts.box is None else None
        geo = self.geometry(volume, None if kb is None else kb.axis)
        t0 = time.perf_counter()
        enc0, dec0 = self.timings["encode"], self.timings["decode"]
        prev = previous.state if previous is not None and isinstance(previous.state, ObjectState) else None
        click_s = None
        if prev is not None and is_extension(prev, prompts, geo.axis):
            st = prev.branch(prev.prompts)
            st.volume = volume
            steps: list[list[Point]] = [[p] for p in prompts.points[len(prev.prompts.points):]]
            mode = "refine"
        else:
            boxed = prompts.box is not None or prompts.key_box is not None
            st = self.init_state(volume, ObjectPrompts(box=prompts.box, key_box=prompts.key_box) if boxed else prompts)
            self.add_prompts(st, progress=progress)
            yield from self._updates(st, progress)
            steps = [[p] for p in prompts.points] if boxed else []
            mode = "full"
        for pts in steps:
            c0 = time.perf_counter()
            self.add_prompts(st, pts, progress=progress)
            click_s = time.perf_counter() - c0
            yield from self._updates(st, progress)
        info = PredictionInfo(mode=mode, axis=geo.axis, slices=st.mask_slices(), seconds=time.perf_counter() - t0,
                              encode_seconds=self.timings["encode"] - enc0, decode_seconds=self.timings["decode"] - dec0,
                              click_slice_seconds=click_s if mode == "refine" else None, zoom_crop=st.crop,
                              input_size=st.res or self.size, res_cap=st.res_cap, confidence=st.confidence())
        return PredictionResult(mask=self.volume_mask(st), state=st, info=info)

    def predict(self, volume: Volume, prompts: ObjectPrompts, previous: PredictionResult | None = None,
                progress: ProgressFn | None = None) -> PredictionResult:
        """:meth:`segment` run to the end (the ``VolumePredictor`` contract)."""
        gen = self.segment(volume, prompts, previous, progress)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return stop.value

    # ------------------------------------------------------------ steps
    def _state_geometry(self, state: ObjectState) -> PlaneGeometry:
        if state.volume is None:
            raise PromptError("this state has no volume: make it with init_state(volume, prompts)")
        return self.geometry(state.volume, state.axis)

    def _drain(self, state: ObjectState, progress: ProgressFn | None) -> None:
        all(True for _ in self.propagate(state, progress))

    def _updates(self, state: ObjectState, progress: ProgressFn | None) -> Iterator[Update]:
        axis = int(state.axis)
        for k, plane in self.propagate(state, progress):
            yield axis, int(k), plane

    def _plan(self, st: ObjectState, geo: PlaneGeometry) -> None:
        """Slice range, in-plane bound and first view of a first run."""
        prompts = st.prompts
        st.key_only = False
        if prompts.box is not None:
            st.srange, st.bound2d = geo.box_to_plane(*prompts.box.int_bounds())
            extent = st.bound2d
        elif prompts.key_box is not None:
            kb = prompts.key_box
            st.srange = (int(kb.range[0]), int(kb.range[1]))
            st.bound2d = np.rint(np.asarray(kb.rect, dtype=float)).astype(int)
            st.key_only = True  # the rectangle bounds the key slice only
            extent = st.bound2d
        else:
            st.srange = (0, geo.n_slices - 1)
            pos = [geo.to_plane(p.ijk) for p in prompts.points if p.positive]
            if not pos:
                raise PromptError("points-only prompts need at least one positive (foreground) point")
            xs = [x for _, x, _ in pos]
            ys = [y for _, _, y in pos]
            extent = np.rint([min(xs), min(ys), max(xs), max(ys)]).astype(int)
        for p in prompts.points:  # positive clicks outside the box's slice range extend it
            if p.positive:
                s = int(round(geo.to_plane(p.ijk)[0]))
                st.srange = (min(st.srange[0], s), max(st.srange[1], s))
        crop = self.choose_crop(extent, geo.hw, from_points=st.bound2d is None)
        st.res_cap = None if st.bound2d is None else budget_res(
            self.options, st.srange[1] - st.srange[0] + 1, self.size, self.loaded.supports_reduced_input)
        st.set_view(cap_view((crop, None), st.res_cap, self.size))

    def _first_slice(self, st: ObjectState, geo: PlaneGeometry, progress: ProgressFn | None) -> int:
        """Decode the key slice of a first run; leave both directions pending."""
        if st.prompts.box is not None:
            s0, s1 = geo.box_to_plane(*st.prompts.box.int_bounds())[0]
            k, base = (s0 + s1) // 2, st.bound2d
        elif st.prompts.key_box is not None:
            k, base = int(st.prompts.key_box.slice), st.bound2d
        else:
            first = next(p for p in st.prompts.points if p.positive)
            k, base = int(round(geo.to_plane(first.ijk)[0])), None
        st.key = k
        if progress:  # the object's slices, at once: the bar shows before the key slice is encoded
            progress(0, st.srange[1] - st.srange[0] + 1, "propagate")
        if st.crop is not None and self.options.zoom == "auto":
            st.set_view(self.choose_view(st, geo, k, base))
        # the key slice alone first (time to the first mask); propagation encodes the rest
        # as it reaches them, in batches of batch_size (prefetch)
        emb = self.view_embeddings(st, geo, [k], progress)[k]
        clicks = clicks_on(st.prompts.points, geo, k)
        if base is None:
            st.slices[k] = seed_from_points(self, st, geo, k, emb, clicks)
            seed = st.slices[k].mask
            if seed.any():
                st.seed_stats = intensity_stats(geo.slice_of(self.model_range, k), seed)
        else:
            st.slices[k] = self.slice_with_clicks(st, geo, k, emb, base, None, clicks)
        st.changed = [k]
        st.pending = [Propagation(k, +1), Propagation(k, -1)]
        return k

    def _click(self, st: ObjectState, geo: PlaneGeometry, p: Point) -> int:
        """Apply refinement click ``p`` (already in ``st.prompts``) under the click rule
        (:mod:`.corrections`); the slices it changed are queued for :meth:`propagate`."""
        k = int(round(geo.to_plane(p.ijk)[0]))
        t0 = time.perf_counter()
        changed = apply_click(self, st, geo, p, k)
        self.timings["click_slice"] = time.perf_counter() - t0
        st.changed.extend(z for z in ([k] + changed) if z not in st.changed)
        return k

