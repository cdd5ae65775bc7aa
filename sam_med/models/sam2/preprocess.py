"""The MedSAM2 reference's slice resize as a MONAI transform (used by ``medsam2.yaml``).

The reference (``resize_grayscale_to_rgb_and_resize``) does, per slice,
``Image.fromarray(uint8).convert("RGB").resize((S, S))``: Pillow's default bicubic filter,
no aspect ratio kept. :class:`GreyToRGBResize` does exactly that with Pillow when it is
installed; without Pillow it falls back to torch's antialiased bicubic (Pillow's kernel,
computed in floating point: grey values may differ by one here and there).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Transform

__all__ = ["GreyToRGBResize", "FrameNormalize"]


class GreyToRGBResize(Transform):
    """``(H, W)`` uint8 grey slice -> ``(3, size, size)`` uint8 (three equal channels)."""

    def __init__(self, size: int = 512) -> None:
        self.size = int(size)

    def __call__(self, img) -> np.ndarray:
        a = np.asarray(img.cpu().numpy() if torch.is_tensor(img) else img)
        if a.ndim != 2:
            raise ValueError(f"GreyToRGBResize expects one (H, W) slice, got shape {a.shape}")
        a = a.astype(np.uint8)
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - Pillow comes with the usual installs
            out = self._torch_resize(a)
        else:
            out = np.asarray(Image.fromarray(a).convert("RGB").resize((self.size, self.size))).transpose(2, 0, 1)
        return np.ascontiguousarray(out)

    def _torch_resize(self, a: np.ndarray) -> np.ndarray:
        if a.shape == (self.size, self.size):
            g = a
        else:
            t = torch.from_numpy(a.astype(np.float32))[None, None]
            t = F.interpolate(t, size=(self.size, self.size), mode="bicubic", antialias=True, align_corners=False)
            g = t[0, 0].round().clamp(0, 255).to(torch.uint8).numpy()
        return np.repeat(g[None], 3, axis=0)


class FrameNormalize(Transform):
    """``(3, S, S)`` 0..255 -> ``(x / scale - mean) / std`` per channel, in float64 with the
    mean and std as float32 values, the reference's exact arithmetic (MONAI's
    ``ScaleIntensityRange`` computes in float32, a few 1e-8 away)."""

    def __init__(self, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), scale: float = 255.0) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        self.scale = float(scale)

    def __call__(self, img) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(img.cpu() if torch.is_tensor(img) else img)).to(torch.float64) / self.scale
        t -= self.mean
        t /= self.std
        return t
