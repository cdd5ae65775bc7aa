"""SAM 2 video-style tracking through a volume: slices are frames.

API (mirrors ``SAM2VideoPredictor``, with a dataclass state and a bounded memory bank)::

    eng = Sam2VideoEngine(model, frame_transform)
    state = eng.init_state(frames_uint8)                 # (D, H, W), nothing encoded yet
    logits = eng.add_prompts(state, z, obj_id, points=[[x, y]], labels=[1], box=[x0, y0, x1, y1])
    for z, logits in eng.propagate(state, obj_id, start=z, reverse=False): ...
    mask = eng.volume_mask(state, obj_id)                # (D, H, W) bool

Coordinates are pixels of the original slice (x = column, y = row); logits are returned at
the slice's size (bilinear from S/4, as the reference). A prompt on a slice makes it a
conditioning frame; propagation from it runs until ``end`` (default: the volume's edge).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import PromptError
from .state import FeatureCache, FrameOut, ObjectTrack, VideoState

__all__ = ["Sam2VideoEngine", "fill_small_holes"]


def fill_small_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Background components (logits <= 0, 8-connected) of at most ``max_area`` pixels get
    logit 0.1, as the reference's ``fill_holes_in_mask_scores`` (which runs only where its
    CUDA extension loads)."""
    if max_area <= 0:
        return logits
    from scipy import ndimage

    out = logits.clone()
    for b in range(logits.shape[0]):
        bg = (logits[b, 0] <= 0).cpu().numpy()
        lab, n = ndimage.label(bg, structure=np.ones((3, 3), dtype=bool))
        if n == 0:
            continue
        areas = np.bincount(lab.ravel())
        small = (areas <= max_area)
        small[0] = False
        hole = torch.from_numpy(small[lab]).to(logits.device)
        out[b, 0] = torch.where(hole, torch.tensor(0.1, dtype=logits.dtype, device=logits.device), logits[b, 0])
    return out


