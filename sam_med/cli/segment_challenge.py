"""`sam-med segment CASE.npz --out OUT.npz` for CVPR 2025 challenge files (a submission's
predict step): every class is segmented from its prompts in the file (key-slice box and/or
clicks in ``clicks_order``; ``None`` entries skipped) and ``segs`` uint8 (D, H, W) is written
(class c = position c - 1 in the lists, 0 background; later classes win where masks overlap).

Each run starts from the prompts alone; ``prev_pred`` is read and validated but not used as
a starting point (today's predictors re-derive the mask from the prompts). The embedding
cache is ``--cache-dir``, else the ``SAM_MED_CACHE_DIR`` environment variable, else none.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ..errors import PromptError


def is_challenge_input(path: str) -> bool:
    if not str(path).lower().endswith(".npz") or not os.path.isfile(path):
        return False
    from ..io.challenge import is_challenge_npz

    return is_challenge_npz(path)


def check_no_cli_prompts(args) -> None:
    given = [f for f, v in (("--box", args.box), ("--key-box", args.key_box), ("--point", args.point),
                            ("--prompts", args.prompts)) if v]
    if given:
        raise PromptError(f"{args.image} is a challenge file with its own prompts; do not give {', '.join(given)}")


def cache_dir(args) -> str | None:
    """``--cache-dir``, else ``$SAM_MED_CACHE_DIR`` for models that keep embeddings (the
    environment setting does not apply to the model-free threshold baseline)."""
    if args.cache_dir:
        return args.cache_dir
    if getattr(args, "model", None) == "threshold":
        return None
    return os.environ.get("SAM_MED_CACHE_DIR") or None


def segment_challenge(case, predictor, overlap: str = "last", progress=None) -> np.ndarray:
    """Label map (D, H, W) uint8 of a :class:`~sam_med.io.challenge.ChallengeCase`."""
    from ..session import Session

    session = Session(case.image, predictor, overlap=overlap)
    for c, prompts in enumerate(case.prompts, 1):
        if prompts.is_empty():
            continue
        session.add_object(f"class {c}", id=c)
        session.set_prompts(c, prompts, progress=progress)
    return np.ascontiguousarray(session.label_map(dtype=np.uint8).transpose(2, 1, 0))


def write_segs(segs: np.ndarray, out: str) -> str:
    """Write ``segs`` atomically (staged, then renamed into place; nothing left on error)."""
    from ..io.atomic import atomic_path

    path = Path(out).expanduser().absolute()
    with atomic_path(path, make_folders=True) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, segs=segs.astype(np.uint8))
    return str(path)


def run_challenge(args) -> int:
    from ..errors import OutputError
    from ..io.challenge import read_challenge
    from .common import guard_outputs, make_factory, progress_bar, view_options

    check_no_cli_prompts(args)
    if not str(args.out).lower().endswith(".npz") or (args.format not in (None, "npz")):
        raise OutputError(f"{args.out}: a challenge file's output is an .npz with 'segs'")
    case = read_challenge(args.image, spacing_order=args.spacing_order)

    if getattr(args, "session_out", None):
        raise OutputError(f"--session-out: a challenge file's run writes only its 'segs' npz ({args.image})")
    # the input, model config, checkpoint, cache entries: never overwritten; before the model loads
    guard_outputs({"--out": args.out}, {"--cache-dir": cache_dir(args)}, volume=case.image, extra=[args.image],
                  model=args.model, checkpoint=getattr(args, "checkpoint", None), cache_dir=cache_dir(args))
    if case.num_classes > 255:
        raise PromptError(f"{args.image}: {case.num_classes} classes do not fit the uint8 'segs'")
    options = view_options(args, cache_dir(args))
    if args.checkpoint:
        options["checkpoint"] = args.checkpoint
    predictor = make_factory(args.model, args.device, options)()  # registry name, threshold or module:factory
    segs = segment_challenge(case, predictor, overlap=args.overlap, progress=progress_bar(args.no_progress))
    for c in range(1, case.num_classes + 1):
        print(f"class {c}: {int((segs == c).sum())} voxels", file=sys.stderr)
    print(write_segs(segs, args.out))
    return 0
