"""Builders: all hyper-parameter wiring of the SAM-family models lives here.

Each builder is registered under an architecture name (see :mod:`.registry`), which a
model config names in its ``architecture`` field; ``architecture_args`` are passed as
keyword arguments.
"""

from __future__ import annotations

from typing import Sequence

from .image_encoder_tinyvit import TinyViTEncoder
from .image_encoder_vit import ViTEncoder
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .architectures import register_architecture
from .sam import Sam
from .transformer import TwoWayTransformer


def _prompt_and_decoder(image_size: int, embed_grid: int, prompt_dim: int = 256):
    prompt = PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(embed_grid, embed_grid),
                           input_image_size=(image_size, image_size), mask_in_chans=16)
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=2048, num_heads=8),
        transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=256)
    return prompt, decoder


@register_architecture("tinyvit_sam")
def build_tinyvit_sam(image_size: int = 256, embed_dims: Sequence[int] = (64, 128, 160, 320),
                      depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (2, 4, 5, 10),
                      window_sizes: Sequence[int] = (7, 7, 14, 7)) -> Sam:
    """LiteMedSAM: TinyViT encoder (256² input, 64² embedding) + SAM prompt encoder/decoder."""
    enc = TinyViTEncoder(img_size=image_size, embed_dims=embed_dims, depths=depths,
                         num_heads=num_heads, window_sizes=window_sizes)
    prompt, decoder = _prompt_and_decoder(image_size, enc.out_resolution)
    return Sam(enc, prompt, decoder)


@register_architecture("vit_sam")
def build_vit_sam(image_size: int = 1024, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                  global_attn_indexes: Sequence[int] = (2, 5, 8, 11), patch_size: int = 16) -> Sam:
    """SAM / MedSAM ViT (defaults: ViT-B, 1024² input, 64² embedding)."""
    enc = ViTEncoder(img_size=image_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                     num_heads=num_heads, global_attn_indexes=tuple(global_attn_indexes))
    prompt, decoder = _prompt_and_decoder(image_size, image_size // patch_size)
    return Sam(enc, prompt, decoder)


def build_lite_medsam() -> Sam:
    """LiteMedSAM exactly as the reference ``build_lite_medsam`` (no weights)."""
    return build_tinyvit_sam()


def build_sam_vit_b() -> Sam:
    """SAM ViT-B exactly as ``sam_model_registry['vit_b']`` (no weights)."""
    return build_vit_sam()
