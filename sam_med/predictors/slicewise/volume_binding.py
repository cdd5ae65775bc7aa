"""A volume bound to a model: its intensities on the model's 0..255 scale, and a signature.

The mapping (CT window, MR percentiles, research npz as is) is the model config's
(``LoadedModel.intensity_to_uint8_range``), done once per volume. The signature names
the embedding-cache namespace: the mapped data + the volume's affine + the image encoder
(``LoadedModel.encoder_signature``: name + checkpoint sha256, the base model's for a
decoder-only fine-tune) + precision, so two scans or two encoders never share an entry.
"""

from __future__ import annotations

import numpy as np

from ...volume import Volume
from ..embedding_cache import array_signature
from ..planes import PlaneGeometry

__all__ = ["VolumeBinding"]


class VolumeBinding:
    """``VolumeBinding(loaded, window=None, modality=None)``; :meth:`bind` a volume, then read
    :attr:`model_range` ``(volume shape)`` float32 0..255 and :attr:`signature`."""

    def __init__(self, loaded, *, window: tuple[float, float] | None = None, modality: str | None = None) -> None:
        self.loaded = loaded
        self.window = window
        self.modality = modality
        self.volume: Volume | None = None
        self._model_range: np.ndarray | None = None
        self.signature: str | None = None

    @property
    def model_range(self) -> np.ndarray:
        """The bound volume on the model's 0..255 scale (float32, the volume's shape)."""
        if self._model_range is None:
            raise RuntimeError("no volume bound: call bind(volume) first")
        return self._model_range

    def bind(self, volume: Volume) -> None:
        """Map ``volume`` (no-op when it is the one already bound: by identity, not id())."""
        if self.volume is volume and self._model_range is not None:
            return
        from ...volume import guess_modality

        modality = self.modality or guess_modality(volume)
        u8 = self.loaded.intensity_to_uint8_range(volume.array, volume.intensity, modality, window=self.window)
        self._model_range = np.ascontiguousarray(u8, dtype=np.float32)
        enc = self.loaded.encoder_signature() if hasattr(self.loaded, "encoder_signature") else \
            (self.loaded.name, getattr(self.loaded, "sha256", None))
        model_sig = (*enc, str(getattr(self.loaded, "autocast_dtype", None)))
        self.signature = array_signature(self._model_range, volume.affine.round(4).tolist(), model_sig)
        self.volume = volume

    def namespace(self, axis: int) -> str:
        """Embedding-cache namespace of the bound volume's slices along ``axis``."""
        self.model_range
        return f"{self.signature}-a{int(axis)}"

    def slice_image(self, geo: PlaneGeometry, k: int, crop=None) -> np.ndarray:
        """The ``(H, W)`` (or cropped) plane image of slice ``k``, 0..255 float32, contiguous.
        ``crop``: inclusive ``(x0, y0, x1, y1)`` or None."""
        img = geo.slice_of(self.model_range, k)
        if crop is not None:
            x0, y0, x1, y1 = crop
            img = img[y0 : y1 + 1, x0 : x1 + 1]
        return np.ascontiguousarray(img)
