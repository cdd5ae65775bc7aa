"""Composition of the three SAM parts. Holds no hyper-parameters (see :mod:`.build`)."""

from __future__ import annotations

import torch
from torch import nn


class Sam(nn.Module):
    """Image encoder + prompt encoder + mask decoder.

    The encoder input is the already preprocessed ``(B, 3, S, S)`` tensor (see
    :mod:`sam_med.transforms`); normalisation is not done here, because LiteMedSAM
    and MedSAM use min–max scaling and SAM uses mean/std, and the config declares it.
    """

    def __init__(self, image_encoder: nn.Module, prompt_encoder: nn.Module,
                 mask_decoder: nn.Module) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        #: optional learnable prompt tokens (sam_med.models.prompt_tokens.PromptTokens):
        #: ``(sparse, dense) -> (sparse + K tokens, dense [+ bias])``; None = the plain model
        self.prompt_tuning: nn.Module | None = None

    @property
    def image_size(self) -> int:
        return int(self.prompt_encoder.input_image_size[0])

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S) -> (B, 256, 64, 64)`` image embeddings."""
        return self.image_encoder(images)

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor | None = None,
               points: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None,
               multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder.

        embeddings ``(B, 256, 64, 64)`` (or batch 1, broadcast); boxes ``(B, 4)`` XYXY;
        points ``(B, N, 2)`` xy + point_labels ``(B, N)``; mask_input ``(B, 1, 256, 256)``
        logits; all coordinates in model-input pixels. With :attr:`prompt_tuning` set, its
        K learned tokens follow the prompt tokens in the decoder's sparse input. Returns
        ``(low_res_logits (B, K, 256, 256), iou (B, K))``, K = 3 if multimask else 1.
        """
        if boxes is not None and boxes.ndim == 2:
            boxes = boxes[:, None, :]
        pts = None
        if points is not None:
            if point_labels is None:
                point_labels = torch.ones(points.shape[:2], dtype=torch.int64, device=points.device)
            pts = (points, point_labels)
        hw = tuple(int(v) for v in embeddings.shape[-2:])
        sparse, dense = self.prompt_encoder(points=pts, boxes=boxes, masks=mask_input, embedding_hw=hw)
        if self.prompt_tuning is not None:
            sparse, dense = self.prompt_tuning(sparse, dense)
        return self.mask_decoder(
            image_embeddings=embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(hw),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )

    def forward(self, images: torch.Tensor, boxes: torch.Tensor | None = None, **kw):
        """Encode and decode in one call (training convenience)."""
        return self.decode(self.encode(images), boxes=boxes, **kw)
