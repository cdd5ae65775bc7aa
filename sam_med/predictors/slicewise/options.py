"""The slice-wise predictor's options (typed: see :func:`sam_med.predictors.base.build_options`).

Only what a user or researcher sets. Every experiment that lost was removed after the tag
``experiments-2026-12`` (its write-ups in ``benchmarks/`` reproduce there); the constants the
engine keeps are in :mod:`.constants`. ``docs/engine.md`` says how each default was chosen."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..base import OptionError

__all__ = ["SliceWiseOptions", "resolve_workers", "check_options", "checked_res", "option_docs"]


def _choice(default: str, *choices: str, doc: str):
    return field(default=default, metadata={"choices": choices, "doc": doc})


def _opt(default, doc: str):
    return field(default=default, metadata={"doc": doc})


@dataclass
class SliceWiseOptions:
    """Options of :class:`~sam_med.predictors.slicewise.SliceWisePredictor` (``sam-med segment
    --option KEY=VALUE``; ``sam-med segment --help-options`` lists them with these notes)."""

    axis: int | None = _opt(None, "slicing axis 0/1/2 of the voxel array (default: the scan's "
                                  "acquisition axis)")
    window: tuple[float, float] | None = _opt(None, "CT window (level, width) in HU, e.g. [40,400] "
                                                    "(default: the model config's)")
    modality: str | None = _opt(None, "CT or MR: overrides the scan's own modality (chooses the "
                                      "intensity mapping)")
    slice_step: int = _opt(2, "first runs decode every n-th slice and fill the slices between by "
                              "shape interpolation where both ends agree (1: decode every slice)")
    zoom: str = _choice("auto", "auto", "never",
                        doc="auto: a small object is decoded in a zoomed crop when the model rates "
                            "it better at the key slice; never: always at the slice's own scale")
    whole_res_alt: int | None = _opt(192, "a second encoder input size for whole-slice views, kept "
                                          "when the model rates it better at the key slice (none: off)")
    click_rule: str = _choice("model", "ball", "edit", "model",
                              doc="ball: a click's correction continues through the neighbouring "
                                  "slices while the clicked tissue is there; edit: the clicked "
                                  "slice only; model: click_model's decoder proposes the correction, "
                                  "kept when one-sided, local and small (else the ball) and carried "
                                  "through the neighbours while the error reaches them")
    click_model: str | None = _opt(None, "click_rule=model: the click-trained model whose decoder "
                                         "answers clicks (same image encoder; default: the one the model's "
                                         "config names, else the model itself)")
    encode_budget: float | None = _opt(None, "the most slice encodes (at the model's size) a box "
                                             "plans for: longer objects are encoded at a smaller "
                                             "input (faster, coarser; none: off)")
    encode_workers: int | None = _opt(None, "CPU: slices encoded at once, one per thread "
                                            "(default: 2 when torch has 2+ threads)")
    batch_size: int | None = _opt(None, "slices per encoder call (default: encode_workers on CPU, "
                                        "8 on CUDA)")


def option_docs() -> list[tuple[str, str, str]]:
    """``(name, default, note)`` of every option, for ``--help`` and the docs."""
    import dataclasses

    out = []
    for f in dataclasses.fields(SliceWiseOptions):
        choices = f.metadata.get("choices")
        note = f.metadata.get("doc", "")
        if choices:
            note = f"{'|'.join(choices)}. {note}"
        out.append((f.name, repr(f.default), note))
    return out


def checked_res(name: str, r, size: int, reduced_ok: bool) -> int | None:
    """Option ``name``'s whole-slice input size ``r``: None when unset, or when the encoder
    takes only S or ``r`` is S; raises :class:`OptionError` unless it is a multiple of 16 in 64..S."""
    if r is None:
        return None
    r = int(r)
    if r % 16 or not 64 <= r <= size:
        raise OptionError(f"{name}={r}: use a multiple of 16 from 64 to {size}, or none")
    return r if reduced_ok and r < size else None


def check_options(o: SliceWiseOptions, size: int, reduced_ok: bool) -> None:
    """Refuse option values the engine cannot use (:class:`OptionError`, one line), before any work."""
    if int(o.slice_step) < 1:
        raise OptionError(f"slice_step={o.slice_step}: use 1 (every slice) or more")
    if o.encode_budget is not None and not o.encode_budget > 0:
        raise OptionError(f"encode_budget={o.encode_budget}: use a positive number of slice encodes, or none")
    checked_res("whole_res_alt", o.whole_res_alt, size, reduced_ok)  # a multiple of 16 in 64..S, or none
    if o.axis is not None and int(o.axis) not in (0, 1, 2):
        raise OptionError(f"axis={o.axis}: use 0, 1 or 2 (a voxel axis), or none")
    for name in ("encode_workers", "batch_size"):
        v = getattr(o, name)
        if v is not None and int(v) < 1:
            raise OptionError(f"{name}={v}: use 1 or more, or none")
    if o.click_model is not None:  # a typo is refused before any encode, not at the first click
        from ...errors import SamMedError
        from ...models.configs import find_model_config

        try:
            find_model_config(o.click_model)
        except SamMedError as exc:
            raise OptionError(f"click_model={o.click_model}: {exc}") from None


def resolve_workers(options: SliceWiseOptions, on_cpu: bool, torch_threads: int) -> SliceWiseOptions:
    """Fill ``encode_workers`` / ``batch_size`` when None (in place; returns ``options``):
    CPU: ``min(2, torch threads)`` workers and a batch of one slice per worker; GPU: one
    worker, batches of 8."""
    if options.encode_workers is None:
        options.encode_workers = min(2, torch_threads) if on_cpu else 1
    if options.batch_size is None:
        options.batch_size = max(1, options.encode_workers) if on_cpu else 8
    return options