class Sam2VideoEngine:
    """Runs a :class:`~sam_med.models.sam2.Sam2Model` over a volume's slices.

    ``frame_transform``: uint8 ``(H, W)`` slice -> ``(3, S, S)`` normalised (the config's
    ``preprocessing.frame``). ``cache_bytes``: budget of the encoder-feature cache.
    ``fill_hole_area``: see :func:`fill_small_holes` (reference default 8; 0 = off)."""

    def __init__(self, model, frame_transform, device: str | torch.device = "cpu", *,
                 cache_bytes: int = 1 << 30, fill_hole_area: int = 0) -> None:
        self.model = model
        self.frame_transform = frame_transform
        self.device = torch.device(device)
        self.cache_bytes = int(cache_bytes)
        self.fill_hole_area = int(fill_hole_area)
        cfg = model.cfg
        self.keep_mem = cfg.num_maskmem - 1
        self.max_ptrs = cfg.max_obj_ptrs_in_encoder
        self.size = int(model.image_size)

    # ------------------------------------------------------------------ state
    def init_state(self, frames: np.ndarray, key: tuple = ()) -> VideoState:
        """``frames`` uint8 ``(D, H, W)``: the slices after the intensity step."""
        frames = np.asarray(frames)
        if frames.ndim != 3 or min(frames.shape) < 1:
            raise ValueError(f"frames must be (D, H, W), got shape {frames.shape}")
        state = VideoState(frames=frames, cache=None, key=key)  # type: ignore[arg-type]
        state.cache = FeatureCache(lambda z: self._encode(state, z), self.cache_bytes)
        return state

    def frame_tensor(self, state: VideoState, z: int) -> torch.Tensor:
        x = self.frame_transform(state.frames[z])
        x = torch.as_tensor(np.asarray(x.cpu() if torch.is_tensor(x) else x))
        return x.to(self.device).float().unsqueeze(0)

    @torch.inference_mode()
    def _encode(self, state: VideoState, z: int):
        return self.model.encode_frames(self.frame_tensor(state, z))

    def _to_model(self, state: VideoState, xy: torch.Tensor) -> torch.Tensor:
        h, w = state.hw
        return xy / torch.tensor([w, h], dtype=torch.float32) * self.size

    def _video_res(self, state: VideoState, low: torch.Tensor) -> torch.Tensor:
        h, w = state.hw
        if tuple(low.shape[-2:]) == (h, w):
            return low
        return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)

    # ------------------------------------------------------------------ prompts
    @torch.inference_mode()
    def add_prompts(self, state: VideoState, z: int, obj_id: int, points: Sequence | None = None,
                    labels: Sequence | None = None, box: Sequence | None = None) -> torch.Tensor:
        """Set the prompts of slice ``z`` for ``obj_id`` (all of them: a box first, then the
        points in click order) and decode it; it becomes a conditioning slice. The slice's
        previous logits (if any) go in as the mask prompt. Returns logits ``(H, W)``."""
        if not 0 <= int(z) < state.num_frames:
            raise PromptError(f"slice {z} is outside the volume (0..{state.num_frames - 1})")
        z = int(z)
        pts = torch.zeros((0, 2), dtype=torch.float32)
        lab = torch.zeros((0,), dtype=torch.int32)
        if points is not None and len(points):
            pts = torch.as_tensor(np.asarray(points, dtype=np.float32)).reshape(-1, 2)
            lab = torch.as_tensor(np.asarray(labels, dtype=np.int32)).reshape(-1)
            if lab.numel() != pts.shape[0]:
                raise PromptError(f"{pts.shape[0]} points but {lab.numel()} labels")
        if box is not None:
            pts = torch.cat([torch.as_tensor(np.asarray(box, dtype=np.float32)).reshape(2, 2), pts], 0)
            lab = torch.cat([torch.tensor([2, 3], dtype=torch.int32), lab], 0)
        if pts.shape[0] == 0:
            raise PromptError(f"slice {z}: give a box or at least one point")
        coords = self._to_model(state, pts[None]).to(self.device)
        labs = lab[None].to(self.device)
        track = state.track(obj_id)
        track.prompts[z] = (coords, labs)
        first = z not in track.tracked
        prev = track.logits.get(z)
        if prev is not None:
            prev = torch.clamp(prev.to(self.device), -32.0, 32.0)
        f = state.cache.get(z)
        bank = {t: o.bank_entry() for t, o in track.cond.items() if o.maskmem is not None}
        recent = {t: o.bank_entry() for t, o in track.recent.items()}
        pix = self.model.condition(f, z, state.num_frames, bank, recent, track.tracked.get(z, False), first)
        d = self.model.decode(pix, f.high_res, coords, labs, prev, self.model.use_multimask(first, pts.shape[0]))
        low = fill_small_holes(d.low_res, self.fill_hole_area)
        track.cond[z] = FrameOut(low, d.obj_ptr, d.object_score, None)
        track.logits[z] = low
        return self._video_res(state, low)[0, 0]

    @torch.inference_mode()
    def _finalise_cond(self, state: VideoState, track: ObjectTrack) -> None:
        """Memories of the prompted slices, from their (binarised) masks, before tracking."""
        for z, out in track.cond.items():
            if out.maskmem is None:
                high = F.interpolate(out.low_res, size=(self.size, self.size), mode="bilinear", align_corners=False)
                out.maskmem = self.model.encode_memory(state.cache.get(z), high, out.object_score, True)

    # ------------------------------------------------------------------ propagation
    @torch.inference_mode()
    def propagate(self, state: VideoState, obj_id: int, start: int | None = None, reverse: bool = False,
                  end: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """Track ``obj_id`` slice by slice from ``start`` (default: its first prompted slice)
        towards ``end`` (inclusive; default: the volume's edge). Yields ``(slice, logits (H, W))``;
        prompted slices yield their own output. The bank of recent slices starts empty."""
        track = state.objects.get(obj_id)
        if track is None or not track.cond:
            raise PromptError(f"object {obj_id} has no prompts: add a box or a point first")
        self._finalise_cond(state, track)
        n = state.num_frames
        start = min(track.cond) if start is None else int(start)
        end = (0 if reverse else n - 1) if end is None else int(end)
        order = range(start, end - 1, -1) if reverse else range(start, end + 1)
        if reverse and start == 0:
            order = range(0)  # as the reference: no reverse pass from the first slice
        track.recent.clear()
        max_ptrs = min(n, self.max_ptrs)
        bank = {t: o.bank_entry() for t, o in track.cond.items()}
        for z in order:
            if z in track.cond:
                low = track.cond[z].low_res
            else:
                f = state.cache.get(z)
                recent = {t: o.bank_entry() for t, o in track.recent.items()}
                pix = self.model.condition(f, z, n, bank, recent, reverse, False)
                d = self.model.decode(pix, f.high_res, multimask=self.model.use_multimask(False, 0))
                mem = self.model.encode_memory(f, d.high_res, d.object_score, False)
                low = fill_small_holes(d.low_res, self.fill_hole_area)
                track.remember(z, FrameOut(low, d.obj_ptr, d.object_score, mem), self.keep_mem, max_ptrs - 1)
                track.logits[z] = low
            track.tracked[z] = reverse
            yield z, self._video_res(state, low)[0, 0]

    def volume_mask(self, state: VideoState, obj_id: int, threshold: float = 0.0) -> np.ndarray:
        """``(D, H, W)`` bool: the latest logits of every slice run for ``obj_id`` > threshold."""
        out = np.zeros(state.frames.shape, dtype=bool)
        track = state.objects.get(obj_id)
        for z, low in (track.logits.items() if track else ()):
            out[z] = (self._video_res(state, low)[0, 0] > threshold).cpu().numpy()
        return out

    def reset(self, state: VideoState, obj_id: int | None = None) -> None:
        """Forget one object's (or all objects') prompts and results; features stay cached."""
        for k in ([obj_id] if obj_id is not None else list(state.objects)):
            state.objects.pop(k, None)
