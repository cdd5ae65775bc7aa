"""Fine-tuning of the 2D slice models: decoder-only, LoRA (+decoder), full; torchrun DDP.

``sam-med finetune --config configs/finetune/<name>.yaml [key=value ...]`` or::

    from sam_med.training import load_config, train
    summary = train(load_config("configs/finetune/lite_medsam_ct_lesion_decoder.yaml"))
    # -> weights + config in the user models dir; load_model(summary["name"]) works

Modules: :mod:`.data` (slices + MONAI augmentations + the model's preprocessing),
:mod:`.prompts` (box jitter, points, corrective clicks), :mod:`.lora`, :mod:`.trainer`,
:mod:`.ddp`, :mod:`.export`.
"""

from .lora import apply_lora, lora_state_dict, merge_lora, unmerge_lora
from .trainer import DEFAULTS, Trainer, apply_overrides, load_config, set_trainable, train, trainable_parameters

__all__ = ["DEFAULTS", "Trainer", "apply_overrides", "load_config", "set_trainable", "train",
           "trainable_parameters", "apply_lora", "lora_state_dict", "merge_lora", "unmerge_lora"]
