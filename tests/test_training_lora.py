"""LoRA adapters and trainable-parameter selection per mode."""

from __future__ import annotations

import torch

from sam_med.training import apply_lora, lora_state_dict, merge_lora, set_trainable, trainable_parameters, unmerge_lora
from sam_med.training.lora import LoRALinear, merge_lora_state_dict, remove_lora
from _training import build_tiny

import pytest


@pytest.fixture(autouse=True)
def _one_thread():  # small ops: OpenMP threads only add contention on a shared CPU
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _x():
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, 256, 256, generator=g)


def test_lora_is_identity_at_init_and_trains_only_adapters():
    model = build_tiny()
    x = _x()
    with torch.no_grad():
        ref = model.image_encoder(x)
    names = set_trainable(model, "lora", {"rank": 2, "alpha": 4.0})
    assert names and all(n.endswith("attn.qkv") and n.startswith("image_encoder.") for n in names)
    assert all(isinstance(model.get_submodule(n), LoRALinear) for n in names)
    with torch.no_grad():
        out = model.image_encoder(x)
    assert torch.equal(out, ref)  # B = 0: exactly the base model
    enc_trainable = [n for n, _ in trainable_parameters(model) if n.startswith("image_encoder.")]
    assert enc_trainable and all(n.endswith(("lora_A", "lora_B")) for n in enc_trainable)
    frozen_before = {n: p.detach().clone() for n, p in model.image_encoder.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD([p for _, p in trainable_parameters(model)], lr=0.1)
    model.image_encoder(x).square().mean().backward()
    opt.step()
    for n, p in model.image_encoder.named_parameters():
        if n in frozen_before:
            assert torch.equal(p, frozen_before[n]), n
    assert any(m.lora_B.abs().sum() > 0 for m in model.modules() if isinstance(m, LoRALinear))
    # merge / unmerge round trip, and the adapter-only state dict reproduces the merged weights
    with torch.no_grad():
        trained = model.image_encoder(x)
        merge_lora(model)
        merged = model.image_encoder(x)
        unmerge_lora(model)
        again = model.image_encoder(x)
    assert torch.allclose(trained, merged, atol=1e-5) and torch.allclose(trained, again, atol=1e-6)
    ad = lora_state_dict(model)
    assert set(ad) == {f"{n}.lora_{ab}" for n in names for ab in "AB"}
    plain = build_tiny()
    plain.load_state_dict(merge_lora_state_dict(plain.state_dict(), ad, 4.0 / 2))
    with torch.no_grad():
        assert torch.allclose(plain.image_encoder(x), trained, atol=1e-5)
    remove_lora(model)
    assert set(model.state_dict()) == set(plain.state_dict())


def test_lora_include_restricts_stages_and_typos_fail():
    model = build_tiny()
    names = apply_lora(model, 2, include=["image_encoder.layers.3"])
    assert names and all(n.startswith("image_encoder.layers.3.") for n in names)
    try:
        apply_lora(build_tiny(), 2, targets=["attn.qvk"])
    except ValueError as e:
        assert "no nn.Linear matches" in str(e)
    else:  # pragma: no cover
        raise AssertionError("a target that matches nothing must raise")


def test_decoder_mode_freezes_encoder_and_full_trains_all():
    model = build_tiny()
    set_trainable(model, "decoder")
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    assert not any(p.requires_grad for p in model.prompt_encoder.parameters())
    assert all(p.requires_grad for p in model.mask_decoder.parameters())
    set_trainable(model, "decoder", train_prompt_encoder=True)
    assert all(p.requires_grad for p in model.prompt_encoder.parameters())
    set_trainable(model, "full")
    assert all(p.requires_grad for p in model.parameters())
