"""Parity of sam-med's MedSAM2 with the official MedSAM2 code, on random weights in the
official checkpoint layout (no real weights can be fetched here).

What is compared, per case (the four ``ct_lesion`` npz cases and the bundled sample CT):

1. image-encoder features of the key slice (the three FPN levels after the decoder's
   high-res projections, and the position map);
2. the decoder's logits for a box on the key slice (``add_new_points_or_box``);
3. a whole 3D propagation from that box, forward, then (after ``reset_state``, as
   ``medsam2_infer_3D_CT.py``) in reverse: the logits of every slice at the slice's size, the
   per-slice masks (> 0), and the union's largest 3D connected component.

Pass: max |delta logit| <= 1e-4 and identical masks.

The reference runs in a scratch environment outside the repository (it is never a dependency
of sam-med and none of its code is in this repository)::

    python3 -m venv /work/scratch-sam2/venv
    /work/scratch-sam2/venv/bin/pip install torch==2.14.1 torchvision==0.29.1 sam2==1.1.0 \
        monai nibabel scipy SimpleITK pydicom pyyaml tqdm
    # MedSAM2's modified sam2 package (bowang-lab/MedSAM2 @ 332f30d, folder sam2/), with
    # its image_encoder.py import of LayerNorm2d pointed at sam2.modeling.sam2_utils and
    # without its prebuilt _C.so (CUDA hole filling; the reference skips it on CPU)
    PYTHONPATH=<repo>:<medsam2 checkout> /work/scratch-sam2/venv/bin/python \
        benchmarks/parity_medsam2.py [--cases 000015,sample] [--out benchmarks/parity_medsam2.md]

sam-med's side runs with ``fill_hole_area=0`` for the same reason (its default, 8, is the
reference's GPU behaviour).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SAM_MED_SHARED", ROOT.parent / "shared"))
TOL = 1e-4
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def reference_images(frames: np.ndarray, size: int = 512) -> torch.Tensor:
    """The reference scripts' input tensor, written from their arithmetic: PIL RGB resize,
    float64 /255, minus / divided by float32 ImageNet mean / std."""
    from PIL import Image

    out = np.zeros((frames.shape[0], 3, size, size))
    for i, f in enumerate(frames):
        out[i] = np.array(Image.fromarray(f.astype(np.uint8)).convert("RGB").resize((size, size))).transpose(2, 0, 1)
    t = torch.from_numpy(out / 255.0)
    t -= torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    t /= torch.tensor(STD, dtype=torch.float32)[:, None, None]
    return t


def reference_ct_window(hu: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """``medsam2_infer_3D_CT.py``'s intensity step: clip, min-max to 0..255, np.uint8."""
    x = np.clip(hu, lower, upper)
    return np.uint8((x - np.min(x)) / (np.max(x) - np.min(x)) * 255.0)


