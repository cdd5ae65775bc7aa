"""2D predictor in the segment-anything style: encode a slice once, prompt it many times.

The predictor wraps a :class:`~sam_med.models.registry.LoadedModel` (it does not
subclass the model): :meth:`SamPredictor2D.set_image` runs the image encoder once
and keeps the embedding; :meth:`SamPredictor2D.predict` runs only the prompt encoder
and mask decoder. Prompts are numpy arrays in **source pixel** coordinates of the
slice given to ``set_image`` (``x`` = column, ``y`` = row).

The slice and its prompts pass through one preprocessing object (the model config's
:class:`~sam_med.transforms.SlicePreprocessor`, or the same at a reduced input size
``loaded.preprocess_at(r)``): it resizes the image and maps boxes/points to the model
input (``box_to_model`` / ``points_to_model``); :meth:`SamPredictor2D.predict` maps the
low-res logits back to the source slice (``loaded.postprocess``). A precomputed
embedding (an embedding cache) is set with :meth:`SamPredictor2D.set_embedding`.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import PromptError

__all__ = ["SamPredictor2D", "slice_meta"]


def slice_meta(original_size, image_size: int):
    """The :class:`~sam_med.transforms.SliceMeta` of an ``(H, W)`` image preprocessed to
    ``image_size`` (longest side resized to it, padded bottom/right)."""
    from ..transforms import SliceMeta, longest_side_size

    hw = (int(original_size[0]), int(original_size[1]))
    return SliceMeta(hw, longest_side_size(hw, int(image_size)), int(image_size))


class SamPredictor2D:
    """``SamPredictor2D(loaded_model)``; see :meth:`set_image` and :meth:`predict`."""

    def __init__(self, loaded_model) -> None:
        self.model = loaded_model
        self.reset_image()

    def reset_image(self) -> None:
        self.embedding: torch.Tensor | None = None
        self.meta = None
        self.transform = self.model.preprocess

    @property
    def is_image_set(self) -> bool:
        return self.embedding is not None

    def set_image(self, image2d: np.ndarray) -> None:
        """Encode one ``(H, W)`` slice with intensities already in 0..255 (see
        :meth:`LoadedModel.intensity_to_uint8_range`). Runs the encoder once."""
        img = np.asarray(image2d)
        if img.ndim != 2:
            raise ValueError(f"set_image expects a 2D (H, W) slice, got shape {img.shape}")
        self.transform = self.model.preprocess
        x, meta = self.transform(img.astype(np.float32))
        self.embedding = self.model.encode(x[None])
        self.meta = meta

    def set_embedding(self, embedding: torch.Tensor, meta=None, *, original_size=None,
                      transform=None) -> None:
        """Use a precomputed ``(1, 256, 64, 64)`` (or ``(256, 64, 64)``) embedding (e.g. from
        an embedding cache). Either ``meta`` (the :class:`~sam_med.transforms.SliceMeta`
        of its input) or ``original_size`` ``(H, W)`` of the encoded image; ``transform``:
        the preprocessing it was encoded with (default the model's own; for a reduced
        input ``loaded.preprocess_at(r)``), which maps the prompts."""
        self.transform = transform if transform is not None else self.model.preprocess
        if meta is None:
            if original_size is None:
                raise ValueError("set_embedding needs meta or original_size")
            meta = slice_meta(original_size, self.transform.image_size)
        self.embedding = embedding if embedding.ndim == 4 else embedding[None]
        self.meta = meta

    def predict(self, box=None, points=None, labels=None, mask_input=None,
                multimask_output: bool = False):
        """Segment the current slice from prompts.

        Args:
            box: ``(4,)`` XYXY in source pixels.
            points: ``(N, 2)`` xy in source pixels; ``labels`` ``(N,)`` 1 = foreground,
                0 = background (default all 1).
            mask_input: ``(256, 256)`` / ``(1, 256, 256)`` / ``(1, 1, 256, 256)`` low-res logits
                from a previous call (numpy or a tensor).
            multimask_output: return 3 candidates (with their predicted IoU) instead of 1.

        Returns:
            ``(masks (K, H, W) bool, scores (K,) float32, low_res_logits (K, 256, 256) float32)``.
        """
        if not self.is_image_set:
            raise RuntimeError("no image set: call set_image() before predict()")
        h, w = self.meta.original_size
        b = p = lab = m = None
        if box is not None:
            box = np.asarray(box, dtype=np.float64).reshape(-1)
            if box.shape != (4,) or not np.isfinite(box).all():
                raise PromptError(f"box must be 4 finite numbers XYXY, got {box}")
            if box[2] < box[0] or box[3] < box[1]:
                raise PromptError(f"box is inverted (need x0 <= x1, y0 <= y1): {box.tolist()}")
            b = self.transform.box_to_model(box, (h, w)).reshape(1, 4)
        if points is not None:
            pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            if not np.isfinite(pts).all():
                raise PromptError("points contain NaN or infinite values")
            lab = (np.ones(len(pts), dtype=np.int64) if labels is None
                   else np.asarray(labels, dtype=np.int64).reshape(-1))
            if lab.shape[0] != pts.shape[0]:
                raise PromptError(f"{pts.shape[0]} points but {lab.shape[0]} labels")
            p = self.transform.points_to_model(pts, (h, w))[None]
            lab = lab[None]
        if mask_input is not None:
            m = (mask_input.reshape(1, 1, *mask_input.shape[-2:]) if torch.is_tensor(mask_input)
                 else np.asarray(mask_input, dtype=np.float32).reshape(1, 1, *np.shape(mask_input)[-2:]))
        if b is None and p is None and m is None:
            raise PromptError("predict needs a box, points or a mask_input")
        logits, iou = self.model.decode(self.embedding, boxes=b, points=p, point_labels=lab,
                                        mask_input=m, multimask=multimask_output)
        full = self.model.postprocess(logits, self.meta)[0]
        thr = float(self.model.config.get("mask_threshold", 0.0))
        return ((full > thr).cpu().numpy(), iou[0].cpu().numpy().astype(np.float32),
                logits[0].cpu().numpy().astype(np.float32))
