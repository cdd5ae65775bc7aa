"""Cases for the CVPR 2025 protocol, all in the challenge's (D, H, W) = (z, y, x) order.

A DATA argument is one of
- a folder with ``imgs/`` and ``gts/`` (the layout of ../shared/cvpr25/cases),
- a folder of challenge npz with labels inside (``gts``) or in ``--gts DIR`` (same file names,
  key ``gts``, like the official ``-val_gts``),
- any dataset ``sam-med evaluate`` reads (MSD/nnU-Net, research npz, CSV), converted on the fly:
  labels renumbered 1..N in increasing value, spacing reversed to (z, y, x), boxes by the
  official rule (:func:`official_boxes`).
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import InputFileError

BOX_JITTER_MAX_PX = 5  # at 256 px; scaled by size / 256


@dataclass
class CvprCase:
    """One case, loaded lazily by :meth:`load`."""

    case_id: str
    image: str
    gts: str | None = None  # None: ``gts`` inside ``image`` or (converted) the dataset's label
    source: object = None  # an EvalCase for converted datasets
    kind: str = "challenge"  # "challenge" | "converted"
    spacing_order: str = "zyx"  # of a challenge file's 'spacing'

    def load(self) -> "LoadedCase":
        if self.kind == "challenge":
            return _load_challenge(self)
        return _load_converted(self)


@dataclass
class LoadedCase:
    case_id: str
    imgs: np.ndarray  # (D, H, W), written to the per-step challenge files
    spacing_zyx: np.ndarray
    gts: np.ndarray  # (D, H, W), classes 1..N
    boxes: list | None  # one dict (or None) per class, or None: no box step
    volume: object  # the sam_med Volume the in-process mode segments
    class_names: dict[int, str] = field(default_factory=dict)

    @property
    def classes(self) -> list[int]:
        return [int(v) for v in np.unique(self.gts) if v != 0]


def modality_of(case_id: str) -> str:
    m = re.search(r"(?:^|_)(CT|MR|PET|US|XRay|Microscopy|Endoscopy)(?:_|$)", case_id)
    return m.group(1) if m else "unknown"


def official_boxes(gts: np.ndarray, case_id: str) -> list[dict]:
    """The challenge's box per class (``get_boxes.py`` rule): on the middle slice of the class's
    labelled z range, its 2D bounding box widened by a jitter s in 0..5 (one draw per class)
    times W/256 (x) and H/256 (y), clipped to the image; z range = the labelled slices.
    The generator is seeded per case (``2025 + crc32(case_id) % 100000``, as ../shared/cvpr25's
    ``make_cases.py``), so it reproduces the shared cases' boxes."""
    rng = np.random.RandomState(2025 + zlib.crc32(case_id.encode()) % 100000)
    boxes = []
    _, H, W = gts.shape
    for c in [v for v in np.unique(gts) if v != 0]:
        m = gts == c
        zs = np.flatnonzero(m.any(axis=(1, 2)))
        zm = int(zs[len(zs) // 2])
        ys, xs = np.nonzero(m[zm])
        s = rng.randint(0, BOX_JITTER_MAX_PX + 1)
        dx, dy = int(s * W / 256), int(s * H / 256)
        boxes.append({"z_min": int(zs.min()), "z_max": int(zs.max()), "z_mid": zm,
                      "z_mid_x_min": int(max(0, xs.min() - dx)), "z_mid_y_min": int(max(0, ys.min() - dy)),
                      "z_mid_x_max": int(min(W - 1, xs.max() + dx)), "z_mid_y_max": int(min(H - 1, ys.max() + dy))})
    return boxes


def open_cases(path, gts_dir=None, limit: int | None = None,
               spacing_order: str = "zyx") -> tuple[str, list[CvprCase]]:
    """(dataset name, cases) for a DATA argument (see the module docstring)."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: dataset not found")
    if gts_dir is None and (p / "imgs").is_dir() and (p / "gts").is_dir():
        p, gts_dir = p / "imgs", p / "gts"
    files = sorted(p.glob("*.npz")) if p.is_dir() else []
    if files and (gts_dir is not None or all(_is_challenge(f) for f in files)):
        cases = []
        for f in files:
            g = None
            if gts_dir is not None:
                g = Path(gts_dir) / f.name
            cases.append(CvprCase(f.name[:-4], str(f.resolve()), str(g) if g else None,
                                  spacing_order=spacing_order))
        name = p.parent.name if p.name == "imgs" else p.name
    else:
        if gts_dir is not None:
            raise InputFileError(f"--gts applies to a folder of challenge npz; {p} is not one")
        from ..datasets import open_dataset

        ds = open_dataset(p)
        cases = [CvprCase(c.case_id, c.image, None, c, "converted") for c in ds.cases]
        name = ds.name
    if limit is not None:
        cases = cases[: int(limit)]
    if not cases:
        raise InputFileError(f"{p}: the dataset has no cases")
    return name, cases


def _is_challenge(f: Path) -> bool:
    from ...io.challenge import is_challenge_npz

    return is_challenge_npz(str(f))


def _load_challenge(c: CvprCase) -> LoadedCase:
    from ...io.challenge import read_challenge, read_npz_members

    case = read_challenge(c.image, c.spacing_order)
    if c.gts is not None:
        if not os.path.isfile(c.gts):
            raise InputFileError(f"{c.gts}: label file not found")
        g = read_npz_members(c.gts).get("gts")
        if g is None:
            raise InputFileError(f"{c.gts}: no 'gts' key")
    elif case.gts is not None:
        g = case.gts
    else:
        raise InputFileError(f"{c.image}: no 'gts' inside and no --gts folder")
    g = np.asarray(g)
    if g.shape != case.image.shape[::-1]:
        raise InputFileError(f"{c.case_id}: gts shape {g.shape} differs from imgs {case.image.shape[::-1]}")
    raw = read_npz_members(c.image)
    boxes = list(raw["boxes"]) if "boxes" in raw else None
    return LoadedCase(c.case_id, np.asarray(raw["imgs"]), case.spacing_zyx, g.astype(np.uint8, copy=False),
                      boxes, case.image)


def _load_converted(c: CvprCase) -> LoadedCase:
    image, label = c.source.load()
    lab = np.asarray(label.array)
    values = [int(v) for v in np.unique(lab) if v != 0]
    if c.source.labels is not None:
        values = [v for v in values if v in c.source.labels]
    if len(values) > 255:
        raise InputFileError(f"{c.case_id}: {len(values)} classes do not fit the challenge's uint8 segs")
    gts = np.zeros(lab.shape, np.uint8)
    names = {}
    for i, v in enumerate(values, 1):
        gts[lab == v] = i
        names[i] = c.source.label_names.get(v, f"label {v}")
    gts = np.ascontiguousarray(gts.transpose(2, 1, 0))
    imgs = np.ascontiguousarray(np.asarray(image.array).transpose(2, 1, 0))
    return LoadedCase(c.case_id, imgs, np.asarray(image.spacing, float)[::-1].copy(), gts,
                      official_boxes(gts, c.case_id), image, names)
