"""Identical masks before/after an engine change: two checkouts' slice-wise predictors, voxel for voxel.

Usage::

    python benchmarks/compare_engine_masks.py --before ../ref-checkout [--after .] \
        [--cache-dir CACHE_DIR] [--data ../shared/data] [--clicks 3]

Each checkout runs in its own process (``PYTHONPATH=<checkout>``) on the same cases,
through a :class:`~sam_med.session.Session` and the evaluation protocol code of that
checkout, sharing one on-disk embedding cache (so the encoder runs once, for the first):

* the four CT lesions (``ct_lesion/*.npz``): tight 3D box of ``gts``, then ``--clicks``
  simulated corrective clicks (``box+clicks`` protocol): ``1 + clicks`` masks each; and
  points only: one click at the lesion's centre (``point`` protocol, the box search);
* the TotalSeg CT organs spleen, kidneys and liver (``totalseg/example_ct_sm.nii.gz``):
  tight 3D boxes (``box`` protocol).

Every mask is saved by each run (``--keep`` keeps the npz files) and compared: the
report lists, per case/object/step, the voxel count of each side and the number of
voxels that differ. Exit status 1 when any mask differs.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ORGANS = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver"}


def cases(data: Path):
    """(case id, volume, {label value: (name, ref mask)}, protocol) for every case."""
    from sam_med import io

    for f in sorted(glob.glob(str(data / "ct_lesion" / "*.npz"))):
        case = io.read_npz(f)
        ref = case.label.array > 0
        yield Path(f).stem, case.image, {1: ("lesion", ref)}, "box+clicks"
        yield Path(f).stem + "_point", case.image, {1: ("lesion", ref)}, "point"
    ts = data / "totalseg"
    image = io.load(str(ts / "example_ct_sm.nii.gz"))
    lab = io.load(str(ts / "example_seg.nii.gz")).array
    yield "totalseg_ct", image, {v: (n, lab == v) for v, n in ORGANS.items()}, "box"


def run_checkout(out: str, cache_dir: str, data: Path, clicks: int) -> None:
    """Run this process's sam_med (the one on PYTHONPATH) and save every mask to ``out``."""
    import sam_med
    from sam_med.evaluation.protocols import run_protocol
    from sam_med.models import load_model
    from sam_med.predictors.embedding_cache import EmbeddingCache
    from sam_med.predictors.slicewise import SliceWisePredictor
    from sam_med.session import Session

    loaded = load_model("lite_medsam")
    cache = EmbeddingCache(cache_dir=cache_dir)
    masks: dict[str, np.ndarray] = {}
    meta = {"sam_med": sam_med.__file__}
    for cid, image, objects, protocol in cases(data):
        pred = SliceWisePredictor(loaded=loaded, cache=cache)
        session = Session(image, pred)
        for value, (name, ref) in objects.items():
            session.add_object(name, id=value)
            n = clicks if protocol == "box+clicks" else 0
            for step in run_protocol(session, value, ref, protocol, n):
                key = f"{cid}/{name}/{step.step}"
                masks[key] = np.packbits(step.mask.reshape(-1))
                masks[key + "/shape"] = np.asarray(step.mask.shape)
                print(f"{key}: {int(step.mask.sum())} voxels ({step.prompt})", flush=True)
    np.savez_compressed(out, **masks)
    meta["encoded"] = cache.encoded
    Path(out + ".json").write_text(json.dumps(meta))


def _load(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        out = {}
        for k in z.files:
            if k.endswith("/shape"):
                continue
            shape = tuple(z[k + "/shape"])
            out[k] = np.unpackbits(z[k])[: int(np.prod(shape))].reshape(shape).astype(bool)
        return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before",
                    help="checkout of the reference code (e.g. a git worktree of the commit before the change)")
    ap.add_argument("--after", default=str(ROOT), help="checkout of the changed code")
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "sam_med_cmp_cache"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--clicks", type=int, default=3)
    ap.add_argument("--keep", default=None, help="folder to keep both runs' masks in")
    ap.add_argument("--run", default=None, help=argparse.SUPPRESS)  # internal: one checkout's run
    args = ap.parse_args(argv)
    data = Path(args.data).resolve()
    if args.run:
        run_checkout(args.run, args.cache_dir, data, args.clicks)
        return 0
    if not args.before:
        ap.error("--before is required")
    outdir = Path(args.keep or tempfile.mkdtemp(prefix="sam_med_cmp_"))
    outdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for tag, checkout in (("before", args.before), ("after", args.after)):
        out = str(outdir / f"{tag}.npz")
        if args.keep and Path(out).is_file():
            print(f"[{tag}] reusing {out}")
        else:
            env = dict(os.environ, PYTHONPATH=str(Path(checkout).resolve()))
            cmd = [sys.executable, str(Path(__file__).resolve()), "--run", out, "--cache-dir", args.cache_dir,
                   "--data", str(data), "--clicks", str(args.clicks)]
            print(f"[{tag}] {checkout}", flush=True)
            subprocess.run(cmd, env=env, check=True, cwd=str(Path(checkout).resolve()))
            print(f"[{tag}] {Path(out + '.json').read_text()}")
        results[tag] = _load(out)
    before, after = results["before"], results["after"]
    n_diff = 0
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a is None or b is None:
            print(f"{key}: only in {'after' if a is None else 'before'}")
            n_diff += 1
            continue
        d = int(np.logical_xor(a, b).sum())
        n_diff += d > 0
        print(f"{key:55s} before {int(a.sum()):7d}  after {int(b.sum()):7d}  differing voxels {d}")
    print(f"{len(before)} masks compared, {n_diff} differ")
    return 1 if n_diff else 0


if __name__ == "__main__":
    sys.exit(main())
