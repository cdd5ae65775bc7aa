"""Precision by hardware (issue #16): auto resolves by CPU flags / CUDA, overrides win,
the sidecar records it. No weights needed."""

from __future__ import annotations

import pytest
import torch

from sam_med.errors import SamMedError
from sam_med.models import precision as prec
from sam_med.models.registry import _requested_precision


@pytest.fixture
def flags(monkeypatch):
    def set_flags(fl: set[str], cap: str = "AVX512"):
        prec.cpu_has_native_bf16.cache_clear()
        monkeypatch.setattr(prec, "_cpu_flags", lambda path="/proc/cpuinfo": set(fl))
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: cap)
    yield set_flags
    prec.cpu_has_native_bf16.cache_clear()


def test_auto_on_cpu_follows_native_bf16(flags):
    flags({"avx2", "avx512f", "avx512_bf16"})
    assert prec.resolve_precision("auto", "cpu") == ("bf16", torch.bfloat16)
    flags({"avx2", "amx_bf16", "amx_tile"})
    assert prec.resolve_precision("auto", "cpu")[0] == "bf16"
    flags({"avx2", "avx512f"})
    assert prec.resolve_precision("auto", "cpu") == ("fp32", None)
    flags(set(), cap="AVX512_AMX")  # no /proc/cpuinfo: torch's capability decides
    assert prec.resolve_precision("auto", "cpu")[0] == "bf16"


def test_auto_on_cuda_is_half_precision(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert prec.resolve_precision("auto", "cuda") == ("bf16", torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert prec.resolve_precision("auto", "cuda") == ("fp16", torch.float16)
    assert prec.resolve_precision("fp32", "cuda") == ("fp32", None)


def test_explicit_values_and_errors():
    assert prec.resolve_precision("bfloat16", "cpu") == ("bf16", torch.bfloat16)
    assert prec.resolve_precision(None, "cpu") == ("fp32", None)
    assert prec.precision_name(torch.bfloat16) == "bf16"
    with pytest.raises(SamMedError, match="fp16 is for CUDA"):
        prec.resolve_precision("fp16", "cpu")
    with pytest.raises(SamMedError, match="unknown precision 'fp8'"):
        prec.resolve_precision("fp8", "cpu")


def test_override_order(monkeypatch):
    cfg = {"precision": "auto"}
    monkeypatch.delenv("SAM_MED_PRECISION", raising=False)
    assert _requested_precision(cfg, None, "config") == "auto"
    assert _requested_precision({"autocast_dtype": None}, None, "config") == "fp32"  # legacy field
    monkeypatch.setenv("SAM_MED_PRECISION", "fp32")  # --precision of `sam-med segment`
    assert _requested_precision(cfg, None, "config") == "fp32"
    assert _requested_precision(cfg, None, torch.bfloat16) == "bf16"  # explicit autocast_dtype
    assert _requested_precision(cfg, "bf16", None) == "bf16"           # explicit precision wins


def test_predictor_precision_for_provenance():
    class Loaded:
        precision = "bf16"

    class SliceWise:
        loaded = Loaded()

    class Volumetric:
        autocast_dtype = None

    assert prec.predictor_precision(SliceWise()) == "bf16"
    assert prec.predictor_precision(Volumetric()) == "fp32"
    assert prec.predictor_precision(object()) is None