def make_checkpoint(path: str, seed: int, obj_bias: float = 0.3) -> None:
    """Random weights in the official layout. The object-score head's last bias is raised so
    that the object is seen on the key slice and on some (not all) tracked slices, and the
    masks are not empty: a parity check on empty masks would prove little."""
    from sam_med.models.sam2 import build_sam2

    torch.manual_seed(seed)
    sd = build_sam2().state_dict()
    sd["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] += obj_bias
    torch.save({"model": sd}, path)


def cases(which: list[str]) -> list[dict]:
    import nibabel as nib

    out = []
    for p in sorted((SHARED / "data" / "ct_lesion").glob("CT_Lesion_*.npz")):
        if which and not any(w in p.name for w in which):
            continue
        d = np.load(p)
        out.append({"name": p.stem, "frames": d["imgs"], "gts": d["gts"] > 0, "kind": "windowed"})
    if not which or "sample" in which:
        from sam_med.io import sample_path

        img = nib.load(sample_path("example_ct_sm.nii.gz"))
        seg = np.asarray(nib.load(sample_path("example_seg.nii.gz")).dataobj)
        hu = np.asarray(img.dataobj).transpose(2, 1, 0)            # SimpleITK order (z, y, x)
        frames = reference_ct_window(hu, 40 - 200, 40 + 200)      # the config's W400/L40
        out.append({"name": "sample CT (liver)", "frames": frames, "gts": seg.transpose(2, 1, 0) == 5,
                    "kind": "hu", "hu": np.asarray(img.dataobj), "affine": img.affine})
    return out


def key_box(gts: np.ndarray) -> tuple[int, list[float]]:
    zs = np.where(gts.any((1, 2)))[0]
    k = int(zs[len(zs) // 2])
    ys, xs = np.where(gts[k])
    return k, [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def run_reference(pred, images: torch.Tensor, hw, key: int, box) -> tuple[np.ndarray, np.ndarray]:
    """Box logits on the key slice and every slice's logits from MedSAM2's procedure."""
    D = images.shape[0]
    logits = np.zeros((D,) + tuple(hw), np.float32)
    with torch.inference_mode():
        state = pred.init_state(images, hw[0], hw[1])
        _, _, first = pred.add_new_points_or_box(state, frame_idx=key, obj_id=1, box=np.array(box))
        for z, _, lg in pred.propagate_in_video(state):
            logits[z] = lg[0, 0].numpy()
        pred.reset_state(state)
        pred.add_new_points_or_box(state, frame_idx=key, obj_id=1, box=np.array(box))
        for z, _, lg in pred.propagate_in_video(state, reverse=True):
            logits[z] = lg[0, 0].numpy()
        pred.reset_state(state)
    return first[0, 0].numpy(), logits


def run_ours(engine, frames: np.ndarray, key: int, box) -> tuple[np.ndarray, np.ndarray, dict]:
    D = frames.shape[0]
    logits = np.zeros(frames.shape, np.float32)
    state = engine.init_state(frames)
    first = engine.add_prompts(state, key, 1, box=box).numpy()
    bank = []
    for reverse in (False, True):
        for z, lg in engine.propagate(state, 1, start=key, reverse=reverse):
            logits[z] = lg.numpy()
            bank.append(state.objects[1].bank_size()["memories"])
    return first, logits, {"max_bank": max(bank), "encoded": state.cache.encoded, "slices": D}


def largest_cc(mask: np.ndarray) -> np.ndarray:
    from skimage import measure  # the reference's getLargestCC

    lab = measure.label(mask)
    return lab == np.argmax(np.bincount(lab.flat)[1:]) + 1 if mask.any() else mask


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="", help="comma-separated name parts (e.g. 000015,sample); default all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--obj-bias", type=float, default=0.3,
                    help="added to the object-score head's bias (lower: the object is lost on more slices)")
    ap.add_argument("--out", default=None, help="write the markdown table here")
    ap.add_argument("--dump", default=None, help="folder for each case's logits (npz)")
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from sam2.build_sam import build_sam2_video_predictor_npz  # the reference (scratch env only)

    from sam_med.models import load_model
    from sam_med.models.sam2.preprocess import GreyToRGBResize  # noqa: F401 (config target)
    from sam_med.predictors.sam2video import Sam2VideoEngine
    from sam_med.predictors.sam2video.predictor import _largest_component

    tmp = tempfile.mkdtemp()
    ck = os.path.join(tmp, "MedSAM2_latest.pt")
    make_checkpoint(ck, a.seed, a.obj_bias)
    ref = build_sam2_video_predictor_npz("configs/sam2.1_hiera_t512.yaml", ck, device="cpu")
    lm = load_model("medsam2", checkpoint=ck, precision="fp32", cache=False)
    engine = Sam2VideoEngine(lm.model, lm.config["preprocessing"]["frame"], fill_hole_area=0)
    rows, ok = [], True
    for c in cases([w for w in a.cases.split(",") if w]):
        t0 = time.time()
        frames = c["frames"]
        if c["kind"] == "hu":  # our config's intensity step on the NIfTI volume -> the same frames
            ours_grey = np.asarray(lm.config["preprocessing"]["intensity"]["hu"](c["hu"])).transpose(2, 1, 0)
            grey_equal = bool(np.array_equal(ours_grey, frames))
        else:
            grey_equal = True
        key, box = key_box(c["gts"])
        images = reference_images(frames)
        hw = frames.shape[1:]
        x = engine.frame_tensor(engine.init_state(frames), key)
        d_in = float((x[0] - images[key].float()).abs().max())
        with torch.inference_mode():
            rf = ref.forward_image(images[key:key + 1].float())
            of = lm.model.encode_frames(x)
        feats = [rf["backbone_fpn"][0], rf["backbone_fpn"][1], rf["backbone_fpn"][2], rf["vision_pos_enc"][2]]
        mine = [of.high_res[0], of.high_res[1], of.feat.permute(1, 2, 0).reshape(1, 256, *of.size),
                of.pos.permute(1, 2, 0).reshape(1, 256, *of.size)]
        d_feat = max(float((x - y).abs().max()) for x, y in zip(feats, mine))
        r_first, r_log = run_reference(ref, images, hw, key, box)
        o_first, o_log, info = run_ours(engine, frames, key, box)
        d_box = float(np.abs(r_first - o_first).max())
        d_prop = float(np.abs(r_log - o_log).max())
        same_masks = bool(np.array_equal(r_log > 0, o_log > 0))
        same_cc = bool(np.array_equal(largest_cc(r_log > 0), _largest_component(o_log > 0)))
        if a.dump:
            np.savez_compressed(Path(a.dump) / f"{c['name'].split()[0]}.npz", ref=r_log, ours=o_log)
        print(f"{c['name']}: {int(((r_log > 0) != (o_log > 0)).sum())} voxels differ; "
              f"min |logit| {float(np.abs(r_log).min()):.2e}", flush=True)
        good = (d_in <= 1e-6 and grey_equal and max(d_feat, d_box, d_prop) <= TOL and same_masks and same_cc)
        ok &= good
        rows.append((c["name"], frames.shape, key, d_in, d_feat, d_box, d_prop, int((o_log > 0).sum()),
                     int((o_log.reshape(len(frames), -1).max(1) > -1000).sum()), same_masks and same_cc,
                     info["max_bank"], good, time.time() - t0))
        print(rows[-1], flush=True)
    head = ("| case | frames (D,H,W) | key | max Δ input | max Δ encoder | max Δ box logits | max Δ propagation "
            "logits | mask voxels | slices with object | masks identical (slices, LCC) | max memories in bank | pass |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(f"| {r[0]} | {tuple(int(s) for s in r[1])} | {r[2]} | {r[3]:.1e} | {r[4]:.1e} | {r[5]:.1e} | "
                     f"{r[6]:.1e} | {r[7]} | {r[8]}/{r[1][0]} | {r[9]} | {r[10]} | {'yes' if r[11] else 'NO'} |")
    text = "\n".join(lines)
    print(text)
    print(f"torch {torch.__version__}, {'PASS' if ok else 'FAIL'} (tolerance {TOL})")
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
