"""What a SAM 2 video-style session keeps: the frames (slices) and their cached encoder
features, and per object its prompts, its memory bank and its per-slice logits.

The memory bank is bounded: the prompted (conditioning) slices, plus the outputs of the last
``max(num_maskmem - 1, max_obj_ptrs - 1)`` tracked slices of the current pass, of which only
the last ``num_maskmem - 1`` keep their spatial memory (the older ones keep their 256-float
object pointer). It does not grow with the number of slices.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

__all__ = ["FrameOut", "ObjectTrack", "FeatureCache", "VideoState"]


@dataclass
class FrameOut:
    """One slice's output for one object: low-res logits ``(1, 1, S/4, S/4)``, object pointer
    ``(1, 256)``, object score ``(1, 1)`` and, while it is in the bank, its memory ``(1, 64, h, w)``."""

    low_res: torch.Tensor
    obj_ptr: torch.Tensor
    object_score: torch.Tensor
    maskmem: torch.Tensor | None = None

    def bank_entry(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        return self.maskmem, self.obj_ptr


@dataclass
class ObjectTrack:
    """One object: prompts per slice (model-pixel xy coordinates ``(1, N, 2)`` and labels
    ``(1, N)``), the conditioning outputs, the bounded bank of recent outputs, the latest
    low-res logits of every slice it was run on, and the direction each slice was tracked in."""

    obj_id: int
    prompts: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    cond: dict[int, FrameOut] = field(default_factory=dict)
    recent: "OrderedDict[int, FrameOut]" = field(default_factory=OrderedDict)
    logits: dict[int, torch.Tensor] = field(default_factory=dict)
    tracked: dict[int, bool] = field(default_factory=dict)

    def remember(self, z: int, out: FrameOut, keep_mem: int, keep_ptr: int) -> None:
        """Add a tracked slice to the bank; drop what no later slice of this pass can read."""
        self.recent[z] = out
        self.recent.move_to_end(z)
        while len(self.recent) > keep_ptr:
            self.recent.popitem(last=False)
        for i, key in enumerate(reversed(list(self.recent))):
            if i >= keep_mem:
                self.recent[key].maskmem = None

    def bank_size(self) -> dict[str, int]:
        """Entries in the memory bank: spatial memories and object pointers."""
        outs = list(self.cond.values()) + list(self.recent.values())
        return {"memories": sum(o.maskmem is not None for o in outs), "pointers": len(outs),
                "prompted": len(self.cond)}


class FeatureCache:
    """Encoder features per slice, least recently used dropped past ``max_bytes``."""

    def __init__(self, encode: Callable[[int], object], max_bytes: int) -> None:
        self._encode = encode
        self.max_bytes = int(max_bytes)
        self._items: "OrderedDict[int, tuple[object, int]]" = OrderedDict()
        self.bytes = 0
        self.encoded = 0

    @staticmethod
    def _nbytes(f) -> int:
        return int(f.feat.numel() * f.feat.element_size()) + sum(int(h.numel() * h.element_size()) for h in f.high_res)

    def get(self, z: int):
        if z in self._items:
            self._items.move_to_end(z)
            return self._items[z][0]
        f = self._encode(z)
        self.encoded += 1
        n = self._nbytes(f)
        self._items[z] = (f, n)
        self.bytes += n
        while self.bytes > self.max_bytes and len(self._items) > 1:
            _, (_, m) = self._items.popitem(last=False)
            self.bytes -= m
        return f

    def __contains__(self, z: int) -> bool:
        return z in self._items

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class VideoState:
    """A volume seen as a video: ``frames`` uint8 ``(D, H, W)`` (slice, row, column), the
    feature cache and the objects. ``key`` identifies the volume it was made from."""

    frames: np.ndarray
    cache: FeatureCache
    objects: dict[int, ObjectTrack] = field(default_factory=dict)
    key: tuple = ()

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def track(self, obj_id: int) -> ObjectTrack:
        if obj_id not in self.objects:
            self.objects[obj_id] = ObjectTrack(obj_id)
        return self.objects[obj_id]
