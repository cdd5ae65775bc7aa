"""What several ``sam-med`` commands share: option parsing, the predictor factory, the engine's
options taken from flags, the progress bar, and the output guard with the model's files.
Commands import from here, never from each other."""

from __future__ import annotations

import math
import sys

from ..errors import SamMedError

__all__ = ["parse_options", "make_factory", "view_options", "progress_bar", "guard_outputs"]


def parse_options(items) -> dict:
    """``--option KEY=VALUE`` items -> a dict of YAML-typed values (the predictor's options
    dataclass converts them further and rejects unknown keys)."""
    from ..predictors.base import parse_option_pairs

    return parse_option_pairs(items, what="--option")


def make_factory(model: str, device: str, options: dict):
    """A zero-argument callable that builds the predictor (called only when needed)."""
    def factory():
        if model == "threshold":
            from ..evaluation.baselines import build_threshold

            return build_threshold(device=device, **options)
        if ":" in model:
            import importlib

            mod, _, fn = model.partition(":")
            try:
                f = getattr(importlib.import_module(mod), fn)
            except (ImportError, AttributeError) as exc:
                raise SamMedError(f"--model {model}: cannot import the factory ({exc})") from exc
            return f(device=device, **options)
        try:
            from ..predictors.factory import build_predictor
        except ImportError as exc:
            raise SamMedError(
                f"--model {model}: the model predictors are not available in this install ({exc}); "
                "use --model threshold for the model-free baseline"
            ) from exc
        return build_predictor(model, device=device, **options)

    return factory


def view_options(args, cache_dir: str | None) -> dict:
    """The predictor options given by ``--window``, ``--modality``, ``--axis`` and the cache
    folder, only those set (shared by ``segment`` and its challenge-npz mode)."""
    options: dict = {}
    if args.window:  # a CT window: finite level, positive finite width; it means CT, never ignored
        level, width = args.window
        if not (math.isfinite(level) and math.isfinite(width) and width > 0):
            raise SamMedError(f"--window {level:g} {width:g}: LEVEL must be finite and WIDTH positive and finite")
        if args.modality == "MR":
            raise SamMedError("--window is a CT window; it does not apply with --modality MR")
        options["window"] = (level, width)
        options["modality"] = "CT"
    if args.modality != "auto":
        options["modality"] = args.modality
    if args.axis is not None:
        options["axis"] = args.axis
    if cache_dir:
        options["cache_dir"] = cache_dir
    return options


_BAR_NAMES = {"encode": "encoding slices", "propagate": "propagating slices", "3D crops": "3D crops"}


def progress_bar(disabled: bool):
    """A progress callback ``(done, total, what)`` drawing one tqdm bar per stage on stderr
    (slices done / total, rate and time left), or nothing when ``disabled``."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(done: int, total: int, what: str) -> None:
        if disabled or total <= 0:
            return
        bar = bars.get(what)
        if bar is None or bar.total != total or done < bar.n:
            if bar is not None:
                bar.close()
            bar = bars[what] = tqdm(total=total, desc=_BAR_NAMES.get(what, what), unit="slice",
                                    file=sys.stderr, leave=False, mininterval=0.2)
        bar.update(max(0, min(done, total) - bar.n))
        if done >= total:
            bar.close()
            bars.pop(what, None)

    return progress


def guard_outputs(files: dict, folders: dict | None = None, *, model=None, checkpoint=None, **kw) -> dict[str, str]:
    """:func:`sam_med.io.outputs.guard_run` with every file loading ``model`` may read (its config,
    the checkpoint override and every candidate location) among the inputs; before the model loads."""
    from ..io.outputs import guard_run
    from ..models.registry import model_input_files

    extra = list(kw.pop("extra", None) or [])
    if model is not None and model != "threshold" and ":" not in str(model):
        extra += model_input_files(model, checkpoint)
    return guard_run(files, folders, extra=extra, **kw)
